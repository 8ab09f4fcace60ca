"""A report's records as the table printers read them: the JSON beside its Markdown (cells with
their paired differences, the bank pairs; written by ``python -m fastreg.report``, or rebuilt
from the per-run rows by ``python -m fastreg.lab.report.archive``), and the one way the docs
write a paired difference."""
from __future__ import annotations

import json
import sys
from pathlib import Path


def _refuse(msg: str) -> None:
    print(msg, file=sys.stderr)
    sys.exit(2)


def load(report: str | Path) -> dict:
    """The records of ``report`` (its .md or .json); exit 2 with one line if there are none."""
    js = Path(report).with_suffix(".json")
    try:
        data = json.loads(js.read_text())
    except (OSError, ValueError) as e:
        _refuse(f"{js}: cannot read it ({e.__class__.__name__})")
    if isinstance(data, dict) and isinstance(data.get("protocols"), list):
        _refuse(f"{js}: the report holds {len(data['protocols'])} protocols; report each protocol's runs on their own")
    if not isinstance(data, dict) or data.get("format") != 2 or not isinstance(data.get("cells"), list):
        _refuse(f"{js}: no cell records; rebuild them with python -m fastreg.lab.report.archive {js}")
    return data


def by_key(cells: list[dict], key) -> dict:
    """``key(cell)`` → cell; exit 2 where two cells share a key (a printer would show one of them)."""
    out: dict = {}
    for c in cells:
        k = key(c)
        if k in out:
            _refuse(f"cells {out[k]['label']!r} and {c['label']!r} (n = {c['train_size']}, {c['reg_layers']}) "
                    f"land in one table cell; print them apart (e.g. --bank)")
        out[k] = c
    return out


def delta(d: dict | None, seeds: int) -> str:
    """A paired Δ (pp) with its 95 % CI, bold where the CI excludes 0, the seed count where it is
    not ``seeds``; "" without one."""
    if d is None:
        return ""
    if d["test"].startswith("all differences equal"):
        return f"{d['mean']:+.2f} (the same every seed)".replace("-", "−")
    if d["lo"] is None:
        return f"{d['mean']:+.2f} (1 seed)".replace("-", "−")
    cell = f"{d['mean']:+.2f} [{d['lo']:+.2f}, {d['hi']:+.2f}]".replace("-", "−")
    cell = f"**{cell}**" if d["lo"] > 0 or d["hi"] < 0 else cell
    return cell + ("" if len(d["seeds"]) == seeds else f" ({len(d['seeds'])} seeds)")


def metric(c: dict | None, key: str, spec: str = ".3f") -> str:
    """A cell's mean filter metric, "—" where it was not measured."""
    v = (c or {}).get("metrics", {}).get(key)
    return format(v, spec) if v is not None else "—"


def acc(c: dict) -> str:
    """A cell's test accuracy, mean ± std over its seeds."""
    return f"{c['acc_mean']:.2f}" + (f" ± {c['acc_std']:.2f}" if c["acc_std"] is not None else "") + " %"


def paired_delta(diffs: list[float] | None, seeds: int, missing: str = "not run") -> str:
    """Per-seed paired differences (pp) as a ``delta`` cell (95 % CI, paired t); ``missing``
    where there are none."""
    if not diffs:
        return missing
    import numpy as np
    from fastreg.lab.report import paired
    m, lo, hi, _, test = paired(np.array(diffs))
    return delta({"mean": m, "lo": lo, "hi": hi, "test": test, "seeds": diffs}, seeds)


def accuracies(report: str | Path, data: dict, key: str = "test_acc") -> dict[tuple[int, str], dict[int, float]]:
    """(train size, method label) → {seed: test accuracy in %} over the finished runs that
    record ``key`` (``test_acc``, or a Bayesian run's ``test_acc_local`` / ``test_acc_mean``);
    exit 2 where a label holds a seed twice (more than one protocol in one report)."""
    acc: dict[tuple[int, str], dict[int, float]] = {}
    for r in data["runs"]:
        if r["status"] != "ok" or r.get(key) is None:
            continue
        seeds = acc.setdefault((r["train_size"], r["method"]), {})
        if r["seed"] in seeds:
            _refuse(f"{report}: {r['method']} at n = {r['train_size']} holds seed {r['seed']} twice "
                    "(more than one protocol in one report)")
        seeds[r["seed"]] = 100 * r[key]
    return acc


def mean_cell(seeds: dict[int, float] | None, most: int, missing: str = "not run") -> str:
    """The mean of per-seed accuracies (%) as a cell, the seed count where it is not ``most``;
    ``missing`` where there are none."""
    if not seeds:
        return missing
    note = "" if len(seeds) == most else f" ({len(seeds)} seed{'s' * (len(seeds) > 1)})"
    return f"{sum(seeds.values()) / len(seeds):.2f} %{note}"


def paired_cell(x: dict[int, float] | None, y: dict[int, float] | None, most: int, missing: str = "not run") -> str:
    """``x − y`` paired over the seeds both hold, as a ``paired_delta`` cell; ``missing`` where
    they share none."""
    shared = sorted(set(x or {}) & set(y or {}))
    return paired_delta([x[s] - y[s] for s in shared], most) if shared else missing
