"""Print the table of the adversarial term alone in docs/results.md from
docs/reports/results_adversarial.md, so no number is copied by hand.

    python docs/scripts/adversarial_table.py            # the table in docs/results.md
    python docs/scripts/adversarial_table.py --all      # every method and the conv1 + conv2 rows too

Cells: paired Δ test accuracy to the baseline (pp) with its 95 % CI, bold where the CI
excludes 0, the seed count when it is not 5; "not run" where docs/reports/results_adversarial.md has no cell.
The judge AUC column is conv1's, and conv2's too for the conv1 + conv2 rows.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

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


from report_rows import _md_rows as _rows, rows as report_rows   # JSON cells, else Markdown


def main(*args: str) -> None:
    full = "--all" in args
    path = next((a for a in args if a != "--all"), "docs/reports/results_adversarial.md")
    methods, rows = (METHODS, ROWS) if full else (SUMMARY_METHODS, SUMMARY_ROWS)
    txt = Path(path).read_text()
    acc, auc, pair = {}, {}, {}
    for c in report_rows(path, "## Test accuracy"):
        acc[(c[0], c[1], c[2])], auc[(c[0], c[1], c[2])] = c[5], c[6]
    auc2 = {}                                  # conv2's judge AUC, for the conv1 + conv2 rows
    if "## Filter metrics on conv2" in txt:
        for c in _rows(txt.split("## Filter metrics on conv2")[1].split("\n## ")[0], 7):
            auc2[(c[0], c[1], c[2])] = c[4].split(" ±")[0]
    for c in report_rows(path, "## Paired difference to the baseline"):
        n_seeds = int(re.search(r"\((\d+)\)", c[3]).group(1))
        if c[5] == "—":                       # one seed: no CI
            cell = f"{c[4]} (1 seed)".replace("-", "−")
        else:
            lo, hi = c[5].strip("[]").split(", ")
            cell = f"{c[4]} [{lo}, {hi}]".replace("-", "−")
            if float(lo) > 0 or float(hi) < 0:
                cell = f"**{cell}**"
            if n_seeds != 5:
                cell += f" ({n_seeds} seeds)"
        pair[(c[0], c[1], c[2].split(" (vs")[0])] = cell
    print("| n | " + " | ".join(f"{m} Δ acc" for m in methods) + " | judge AUC baseline → adv1 |")
    print("|---" * (len(methods) + 2) + "|")
    for n, w, layers, label in rows:
        b = (n, f"baseline [width={w}]", layers)
        cells = [pair.get((n, f"{m} [width={w}]", layers), "not run") for m in methods]
        if b not in acc and all(c == "not run" for c in cells):
            continue
        head = f"{n}{label}" if "conv2" in layers else f"{n}{label} ({acc[b]} %)"
        a1 = auc.get((n, f"adv1 [width={w}]", layers))
        bb = b if b in auc else (n, f"baseline [width={w}]", "conv1")   # λ = 0: same run either way
        cells.append(f"{auc[bb].split(' ±')[0]} → {a1.split(' ±')[0]}" if a1 and bb in auc else "not run")
        a2 = [auc2.get((n, f"{m} [width={w}]", layers)) for m in ("baseline", "adv1")]
        if all(a2):
            cells[-1] += f"; conv2 {a2[0]} → {a2[1]}"
        print(f"| {head} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(*sys.argv[1:])
