"""Print the step-budget check of docs/results.md (DESIGN.md §15): the three priors of the Deep
Weight Prior's claim at n = 50, on the protocol's 2000 steps and on the paper's budget (10 000
full-batch steps, the learning rate decaying linearly to 0), from the two reports' JSON.

    python docs/scripts/mnist_budget_table.py docs/reports/dwp_mnist.md docs/reports/dwp_mnist_budget.md

Table 1: each prior's mean test accuracy at both budgets and the paired Δ between them. Table 2:
DWP against the other two priors at each budget (paired Δ in pp, 95 % CI over the seeds, bold
where it excludes 0). Table 3: the same networks predicted the three ways a Bayesian run
records (exact weight samples, the protocol's; per-activation noise, as the paper's code
predicts; the posterior mean), over the runs that record all three; Table 4: Table 2 with the
paper's way to predict.
"""
from __future__ import annotations

import sys
from pathlib import Path

from report_cells import accuracies, load, mean_cell, paired_cell

N = 50
VI = "vaeinit-slice-unscaled+vi-"
PRIORS = [(VI + "normal", "standard normal"), (VI + "loguniform-trunc", "log-uniform, truncated α"),
          (VI + "vae", "DWP")]
BUDGETS = ("2000 steps (the protocol)", "10 000 steps, linear decay (the paper's budget)")
KEYS = [("test_acc", "weight samples (the protocol's)"), ("test_acc_local", "per-activation noise (the paper's)"),
        ("test_acc_mean", "posterior mean")]


def main(protocol: str, budget: str) -> None:
    """The four tables, from the protocol's report (its n = 50 rows) and the budget report."""
    data = [load(protocol), load(budget)]
    acc = {k: [accuracies(r, d, k) for r, d in zip((protocol, budget), data)] for k, _ in KEYS}
    most = 5
    print(f"| prior, n = {N} | " + " | ".join(BUDGETS) + " | Δ, the paper's budget vs 2000 steps (pp) |")
    print("|---|---:|---:|---|")
    for m, what in PRIORS:
        short, long = (a.get((N, m)) for a in acc["test_acc"])
        print(f"| {what}: `{m}` | {mean_cell(short, most)} | {mean_cell(long, most)} | {paired_cell(long, short, most)} |")
    print()
    print(f"| paired Δ (pp), n = {N} | " + " | ".join(BUDGETS) + " |")
    print("|---|---|---|")
    dwp = PRIORS[-1][0]
    for m, what in PRIORS[:-1]:
        cells = [paired_cell(a.get((N, dwp)), a.get((N, m)), most) for a in acc["test_acc"]]
        print(f"| DWP vs {what} | " + " | ".join(cells) + " |")
    print()
    print(f"| n = {N}, predicted by | " + " | ".join(f"{p}, {b.split(' (')[0]}" for b in BUDGETS
                                                   for _, p in PRIORS) + " |")
    print("|---" + "|---:" * (len(BUDGETS) * len(PRIORS)) + "|")
    for k, what in KEYS:
        cells = []
        for i in range(len(BUDGETS)):
            for m, _ in PRIORS:
                have = set(acc["test_acc_local"][i].get((N, m), {}))   # the runs that record all three
                seeds = {s: v for s, v in acc[k][i].get((N, m), {}).items() if s in have}
                cells.append(mean_cell(seeds, most, "not recorded"))
        print(f"| {what} | " + " | ".join(cells) + " |")
    print()
    print(f"| paired Δ (pp), n = {N}, predicted with per-activation noise | " + " | ".join(BUDGETS) + " |")
    print("|---|---|---|")
    for m, what in PRIORS[:-1]:
        cells = [paired_cell(a.get((N, dwp)), a.get((N, m)), most, "not recorded") for a in acc["test_acc_local"]]
        print(f"| DWP vs {what} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    if len(sys.argv) != 3 or not all(Path(a).with_suffix(".json").is_file() for a in sys.argv[1:]):
        print("usage: mnist_budget_table.py PROTOCOL_REPORT.md BUDGET_REPORT.md (each .json beside it)",
              file=sys.stderr)
        sys.exit(2)
    main(sys.argv[1], sys.argv[2])
