"""Print the table of the adversarial term alone in docs/results.md from
docs/reports/results_adversarial.md, so no number is copied by hand.

    python docs/scripts/adversarial_table.py            # the table in docs/results.md
    python docs/scripts/adversarial_table.py --all      # every method and the conv1 + conv2 rows too

Cells: paired Δ test accuracy to the baseline (pp) with its 95 % CI, bold where the CI
excludes 0, the seed count when it is not 5; "not run" where docs/reports/results_adversarial.md has no cell.
The judge AUC column is conv1's, and conv2's too for the conv1 + conv2 rows.
"""
from __future__ import annotations

import sys

SUMMARY_METHODS = ["adv1", "adv10", "bankinit"]
SUMMARY_ROWS = [(n, w, "conv1", label) for n in ("100", "500", "1000", "5000")
                for w, label in (("0.5", ""), ("1.0", ", full width"))]
METHODS = ["adv0.1", "adv1", "adv10", "bankinit", "bankinit+adv1"]
ROWS = [("100", "0.5", "conv1", ""), ("100", "1.0", "conv1", ", full width"),
        ("100", "0.5", "conv1,conv2", ", conv1 + conv2"), ("500", "0.5", "conv1", ""),
        ("500", "1.0", "conv1", ", full width"), ("500", "0.5", "conv1,conv2", ", conv1 + conv2"),
        ("1000", "0.5", "conv1", ""), ("1000", "1.0", "conv1", ", full width"),
        ("1000", "0.5", "conv1,conv2", ", conv1 + conv2"), ("5000", "0.5", "conv1", ""),
        ("5000", "1.0", "conv1", ", full width"), ("5000", "0.5", "conv1,conv2", ", conv1 + conv2")]


from report_cells import acc, by_key, delta, load, metric


def main(*args: str) -> None:
    full = "--all" in args
    path = next((a for a in args if a != "--all"), "docs/reports/results_adversarial.md")
    methods, rows = (METHODS, ROWS) if full else (SUMMARY_METHODS, SUMMARY_ROWS)
    cells = by_key(load(path)["cells"], lambda c: (str(c["train_size"]), c["method"], str(c["extra"].get("width")),
                                                    c["reg_layers"]))
    print("| n | " + " | ".join(f"{m} Δ acc" for m in methods) + " | judge AUC baseline → adv1 |")
    print("|---" * (len(methods) + 2) + "|")
    for n, w, layers, label in rows:
        b = cells.get((n, "baseline", w, layers))
        pairs = [cells.get((n, m, w, layers), {}).get("paired", {}).get("baseline") for m in methods]
        row = [delta(d, 5) if d else "not run" for d in pairs]
        if b is None and not any(pairs):
            continue
        head = f"{n}{label}" if "conv2" in layers else f"{n}{label} ({acc(b)})"
        a1 = cells.get((n, "adv1", w, layers))
        bb = b or cells.get((n, "baseline", w, "conv1"))          # λ = 0: same run either way
        row.append(f"{metric(bb, 'auc')} → {metric(a1, 'auc')}" if a1 and bb else "not run")
        if a1 and b and "auc_conv2" in a1["metrics"] and "auc_conv2" in b["metrics"]:   # conv2 too, on conv1 + conv2
            row[-1] += f"; conv2 {metric(b, 'auc_conv2')} → {metric(a1, 'auc_conv2')}"
        print(f"| {head} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main(*sys.argv[1:])
