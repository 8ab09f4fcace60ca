"""Print the table of filter priors from a report's records (docs/reports/results.json, beside
results.md) and, for the cost column, a pytest-benchmark JSON of bench/test_bench_priors.py, so
no number is copied by hand.

    python docs/scripts/priors_table.py docs/reports/results.md [bench.json]
    python docs/scripts/priors_table.py docs/reports/results.md "" resnet20      (another architecture's runs)
    python docs/scripts/priors_table.py docs/reports/results.md --banks          (one method, two banks)

The priors table reads the cells of the bank the priors were compared with (``--bank``,
default ``dwpnet-4ep``, the first packaged bank); ``--banks`` compares the first bank with
the converged one (``dwpnet-24ep``) method by method.

Cells: paired Δ test accuracy (pp) with its 95 % CI over the seeds, bold where the CI
excludes 0; filter metrics of the final conv1 kernels at n = 100 (mean over seeds); cost:
median time of one training step relative to a plain one (inits cost nothing per step).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from report_cells import acc as _acc, by_key, delta, load, metric

SIZES = ("100", "500", "1000", "5000")
# (method, reg layers, what it is) in the order of the table
ROWS = [
    ("filterinit", "conv1", "bank init, whole filters"),
    ("filterinit+gauss", "conv1", "whole-filter init + Gaussian penalty"),
    ("filterinit+advf1", "conv1", "whole-filter init + whole-filter adversarial"),
    ("filterinit+advf1-decay", "conv1", "… with λ decaying to 0"),
    ("filterinit", "conv1,conv2", "whole-filter init on conv1 + conv2"),
    ("bankinit", "conv1", "bank init, 2-D slices (before)"),
    ("covinit", "conv1", "covariance init, whole filters"),
    ("covinit-slice", "conv1", "covariance init, 2-D slices"),
    ("covinit+advf1", "conv1", "covariance init + whole-filter adversarial"),
    ("gauss", "conv1", "Gaussian penalty (SK-reg), whole filters"),
    ("advf1", "conv1", "adversarial, whole-filter D"),
    ("adv1", "conv1", "adversarial, 2-D slice D (before)"),
    ("adv1", "conv1,conv2,conv3,conv4", "adversarial on every conv layer"),
]


def _delta(d: dict) -> str:
    return delta(d, 5)


def _cost(method: str, layers: str, bench: dict[str, float]) -> str:
    if not bench:
        return "—"
    part = "adv1-all" if layers != "conv1" and "adv" in method else \
        "advf1" if "advf" in method else "adv1" if "adv" in method else "gauss" if "gauss" in method else "plain"
    return f"{bench[part] / bench['plain']:.2f}×" if part in bench else "—"


def _arch_cells(records: dict, arch: str, bank: str | None = None) -> dict[tuple[str, str, str], dict]:
    """(size, method, reg layers) → cell, for one architecture (a cell without ``arch`` is
    DWPNet). With ``bank``, only the cells of that bank (and those that never saw one: the
    baseline)."""
    ours = [c for c in records["cells"] if c["extra"].get("arch", "dwpnet") == arch
            and (bank is None or c["extra"].get("bank") in (None, bank))]
    return by_key(ours, lambda c: (str(c["train_size"]), c["method"], c["reg_layers"]))


BANK_ROWS = [("filterinit", "bank init, whole filters"), ("filterinit+gauss", "whole-filter init + Gaussian penalty"),
             ("bankinit", "bank init, 2-D slices"), ("adv1", "adversarial, 2-D slice D"),
             ("bankinit+adv1", "slice init + adversarial")]


def bank_table(path: str, old: str = "dwpnet-4ep", new: str = "dwpnet-24ep") -> None:
    """Per method and size: Δ to the baseline with each bank, and new − old seed by seed."""
    records = load(path)
    vs = {b: _arch_cells(records, "dwpnet", b) for b in (old, new)}
    cross = {(str(p["train_size"]), p["method"]): p for p in records["bank_pairs"]
             if p["reg_layers"] == "conv1" and (p["newer"], p["older"]) == (new, old)}
    sizes = [n for n in SIZES if any((n, m) in cross for m, _ in BANK_ROWS)]
    print(f"| method | n | Δ acc vs baseline, bank {old} | Δ acc vs baseline, bank {new} | {new} − {old} |")
    print("|---|---:|---|---|---|")
    for m, what in BANK_ROWS:
        for i, n in enumerate([n for n in sizes if (n, m, "conv1") in vs[new]]):   # sizes run with the new bank
            parts = [_delta(vs[b][(n, m, "conv1")]["paired"]["baseline"]) if (n, m, "conv1") in vs[b] else "not run"
                     for b in (old, new)]
            parts.append(_delta(cross[(n, m)]) if (n, m) in cross else "not run")
            print(f"| {f'{what}: `{m}`' if i == 0 else ''} | {n} | " + " | ".join(parts) + " |")


def resnet_table(path: str, arch: str) -> None:
    """Δ to the baseline for the runs of another architecture (every method, size, layers)."""
    cells = _arch_cells(load(path), arch)
    sizes = [n for n in SIZES if any(k[0] == n for k in cells)]
    print("| method (reg layers) | " + " | ".join(f"n = {n}: Δ acc vs baseline" for n in sizes) + " |")
    print("|---" * (len(sizes) + 1) + "|")
    for ly in sorted({k[2] for k in cells}):
        print(f"| baseline ({ly}) | " + " | ".join(_acc(cells[(n, "baseline", ly)]) if (n, "baseline", ly) in cells
                                                  else "not run" for n in sizes) + " |")
        paired = {k: c["paired"]["baseline"] for k, c in cells.items() if "baseline" in c["paired"]}
        for m in sorted({k[1] for k in paired if k[2] == ly}):
            print(f"| `{m}` ({ly}) | " + " | ".join(_delta(paired[(n, m, ly)]) if (n, m, ly) in paired
                                                   else "not run" for n in sizes) + " |")


def main(path: str = "docs/reports/results.md", bench_json: str | None = None, arch: str = "dwpnet",
         bank: str = "dwpnet-4ep") -> None:
    bench_json = bench_json or None
    if arch != "dwpnet":
        return resnet_table(path, arch)
    cells = _arch_cells(load(path), arch, bank)
    bench = {}
    if bench_json:
        for b in json.loads(Path(bench_json).read_text())["benchmarks"]:
            bench[b["extra_info"]["impl"]] = b["stats"]["median"]
    sizes = [n for n in SIZES if any(k[0] == n for k in cells)]
    print("| prior | " + " | ".join(f"n = {n}: Δ acc vs baseline" for n in sizes)
          + " | n = 100: Δ vs bank init (slices) | judge AUC | MMD² | low-freq energy | cost / step |")
    print("|---" * (len(sizes) + 6) + "|")
    base = [cells.get((n, "baseline", "conv1")) for n in sizes]
    print("| baseline (no prior) | " + " | ".join(_acc(b) if b else "not run" for b in base)
          + f" | | {_metrics(base[0]) if base[0] else '| |'} | 1.00× |")
    for method, layers, what in ROWS:
        if not any((n, method, layers) in cells for n in sizes):
            continue
        row = [_delta(cells[(n, method, layers)]["paired"]["baseline"])
               if "baseline" in cells.get((n, method, layers), {}).get("paired", {}) else "not run" for n in sizes]
        vs_bank = cells.get(("100", method, layers), {}).get("paired", {}).get("bankinit")
        label = f"`{method}`" + ("" if layers == "conv1" else f" ({layers})")
        print(f"| {what}: {label} | " + " | ".join(row) + f" | {_delta(vs_bank) if vs_bank else '—'} | "
              + _metrics(cells.get(("100", method, layers))) + f" | {_cost(method, layers, bench)} |")


def _metrics(c: dict | None) -> str:
    """``judge AUC | MMD² | low-freq energy`` of a cell's final conv1 kernels (means)."""
    return " | ".join(metric(c, k, spec) for k, spec in (("auc", ".3f"), ("mmd", ".4f"), ("lfe", ".3f")))


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--banks" in args:
        bank_table(next((a for a in args if a != "--banks"), "docs/reports/results.md"))
    elif "--bank" in args:
        i = args.index("--bank")
        main(*args[:i], *args[i + 2:], **{"bank": args[i + 1]})
    else:
        main(*args)
