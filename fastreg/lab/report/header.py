"""The header of a report: its title, the commands that made its runs (with no path of the
machine they ran on), the devices, the total training time and the reference bank."""
from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..runs import Run, finite, read_jsonl

if TYPE_CHECKING:
    from .kept import Kept

TITLE = "Results of fastreg runs"


def _sweep_info(roots: list[Path], runs: list[Run]) -> tuple[list[str], list[str], float, int]:
    """(commands, devices, total wall seconds, runs with a known time) from logs and timing files."""
    cmds, devs, secs = [], [], {}
    for log in [f for root in roots for f in sorted(root.rglob("sweep_log.jsonl"))]:
        for row in read_jsonl(log):
            if row.get("cmd") and row["cmd"] not in cmds:
                cmds.append(row["cmd"])
            dev = row.get("device_name") or row.get("device")
            if dev and dev not in devs:
                devs.append(dev)
            if finite(row.get("seconds")):
                key = (log.parent / row["run"]).resolve()
                secs[key] = secs.get(key, 0.0) + float(row["seconds"])
    total, known = 0.0, 0
    for r in runs:
        if r.status != "ok":
            continue
        t = r.wall if r.wall is not None else secs.get(r.dir.resolve())
        if t is None:
            times = [m["time"] for m in read_jsonl(r.dir / "metrics.jsonl") if finite(m.get("time"))]
            t = max(times) - min(times) if len(times) > 1 else None
        if t is not None:
            total, known = total + t, known + 1
    if not devs:
        devs = sorted({str(r.cfg.get("device", "?")) for r in runs})
    return cmds, devs, total, known


def portable_tokens(tokens: Sequence[str]) -> list[str]:
    """Command tokens as a report shows them: no path of the machine they ran on. ``--data-root``'s
    value becomes ``DATA``; absolute paths under the current folder become relative; others keep
    their name."""
    out, after_root = [], False
    for tok in tokens:
        if after_root or tok.startswith("--data-root="):
            tok = "DATA" if after_root else "--data-root=DATA"
        elif tok.startswith("/"):
            p = Path(tok)
            try:
                tok = p.relative_to(Path.cwd()).as_posix()
            except ValueError:
                tok = f"…/{p.name}"
        after_root = tok == "--data-root"
        out.append(tok)
    return out


def portable(cmd: str) -> str:
    """A shell command as a report shows it (``portable_tokens``), quoted once."""
    return shlex.join(portable_tokens(shlex.split(cmd)))


def header_section(argv: Sequence[str], roots: list[Path], runs: list[Run], bank_desc: str,
                   title: str = TITLE, kept: "Kept | None" = None) -> list[str]:
    """Title, the commands that made the runs, device, total training time, reference bank; and
    the runs counted from an earlier report's rows (``kept``), where their folders are gone."""
    cmds, devs, wall, known = _sweep_info(roots, runs)
    if kept is not None:                  # the kept report's first (its commands are portable already)
        cmds, devs = [*kept.commands, *cmds], list(dict.fromkeys([*kept.devices, *devs]))
    cmds = list(dict.fromkeys(portable(c) for c in cmds))
    n_ok = sum(r.status == "ok" for r in runs)
    n_kept = sum(r.kept for r in runs)
    also = [] if not kept or not kept.sources else [
        f"Beside them, {n_kept} finished runs whose folders are gone count from the per-run rows of "
        f"{', '.join(f'`{p.as_posix()}`' for p in kept.sources)} (`--keep`), with the filter metrics measured then"
        + (f"; {kept.replaced} more of its rows are finished run folders here, which count instead" if kept.replaced else "")
        + ".", ""]
    return [f"# {title}", "",
            f"Generated {time.strftime('%Y-%m-%d %H:%M')} by "
            f"`python -m fastreg.report {shlex.join(portable_tokens(argv))}` "
            f"from {len(runs) - n_kept} run folders under {', '.join(f'`{r}`' for r in roots)}.", "", *also,
            "**Commands**", "", "```bash",
            *(cmds or ["# (no sweep_log.jsonl found: runs were not started by fastreg.sweep)"]), "```", "",
            f"**Device**: {', '.join(devs)}  ", f"**Total training wall time**: {wall / 3600:.2f} h "
            f"({wall:.0f} s, summed over the {known} of {n_ok} finished runs with a recorded time)  ",
            f"**Reference kernels for filter metrics**: {bank_desc}", ""]
