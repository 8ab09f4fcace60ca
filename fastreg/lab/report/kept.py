"""``python -m fastreg.report RUNS --keep REPORT.json``: finished runs outlive their folders.

Run folders live under ``runs/``, which is not committed; a report's JSON is, with one row per run
(its cell's label, size, seed, test accuracy and filter metrics). A grid that outlives its machine
(a new checkout, a wiped disk) keeps its finished runs through the report made of them: each
counted row of a kept JSON stands in for its run folder wherever that folder holds no finished
run, with the filter metrics measured when it did. A finished folder wins over its row; an
unfinished one (a rerun in progress) waits behind it, and a failed one is listed beside it. The
commands and devices the earlier report named come along from its Markdown beside the JSON.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ...errors import UsageError
from ...io_util import read_json
from ..runs import Run
from .rows import runs_from_rows


@dataclass
class Kept:
    """The rows that count, and what the reports that kept them said of their making."""
    runs: list[Run] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    sources: list[Path] = field(default_factory=list)
    replaced: int = 0            # rows whose folder has finished again: the folder counts


def _key(p: Path | str) -> str:
    return os.path.normpath(str(p))


def _made_by(md: Path) -> tuple[list[str], list[str]]:
    """(commands, devices) a report's Markdown names in its header; nothing if it has none."""
    try:
        text = md.read_text()
    except (OSError, UnicodeDecodeError):
        return [], []
    m = re.search(r"^\*\*Commands\*\*\n\n```bash\n(.*?)^```", text, re.M | re.S)
    cmds = [c for c in (m.group(1).splitlines() if m else []) if c.strip() and not c.startswith("#")]
    d = re.search(r"^\*\*Device\*\*: (.*?)\s*$", text, re.M)
    return cmds, [x for x in (d.group(1).split(", ") if d else []) if x]


def _rows(path: Path) -> tuple[list, dict]:
    try:
        data = read_json(path)
    except (OSError, ValueError) as e:
        raise UsageError(f"--keep {path}: not a readable JSON file ({e.__class__.__name__})") from None
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
        raise UsageError(f"--keep {path}: not a report's JSON (no per-run rows)")
    sections = data.get("protocols") if isinstance(data.get("protocols"), list) else [data]
    known = {c["label"]: c["extra"] for s in sections if isinstance(s, dict) for c in s.get("cells") or []
             if isinstance(c, dict) and "label" in c and isinstance(c.get("extra"), dict)}
    return data["runs"], known


def keep(paths: Sequence[Path], live: list[Run]) -> tuple[Kept, list[Run]]:
    """The kept rows that count beside the ``live`` run folders, and the live runs to report: a
    finished folder replaces its row; a row stands in front of its folder while that is still
    running, and beside it when it failed (the failure is listed). A path kept twice (two
    reports of one run) is refused."""
    kept = Kept()
    finished = {_key(r.dir) for r in live if r.status == "ok"}
    seen: dict[str, Path] = {}
    for path in paths:
        rows, known = _rows(path)
        try:
            runs = runs_from_rows(rows, known)
        except UsageError as e:
            raise UsageError(f"--keep {path}: {e}") from None
        for r in runs:
            k = _key(r.dir)
            if k in seen:
                raise UsageError(f"--keep: run {k} is a row of both {seen[k]} and {path}; keep one of them")
            seen[k] = path
            if k in finished:
                kept.replaced += 1
            else:
                kept.runs.append(r)
        cmds, devs = _made_by(path.with_suffix(".md"))
        kept.commands += [c for c in cmds if c not in kept.commands]
        kept.devices += [d for d in devs if d not in kept.devices]
        kept.sources.append(path)
    standing = {_key(r.dir) for r in kept.runs}     # a rerun under way waits; a failed one is flagged
    return kept, [r for r in live if r.status != "incomplete" or _key(r.dir) not in standing]
