"""Print the transfer-across-architectures table of docs/results.md from a report's JSON (cells
and per-run rows), so no number is copied by hand.

    python docs/scripts/transfer_table.py docs/reports/transfer.md [docs/reports/whole_network.md]

One row per (train size, target, start): the target is the arch and width of the cell
(``extra``), the start its method. Columns: mean test accuracy over the seeds, and paired Δ
(pp, 95 % CI over seeds, bold where it excludes 0) to the target's own init (``baseline``), to
transfer with norms (``transferinit-norms``), and, where it was run, to today's chain start
(``chaininit-norms``: the source in the first channels). Paired seed by seed from the per-run
rows; one protocol per report (a label met twice at a size and seed is refused).

With a second report (the whole-network one, same protocol, same sources), the sources' own
architecture is printed beside the targets: ResNet-20's own init, chain init (convs only, with
norms) and fine-tuning, and a last column gives every row's paired Δ to ResNet-20 fine-tuning
(the same data seed is the same training subset), the question being whether a target of another
depth or width started from the source beats fine-tuning the source itself.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from report_cells import load, paired_delta

ORDER = ["baseline", "transferinit-norms", "transferinit", "transferinit-norms+l2sp", "chaininit", "chaininit-norms",
         "finetune", "filterinit", "covinit"]
WHAT = {"baseline": "its own init", "transferinit-norms": "transfer, norms too", "transferinit": "transfer, convs only",
        "transferinit-norms+l2sp": "transfer, norms too + L2-SP",
        "chaininit-norms": "source in the first channels (chain init, norms too)",
        "filterinit": "whole filters from the bank, per layer", "covinit": "covariance draws, per layer",
        "chaininit": "the source's convs (chain init)", "finetune": "fine-tuning the source"}
SOURCE = ("resnet20", 1.0)          # the sources' architecture: its rows come from the second report
SOURCE_ROWS = ("baseline", "chaininit", "chaininit-norms", "finetune")
SOURCES = (None, "resnet20_c04")    # ResNet-20 runs of the class-disjoint sources (own init: none)
TARGETS = {SOURCE: "ResNet-20 (the sources' own)", ("resnet8", 1.0): "ResNet-8", ("resnet32", 1.0): "ResNet-32", ("resnet56", 1.0): "ResNet-56",
           ("resnet20", 2.0): "ResNet-20 ×2 width", ("resnet20", 0.5): "ResNet-20 ×0.5 width",
           ("vgg11", 1.0): "VGG-11 (another family)", ("vgg11", 0.5): "VGG-11 ×0.5 width (another family)"}
VERSUS = ("baseline", "transferinit-norms", "chaininit-norms")


def _target(extra: dict) -> tuple[str, float]:
    return str(extra.get("arch", "dwpnet")), float(extra.get("width") or 1.0)



def _accuracies(report: str, acc: dict, keep=lambda target, method, extra: True) -> None:
    """Add the report's finished runs to ``acc``: (n, target, method) → {seed: test acc %}."""
    data = load(report)
    extra_of = {c["label"]: c["extra"] for c in data["cells"]}
    for r in data["runs"]:
        if r["status"] != "ok":
            continue
        extra, method = extra_of[r["method"]], r["method"].split(" [")[0]
        if not keep(_target(extra), method, extra):
            continue
        seeds = acc.setdefault((r["train_size"], _target(extra), method), {})
        if r["seed"] in seeds:
            print(f"{report}: {r['method']} at n = {r['train_size']} holds seed {r['seed']} twice", file=sys.stderr)
            sys.exit(2)
        seeds[r["seed"]] = 100 * r["test_acc"]


def _source_row(target, method, extra) -> bool:
    return (target == SOURCE and method in SOURCE_ROWS and extra.get("sources") in SOURCES
            and extra.get("bank") is None)


def main(report: str, reference: str | None = None) -> None:
    acc: dict[tuple, dict[int, float]] = {}
    _accuracies(report, acc)
    if reference:
        if any(k[1] == SOURCE for k in acc):
            print(f"{report} holds ResNet-20 runs itself; give no second report", file=sys.stderr)
            sys.exit(2)
        _accuracies(reference, acc, _source_row)
    finetune = {n: acc.get((n, SOURCE, "finetune")) for n, _, _ in acc}
    sizes = {n for n, t, _ in acc if t != SOURCE}
    acc = {k: v for k, v in acc.items() if k[0] in sizes}
    keys = sorted(acc, key=lambda k: (k[0], list(TARGETS).index(k[1]) if k[1] in TARGETS else 99,
                                      ORDER.index(k[2]) if k[2] in ORDER else 99))
    print("| n | target | start | seeds | test acc | Δ vs its own init | Δ vs transfer, norms too | "
          "Δ vs source in the first channels |" + (" Δ vs ResNet-20 fine-tuning |" if reference else ""))
    print("|---:|---|---|---:|---:|---|---|---|" + ("---|" if reference else ""))
    for n, target, method in keys:
        got = acc[(n, target, method)]
        cols = []
        for ref in VERSUS:
            base = acc.get((n, target, ref))
            shared = sorted(set(got) & set(base or {}))
            cols.append("" if ref == method or not shared else paired_delta([got[s] - base[s] for s in shared], len(got)))
        if reference:
            base = finetune.get(n) or {}
            shared = sorted(set(got) & set(base))
            cols.append("" if (target, method) == (SOURCE, "finetune") or not shared
                        else paired_delta([got[s] - base[s] for s in shared], len(got)))
        name = TARGETS.get(target, f"{target[0]} ×{target[1]:g}")
        what = WHAT.get(method, method)
        if target == SOURCE and method == "chaininit-norms":               # its own width: nothing to fill
            what = "the source's convs and norms (chain init, norms too)"
        if method == "transferinit" and not target[0].startswith("resnet"):   # nothing to place: the fallback
            what = "the bank's statistics, every conv (covariance draws: transfer's start for another family)"
        print(f"| {n} | {name} | {what}: `{method}` | {len(got)} | "
              f"{np.mean(list(got.values())):.2f} % | " + " | ".join(cols) + " |")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3) or not all(Path(p).with_suffix(".json").is_file() for p in sys.argv[1:]):
        print("usage: transfer_table.py REPORT.md [WHOLE_NETWORK_REPORT.md] (each .json beside it)", file=sys.stderr)
        sys.exit(2)
    main(*sys.argv[1:])
