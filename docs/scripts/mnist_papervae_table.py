"""Print the paper-VAE check of docs/results.md (DESIGN.md §15): the Deep Weight Prior at n = 50
with the paper's own trained VAEs as prior and init, beside the grid's three priors (fastreg's
VAE as DWP), from the two reports' JSON.

    python docs/scripts/mnist_papervae_table.py docs/reports/dwp_mnist.md docs/reports/dwp_mnist_papervae.md

Table 1: each row's mean test accuracy, predicted by exact weight samples (the protocol's) and
with per-activation noise (the paper's code), over the runs that record each. Table 2: the
paper-VAE row against each grid row (the reading DESIGN.md §15 fixed before the check ran),
then the control added after its first seed: what the prior adds to the paper-VAE init (the
VI row vs the same start trained as a point estimate), and the two VAEs' inits against each
other; paired over the seeds both ran (Δ in pp, 95 % CI, bold where it excludes 0).
"""
from __future__ import annotations

import sys
from pathlib import Path

from report_cells import accuracies, load, mean_cell, paired_cell

N = 50
VI = "vaeinit-slice-unscaled+vi-"
INIT = "vaeinit-slice-unscaled"
GRID = [(VI + "normal", "standard normal"), (VI + "loguniform-trunc", "log-uniform, truncated α"),
        (VI + "vae", "DWP, fastreg's MLP VAE (the grid)"), (INIT, "fastreg's VAE init, point estimate (the grid)")]
PAPER = [(VI + "vae", "DWP, the paper's own VAEs"), (INIT, "the paper's VAE init, point estimate")]
KEYS = [("test_acc", "weight samples (the protocol's)"), ("test_acc_local", "per-activation noise (the paper's)")]


def main(protocol: str, papervae: str) -> None:
    """The two tables, from the protocol's report (its n = 50 rows) and the paper-VAE report."""
    data = {r: load(r) for r in (protocol, papervae)}
    acc = {k: {r: accuracies(r, d, k) for r, d in data.items()} for k, _ in KEYS}
    most = 5
    rows = [(protocol, m, what) for m, what in GRID] + [(papervae, m, what) for m, what in PAPER]
    print(f"| n = {N}, 2000 steps | " + " | ".join(what for _, what in KEYS) + " |")
    print("|---|---:|---:|")
    for report, m, what in rows:
        cells = [mean_cell(acc[k][report].get((N, m)), most, "not recorded") for k, _ in KEYS]
        print(f"| {what}: `{m}` | " + " | ".join(cells) + " |")
    print()
    (dwp, dwp_what), (init, init_what) = PAPER
    pairs = [((papervae, dwp), (protocol, m), f"{dwp_what} vs {what}") for m, what in GRID[:3]]
    pairs += [((papervae, dwp), (papervae, init), f"{dwp_what} vs {init_what}"),
              ((papervae, init), (protocol, INIT), f"{init_what} vs {GRID[3][1]}")]
    print(f"| paired Δ (pp), n = {N} | " + " | ".join(what for _, what in KEYS) + " |")
    print("|---|---|---|")
    for (ra, ma), (rb, mb), what in pairs:
        cells = [paired_cell(acc[k][ra].get((N, ma)), acc[k][rb].get((N, mb)), most, "not recorded") for k, _ in KEYS]
        print(f"| {what} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    if len(sys.argv) != 3 or not all(Path(a).with_suffix(".json").is_file() for a in sys.argv[1:]):
        print("usage: mnist_papervae_table.py PROTOCOL_REPORT.md PAPERVAE_REPORT.md (each .json beside it)",
              file=sys.stderr)
        sys.exit(2)
    main(sys.argv[1], sys.argv[2])
