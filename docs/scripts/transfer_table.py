"""Print the transfer-across-architectures table of docs/results.md from a report's JSON (cells
and per-run rows), so no number is copied by hand.

    python docs/scripts/transfer_table.py docs/reports/transfer.md

One row per (train size, target, start): the target is the arch and width of the cell
(``extra``), the start its method. Columns: mean test accuracy over the seeds, and paired Δ
(pp, 95 % CI over seeds, bold where it excludes 0) to the target's own init (``baseline``), to
transfer with norms (``transferinit-norms``), and, where it was run, to today's chain start
(``chaininit-norms``: the source in the first channels). Paired seed by seed from the per-run
rows; one protocol per report (a label met twice at a size and seed is refused).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from fastreg.lab.report import paired
from report_cells import delta, load

ORDER = ["baseline", "transferinit-norms", "transferinit", "transferinit-norms+l2sp", "chaininit-norms",
         "filterinit", "covinit"]
WHAT = {"baseline": "its own init", "transferinit-norms": "transfer, norms too", "transferinit": "transfer, convs only",
        "transferinit-norms+l2sp": "transfer, norms too + L2-SP",
        "chaininit-norms": "source in the first channels (chain init, norms too)",
        "filterinit": "whole filters from the bank, per layer", "covinit": "covariance draws, per layer"}
TARGETS = {("resnet8", 1.0): "ResNet-8", ("resnet32", 1.0): "ResNet-32", ("resnet56", 1.0): "ResNet-56",
           ("resnet20", 2.0): "ResNet-20 ×2 width", ("resnet20", 0.5): "ResNet-20 ×0.5 width",
           ("vgg11", 1.0): "VGG-11 (another family)"}
VERSUS = ("baseline", "transferinit-norms", "chaininit-norms")


def _target(extra: dict) -> tuple[str, float]:
    return str(extra.get("arch", "dwpnet")), float(extra.get("width") or 1.0)


def _fmt(d: list[float] | None, seeds: int) -> str:
    if not d:
        return ""
    m, lo, hi, _, test = paired(np.array(d))
    return delta({"mean": m, "lo": lo, "hi": hi, "test": test, "seeds": d}, seeds)


def main(report: str) -> None:
    data = load(report)
    target_of = {c["label"]: _target(c["extra"]) for c in data["cells"]}
    acc: dict[tuple, dict[int, float]] = {}
    for r in data["runs"]:
        if r["status"] != "ok":
            continue
        key = (r["train_size"], target_of[r["method"]], r["method"].split(" [")[0])
        seeds = acc.setdefault(key, {})
        if r["seed"] in seeds:
            print(f"{report}: {r['method']} at n = {r['train_size']} holds seed {r['seed']} twice", file=sys.stderr)
            sys.exit(2)
        seeds[r["seed"]] = 100 * r["test_acc"]
    keys = sorted(acc, key=lambda k: (k[0], list(TARGETS).index(k[1]) if k[1] in TARGETS else 99,
                                      ORDER.index(k[2]) if k[2] in ORDER else 99))
    print("| n | target | start | seeds | test acc | Δ vs its own init | Δ vs transfer, norms too | "
          "Δ vs source in the first channels |")
    print("|---:|---|---|---:|---:|---|---|---|")
    for n, target, method in keys:
        got = acc[(n, target, method)]
        cols = []
        for ref in VERSUS:
            base = acc.get((n, target, ref))
            shared = sorted(set(got) & set(base or {}))
            cols.append("" if ref == method or not shared else _fmt([got[s] - base[s] for s in shared], len(got)))
        name = TARGETS.get(target, f"{target[0]} ×{target[1]:g}")
        print(f"| {n} | {name} | {WHAT.get(method, method)}: `{method}` | {len(got)} | "
              f"{np.mean(list(got.values())):.2f} % | " + " | ".join(cols) + " |")


if __name__ == "__main__":
    if len(sys.argv) != 2 or not Path(sys.argv[1]).with_suffix(".json").is_file():
        print("usage: transfer_table.py REPORT.md (REPORT.json beside it)", file=sys.stderr)
        sys.exit(2)
    main(sys.argv[1])
