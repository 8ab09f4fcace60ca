"""Print the Deep Weight Prior MNIST tables of docs/results.md (DESIGN.md §15) from a report's
JSON (per-run rows), so no number is copied by hand.

    python docs/scripts/mnist_dwp_table.py docs/reports/dwp_mnist.md

Table 1: every row of the sweep's preset ``dwp`` (three variational posteriors, five point
estimates), its mean test accuracy over the seeds at each train size. Table 2: the paper's
question, the DWP prior against the standard-normal and the log-uniform prior (every VI row
starts from the same VAE init), and the cheap priors against the model's own init: paired Δ
in pp, 95 % CI over the seeds (paired t), bold where it excludes 0. Table 3, at the sizes where
runs record them: the VI rows predicted the three ways (DESIGN.md §15). One protocol per
report: a label met twice at one size and seed is refused.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from report_cells import accuracies, load, paired_cell, paired_delta

VI = "vaeinit-slice-unscaled+vi-"
ROWS = [(VI + "normal", "VI, standard-normal prior"), (VI + "loguniform", "VI, log-uniform prior"),
        (VI + "loguniform-trunc", "VI, log-uniform prior, the paper's truncated-α posterior (added)"),
        (VI + "vae", "VI, DWP prior"), ("baseline", "point estimate, own init"),
        ("bankinit", "point estimate, bank init (notMNIST kernels)"),
        ("vaeinit-slice-unscaled", "point estimate, VAE init"), ("vae-slice", "point estimate, VAE penalty"),
        ("adv1", "point estimate, adversarial term")]
PAIRS = [(VI + "vae", VI + "normal", "DWP vs standard normal (VI)"),
         (VI + "vae", VI + "loguniform", "DWP vs log-uniform (VI)"),
         (VI + "vae", VI + "loguniform-trunc", "DWP vs log-uniform, truncated α (VI, added)"),
         (VI + "vae", "vaeinit-slice-unscaled", "DWP (VI) vs its own VAE init as a point estimate"),
         ("bankinit", "baseline", "bank init vs own init"),
         ("vaeinit-slice-unscaled", "baseline", "VAE init vs own init"),
         ("vae-slice", "baseline", "VAE penalty vs own init"), ("adv1", "baseline", "adversarial term vs own init")]



def main(report: str) -> None:
    acc = accuracies(report, load(report))
    sizes = sorted({n for n, _ in acc})
    most = max((len(s) for s in acc.values()), default=0)
    print("| row | " + " | ".join(f"n = {n}" for n in sizes) + " |")
    print("|---" + "|---:" * len(sizes) + "|")
    for m, what in ROWS:
        if any((n, m) in acc for n in sizes):
            cells = [f"{np.mean(list(acc[(n, m)].values())):.2f} %" + ("" if len(acc[(n, m)]) == most
                     else f" ({len(acc[(n, m)])} seed{'s' * (len(acc[(n, m)]) > 1)})") if (n, m) in acc else "not run" for n in sizes]
            print(f"| {what}: `{m}` | " + " | ".join(cells) + " |")
    print()
    print("| paired Δ (pp) | " + " | ".join(f"n = {n}" for n in sizes) + " |")
    print("|---" + "|---" * len(sizes) + "|")
    for a, b, what in PAIRS:
        if not any((n, a) in acc and (n, b) in acc for n in sizes):
            continue
        cells = [paired_cell(acc.get((n, a)), acc.get((n, b)), most) for n in sizes]
        print(f"| {what} | " + " | ".join(cells) + " |")

    predictions(report, sizes, most)


KEYS = [("test_acc", "weight samples (the protocol's)"), ("test_acc_local", "per-activation noise (the paper's)"),
        ("test_acc_mean", "posterior mean")]


def predictions(report: str, sizes: list[int], most: int) -> None:
    """Table 3, where runs record it (DESIGN.md §15): each VI row's networks predicted the three
    ways, over the runs that record all three; and DWP against the standard-normal and the
    truncated log-uniform prior (the paper's pair) each way."""
    acc = {k: accuracies(report, load(report), k) for k, _ in KEYS}
    vi = [(m, what) for m, what in ROWS if m.startswith(VI)]
    have = [n for n in sizes if any((n, m) in acc["test_acc_local"] for m, _ in vi)]
    if not have:
        return
    print()
    print("| VI row, predicted by | " + " | ".join(f"n = {n}: {what.split(' (')[0]}" for n in have
                                                   for _, what in KEYS) + " |")
    print("|---" + "|---:" * (len(have) * len(KEYS)) + "|")
    for m, what in vi:
        cells = []
        for n in have:
            seeds = set(acc["test_acc_local"].get((n, m), {}))
            for k, _ in KEYS:
                v = [x for s, x in acc[k].get((n, m), {}).items() if s in seeds]
                cells.append(f"{np.mean(v):.2f} %" + ("" if len(v) == most else f" ({len(v)} seed{'s' * (len(v) > 1)})")
                             if v else "not recorded")
        print(f"| {what.split(':')[0]} | " + " | ".join(cells) + " |")
    for b in (VI + "normal", VI + "loguniform-trunc"):
        cells = []
        for n in have:
            for k, _ in KEYS:
                x, y = acc[k].get((n, VI + "vae"), {}), acc[k].get((n, b), {})
                shared = sorted(set(x) & set(y) & set(acc["test_acc_local"].get((n, VI + "vae"), {}))
                                & set(acc["test_acc_local"].get((n, b), {})))
                cells.append(paired_delta([x[s] - y[s] for s in shared], most, "not recorded"))
        print(f"| Δ DWP vs {b[len(VI):]} (pp) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    if len(sys.argv) != 2 or not Path(sys.argv[1]).with_suffix(".json").is_file():
        print("usage: mnist_dwp_table.py REPORT.md (REPORT.json beside it)", file=sys.stderr)
        sys.exit(2)
    main(sys.argv[1])
