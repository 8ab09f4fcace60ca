"""A report's per-run rows as runs: what its JSON keeps of each run (its cell's label, size, seed,
test accuracy, filter metrics) is enough for the analysis, once the run folder is gone. Read by
``archive`` (an old report's records again) and ``kept`` (``--keep``: rows beside live folders)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

from ...errors import UsageError
from .references import judge_rows
from .analysis import EXTRA
from ..runs import Run, finite


class ArchivedRun(Run):
    """A run known only by its row: its method is its label's (no config to derive it from), its
    protocol the row's, and the row itself is what a report keeps of it again."""
    archived_method: str = ""
    row: dict = {}

    @property
    def method(self) -> str:
        return self.archived_method

    @property
    def kept(self) -> bool:
        return True

    @property
    def protocol(self) -> dict:
        return self.row["protocol"] if isinstance(self.row.get("protocol"), dict) else super().protocol

    @property
    def bank_id(self) -> str | None:
        """The bank it trained with, by recipe (``banks.run_bank_recipe``), where its row recorded
        it (rows written since ``--keep`` exists)."""
        return self.row.get("bank_id")


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
        r.archived_method, r.row = method, row
        out.append(r)
    return out


def kept_layers(runs: list[Run]) -> list[dict]:
    """The deeper layers the judge measured (``auc_conv2``, …), as a live report lists them. A
    live report takes the layers of its reference banks; the rows do not name those, and the
    low-freq energy alone is also kept for layers no bank serves (every ResNet conv), so the
    judge's keys stand for them."""
    names = sorted({k[4:] for r in runs for k in r.metrics if k.startswith("auc_")},
                   key=lambda n: (len(n), n))
    return [{"layer": n, "judge_rows": judge_rows(n)} for n in names]
