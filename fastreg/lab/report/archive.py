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

import json
from pathlib import Path
from typing import Sequence

from ...errors import UsageError
from ...io_util import atomic_write_json, read_json
from .analysis import Cell, check_cells, comparison_refs, report_records
from .rows import kept_layers, runs_from_rows
from ..cli import Parser, entry
from ..methods import method_order
from ..protocol import protocol_key
from ..runs import Run


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

    records = report_records(cells, keys, refs, kept_layers(runs), created=created)
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
