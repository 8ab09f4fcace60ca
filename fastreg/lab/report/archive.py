"""``python -m fastreg.lab.report.archive REPORT.json``: rebuild a report's records from its per-run rows.

For a report whose run folders are gone: the records its tables render from, computed again
from the per-run rows its JSON kept.

Reports written before ``results.json`` held its cells (``"format": 2``) keep one row per run:
its cell's label, train size, reg layers, seed, test accuracy and filter metrics. That is what
the analysis needs, so the cells, their paired differences and the bank comparisons are
computed again by the same code as a live report (``analysis.report_records``), not parsed from
the Markdown. What the rows lack is said here: a run's settings come from its label (or from
the cell records the JSON already has, whose references it keeps), its data seed is its seed,
and which of two banks is the newer is given with ``--banks``. The test suite renders every committed report's records
and checks each table row against the report's Markdown.
"""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Sequence

from ...errors import UsageError
from ...io_util import atomic_write_json, read_json
from .references import judge_rows
from .analysis import EXTRA, Cell, check_cells, comparison_refs, report_records
from ..cli import Parser, entry
from ..methods import method_order
from ..protocol import protocol_key
from ..runs import Run, finite


class ArchivedRun(Run):
    """A run known only by its row: its method is its label's (no config to derive it from)."""
    archived_method: str = ""

    @property
    def method(self) -> str:
        return self.archived_method


def _value(v: str):
    """A setting's value as a label shows it (``f"{k}={v}"``): None, a bool, a number, a dict or
    list as Python writes it, or the text (a bank's name, classes ``5,6,7``)."""
    if v in ("None", "True", "False") or v[:1] in "{[":
        try:
            return ast.literal_eval(v)
        except (ValueError, SyntaxError):
            return v
    for kind in (int, float):
        try:
            return kind(v)
        except ValueError:
            pass
    return v


_SETTING = re.compile(r", (?=(?:%s)=)" % "|".join(map(re.escape, EXTRA)))   # ", " before the next KEY=


def split_label(label: str, known: dict[str, dict]) -> tuple[str, str, dict]:
    """(method, variant, settings) of a cell label ``method [k=v, …]``: the settings from the cell
    record of that label where the JSON has one (``known``), else read from the label."""
    method, _, rest = label.partition(" [")
    variant = rest[:-1] if rest.endswith("]") else rest
    if label in known:
        return method, variant, known[label]
    extra = {}
    for part in filter(None, _SETTING.split(variant)):
        k, eq, v = part.partition("=")
        if not eq or k not in EXTRA:
            raise UsageError(f"cell label {label!r}: {part!r} is not a setting the report labels cells by")
        extra[k] = _value(v)
    return method, variant, extra


ROW_KEYS = ("run", "train_size", "method", "reg_layers", "seed", "status", "test_acc")


def _check_row(i: int, row) -> None:
    if not isinstance(row, dict) or any(k not in row for k in ROW_KEYS):
        raise UsageError(f"run row {i}: not a report's row (it needs {', '.join(ROW_KEYS)})")
    if row["status"] == "ok" and not finite(row["test_acc"]):
        raise UsageError(f"run row {i} ({row['run']}): counted, but its test accuracy is {row['test_acc']!r}")


def runs_from_rows(rows: list, known: dict[str, dict] | None = None) -> list[Run]:
    """The counted runs, rebuilt from ``results.json`` rows: enough for the analysis, no more."""
    for i, row in enumerate(rows):
        _check_row(i, row)
    rows = [row for row in rows if row["status"] == "ok"]
    parsed = [split_label(row["method"], known or {}) for row in rows]
    vary = [k for k in EXTRA if any(k in e for *_, e in parsed)]   # a setting left out of a label is None there
    out = []
    for row, (method, variant, extra) in zip(rows, parsed):
        extra = {k: extra.get(k) for k in vary}
        cfg = {"train_size": row["train_size"], "seed": row["seed"], "reg_layers": row["reg_layers"],
               "data_seed": row.get("data_seed", row["seed"])}     # rows before it was recorded: the seed
        r = ArchivedRun(Path(row["run"]), cfg, "ok", final={"test_acc": row["test_acc"]},
                        wall=row.get("wall_time_s"), variant=variant, extra=extra,
                        metrics={k: v for k, v in row.items() if k.split("_")[0] in ("auc", "mmd", "lfe")})
        r.archived_method = method
        out.append(r)
    return out


