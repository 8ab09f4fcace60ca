"""Print the whole-network tables of docs/results.md from a report's JSON cells, so no number is
copied by hand.

    python docs/scripts/whole_network_table.py docs/reports/whole_network.md resnet20 all
    python docs/scripts/whole_network_table.py docs/reports/whole_network.md dwpnet conv1,conv2
    python docs/scripts/whole_network_table.py docs/reports/whole_network.md resnet20 all 100 baseline,chaininit
                                                          (only those sizes and methods: the README's table)

One row per (train size, cell) of that architecture and those regularized layers: mean test
accuracy over the seeds, and the paired Δ (pp, 95 % CI over seeds, bold where it excludes 0) to
the baseline, to chain init and to fine-tuning of the same size and protocol. A cell whose bank
or sources are not the class-disjoint ones (``*_c04``, ``c01234``) is marked "same-class" or by
its sources, so the two protocols' banks sit side by side without being mixed.
"""
from __future__ import annotations

import sys
from pathlib import Path

from report_cells import delta as _delta, load

ORDER = ["baseline", "filterinit", "vaeinit", "vae", "filterinit+vae", "chaininit", "chaininit-norms", "chaininit+l2sp", "chaininit+advf1",
         "chaininit+gauss", "finetune"]
WHAT = {"baseline": "the model's own init", "filterinit": "whole filters, drawn independently per layer",
        "chaininit": "chain: one source network's convs", "chaininit-norms": "chain with its norms",
        "chaininit+l2sp": "chain + L2-SP", "chaininit+advf1": "chain + adversarial (whole filters, λ = 1)",
        "chaininit+gauss": "chain + Gaussian penalty", "finetune": "fine-tuning (all but the head)",
        "vaeinit": "draws from a VAE fitted to the bank (DWP)", "vae": "VAE penalty (−ELBO, DWP)",
        "filterinit+vae": "whole filters + VAE penalty"}
REFS = ("baseline", "chaininit", "finetune")


def _origin(c: dict) -> str:
    """Which bank or sources a cell's prior came from, when not the class-disjoint default."""
    src, bank = c["extra"].get("sources"), c["extra"].get("bank")
    if src and "c04" not in src:
        return " (same-class bank)"
    if src and "bank" in src:
        return " (rebuilt from the class-disjoint bank)"
    if bank and "c01234" not in bank:
        return " (same-class bank)"
    return ""


def main(report: str, arch: str, layers: str, sizes: str = "", methods: str = "") -> None:
    cells = [c for c in load(report)["cells"]
             if c["extra"].get("arch", "dwpnet") == arch and c["reg_layers"] == layers
             and (not sizes or str(c["train_size"]) in sizes.split(","))
             and (not methods or c["method"] in methods.split(","))]
    cells.sort(key=lambda c: (c["train_size"], ORDER.index(c["method"]) if c["method"] in ORDER else 99,
                              _origin(c)))
    print("| n | prior | seeds | test acc | Δ vs baseline | Δ vs chain init | Δ vs fine-tuning |")
    print("|---:|---|---:|---:|---|---|---|")
    for c in cells:
        k = len(c["seeds"])
        deltas = [_delta(c["paired"].get(r), k) if r != c["method"] else "" for r in REFS]
        print(f"| {c['train_size']} | {WHAT.get(c['method'], c['method'])}: `{c['method']}`{_origin(c)} | {k} | "
              f"{c['acc_mean']:.2f} % | " + " | ".join(deltas) + " |")


if __name__ == "__main__":
    if not 4 <= len(sys.argv) <= 6 or not Path(sys.argv[1]).with_suffix(".json").is_file():
        print("usage: whole_network_table.py REPORT.md ARCH LAYERS [SIZES] [METHODS] (REPORT.json beside it)",
              file=sys.stderr)
        sys.exit(2)
    main(*sys.argv[1:])
