"""Print the Deep Weight Prior tables of docs/results.md from a report's JSON (cells and per-run
rows), so no number is copied by hand.

    python docs/scripts/dwp_table.py docs/reports/dwp_prior.md

Table 1: every prior's test accuracy and paired Δ to the baseline at each train size, with the
filter metrics of the final conv1 kernels at n = 100. Table 2: each learned-density row against
the bank itself (whole-filter init) and against the Gaussian fitted to the bank (as an init and
as a penalty; a reference that was not run has no column), paired seed by seed at each size.
Δ in pp with its 95 % CI over the seeds (paired t), bold where the CI excludes 0. One protocol
per report: a label met twice at one size is refused.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from report_cells import accuracies, load, metric, paired_delta

ROWS = [("baseline", "the model's own init"), ("filterinit", "the bank's own whole filters"),
        ("covinit", "a Gaussian fitted to the bank: init"), ("gauss", "a Gaussian fitted to the bank: penalty"),
        ("vaeinit", "DWP's VAE fitted to the bank: init, whole filters"),
        ("vaeinit-slice", "DWP's VAE: init, 2-D slices (as DWP)"), ("vae", "DWP's VAE: penalty (−ELBO)"),
        ("filterinit+vae", "whole-filter init + VAE penalty")]
LEARNED = ("vaeinit", "vaeinit-slice", "vae", "filterinit+vae")
VERSUS = (("filterinit", "whole-filter init"), ("covinit", "Gaussian init"), ("gauss", "Gaussian penalty"))



def main(report: str) -> None:
    data = load(report)
    acc = accuracies(report, data)
    cells = {(c["train_size"], c["label"]): c for c in data["cells"]}
    sizes = sorted({n for n, _ in acc})

    def delta(n: int, m: str, ref: str) -> list[float] | None:
        a, b = acc.get((n, m)), acc.get((n, ref))
        return [a[s] - b[s] for s in sorted(a) if s in b] if a and b else None

    print("| prior | " + " | ".join(f"n = {n}: Δ vs baseline" for n in sizes)
          + " | judge AUC (n = 100) | MMD² (n = 100) |")
    print("|---" * (len(sizes) + 3) + "|")
    for m, what in ROWS:
        if not any((n, m) in acc for n in sizes):
            continue
        if m == "baseline":
            parts = [f"{np.mean(list(acc[(n, m)].values())):.2f} %" if (n, m) in acc else "not run" for n in sizes]
        else:
            parts = [paired_delta(delta(n, m, "baseline"), 5) for n in sizes]
        parts += [metric(cells.get((100, m)), "auc"), metric(cells.get((100, m)), "mmd", ".4f")]
        print(f"| {what}: `{m}` | " + " | ".join(parts) + " |")
    print()
    versus = [(ref, w) for ref, w in VERSUS if any((n, ref) in acc for n in sizes)]   # refs that were run
    print("| learned prior | n | " + " | ".join(f"Δ vs {w}" for _, w in versus) + " |")
    print("|---|---:|" + "---|" * len(versus))
    for m, what in ROWS:
        if m not in LEARNED:
            continue
        for i, n in enumerate(n for n in sizes if (n, m) in acc):
            print(f"| {f'{what}: `{m}`' if i == 0 else ''} | {n} | "
                  + " | ".join(paired_delta(delta(n, m, ref), 5) for ref, _ in versus) + " |")


if __name__ == "__main__":
    if len(sys.argv) != 2 or not Path(sys.argv[1]).with_suffix(".json").is_file():
        print("usage: dwp_table.py REPORT.md (REPORT.json beside it)", file=sys.stderr)
        sys.exit(2)
    main(sys.argv[1])