def _layers(runs: list[Run]) -> list[dict]:
    """The deeper layers the judge measured (``auc_conv2``, …), as a live report lists them. A
    live report takes the layers of its reference banks; the rows do not name those, and the
    low-freq energy alone is also kept for layers no bank serves (every ResNet conv), so the
    judge's keys stand for them."""
    names = sorted({k[4:] for r in runs for k in r.metrics if k.startswith("auc_")},
                   key=lambda n: (len(n), n))
    return [{"layer": n, "judge_rows": judge_rows(n)} for n in names]


def rebuild(data: dict, banks: Sequence[str] = (), refs: Sequence[str] = ()) -> dict:
    """A report JSON's records, computed again from its per-run rows, with the cells paired with
    ``refs`` (the baseline first)."""
    known = {c["label"]: c["extra"] for c in data.get("cells") or [] if isinstance(c, dict) and "label" in c}
    runs = runs_from_rows(data["runs"], known)
    if not runs:
        raise UsageError(f"no counted runs among its {len(data['runs'])} rows")
    cells: dict[tuple, list[Run]] = {}
    for r in runs:
        cells.setdefault(Cell(r.size, r.method, r.variant, r.layers), []).append(r)
    check_cells(cells)
    keys = sorted(cells, key=lambda c: (c.size, method_order(c.method, c.variant), c.layers))
    refs = ["baseline", *(r for r in refs if r != "baseline")] if refs else []
    if not refs:     # those its report was written with (older reports had fewer), else today's
        refs = ["baseline", *comparison_refs(keys)]
        if data.get("cells"):
            used = {r for c in data["cells"] for r in c["paired"]}
            refs = [r for r in refs if r == "baseline" or r in used] + sorted(used - set(refs))
    age = {b: i for i, b in enumerate(banks)}

    def created(r: Run) -> int:
        if r.extra["bank"] not in age:
            raise UsageError(f"the runs of {r.method} at n = {r.size} used several banks, {r.extra['bank']} one of "
                             f"them; name them with --banks, oldest first")
        return age[r.extra["bank"]]

    records = report_records(cells, keys, refs, _layers(runs), created=created)
    protos = [row["protocol"] for row in data["runs"]
              if row.get("status") == "ok" and isinstance(row.get("protocol"), dict)]
    if len({protocol_key(p) for p in protos}) > 1:
        raise UsageError(f"the rows hold runs of {len({protocol_key(p) for p in protos})} protocols; a report of "
                         f"several is rebuilt by python -m fastreg.report from its run folders")
    if not protos:
        return records
    proto = dict(protos[0])
    if len({json.dumps(p.get("eval_images")) for p in protos}) > 1:
        proto["eval_images"] = None           # as the report shows such a group
    return {"protocol": proto, **records}


def build_parser() -> Parser:
    p = Parser(prog="python -m fastreg.lab.report.archive", description=__doc__.splitlines()[0].split(": ", 1)[-1])
    p.add_argument("report_json", type=Path, help="a report's JSON (the .json beside its Markdown)")
    p.add_argument("--banks", default="", help="the banks the runs used, oldest first, comma-separated "
                                               "(needed where they used more than one)")
    p.add_argument("--refs", default="", help="the cells paired with, comma-separated, the baseline first "
                                              "(default: those of its cell records, else a live report's)")
    p.add_argument("--force", action="store_true", help="rebuild a JSON that already has format-2 records")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        data = read_json(a.report_json)
    except (OSError, ValueError) as e:
        raise UsageError(f"{a.report_json}: not a readable JSON file ({e.__class__.__name__})") from None
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
        raise UsageError(f"{a.report_json}: not a report's JSON (no per-run rows)")
    if data.get("format") == 2 and not a.force:
        raise UsageError(f"{a.report_json} already has its records; pass --force to rebuild them")
    records = rebuild(data, [b for b in a.banks.split(",") if b], [r for r in a.refs.split(",") if r])
    atomic_write_json(a.report_json, {**records, "runs": data["runs"]})
    print(f"wrote {a.report_json}: {len(records['cells'])} cells, {len(records['bank_pairs'])} bank pairs, "
          f"references {', '.join(records['refs'])}")
    return 0


if __name__ == "__main__":
    entry(main)
