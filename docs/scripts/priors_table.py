"""Print the table of filter priors from a report (docs/reports/results.md: its JSON cells, else its
Markdown, ``report_rows``) (and, for the cost column,
a pytest-benchmark JSON of bench/test_bench_priors.py), so no number is copied by hand.

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

from report_rows import _md_rows as _rows, rows   # a report's table rows: its JSON cells, else Markdown

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


def _section(txt: str, title: str) -> str:
    return txt.split(title, 1)[1].split("\n## ", 1)[0] if title in txt else ""


def _delta(c: list[str]) -> str:
    if c[5] == "—":
        return f"{c[4]} (1 seed)".replace("-", "−")
    lo, hi = c[5].strip("[]").split(", ")
    cell = f"{c[4]} [{lo}, {hi}]".replace("-", "−")
    seeds = int(c[3].rsplit("(", 1)[1].rstrip(")"))
    return (f"**{cell}**" if float(lo) > 0 or float(hi) < 0 else cell) + ("" if seeds == 5 else f" ({seeds} seeds)")


def _cost(method: str, layers: str, bench: dict[str, float]) -> str:
    if not bench:
        return "—"
    part = "adv1-all" if layers != "conv1" and "adv" in method else \
        "advf1" if "advf" in method else "adv1" if "adv" in method else "gauss" if "gauss" in method else "plain"
    return f"{bench[part] / bench['plain']:.2f}×" if part in bench else "—"


def _extra(label: str, key: str, default: str | None) -> str | None:
    """A setting from a cell label ``m [arch=X, bank=Y, …]``."""
    extra = label.partition(" [")[2].rstrip("]")
    return next((e.split("=", 1)[1] for e in extra.split(", ") if e.startswith(key + "=")), default)


def _arch_cells(rows: list[list[str]], arch: str, bank: str | None = None) -> dict[tuple[str, str, str], list[str]]:
    """(size, method, reg layers) → row, for one architecture: a label ``m [arch=X, …]``
    names it where the report mixes architectures; a bare ``m`` is DWPNet. With ``bank``,
    only the cells of that bank (and those that never saw one: the baseline)."""
    out = {}
    for c in rows:
        m = c[1].partition(" [")[0]
        b = _extra(c[1], "bank", None)
        if _extra(c[1], "arch", "dwpnet") == arch and (bank is None or b is None or b == bank):
            out[(c[0], m, c[2].split(" (vs")[0])] = c
    return out


BANK_ROWS = [("filterinit", "bank init, whole filters"), ("filterinit+gauss", "whole-filter init + Gaussian penalty"),
             ("bankinit", "bank init, 2-D slices"), ("adv1", "adversarial, 2-D slice D"),
             ("bankinit+adv1", "slice init + adversarial")]


def bank_table(txt: str, old: str = "dwpnet-4ep", new: str = "dwpnet-24ep") -> None:
    """Per method and size: Δ to the baseline with each bank, and new − old seed by seed."""
    base = _rows(_section(txt, "## Paired difference to the baseline"), 8)
    vs = {b: _arch_cells(base, "dwpnet", b) for b in (old, new)}
    cross = {(c[0], c[1]): c for c in _rows(_section(txt, "## The same method with another bank"), 9)
             if c[2] == "conv1" and c[3] == f"{new} vs {old}"}
    sizes = [n for n in SIZES if any((n, m) in cross for m, _ in BANK_ROWS)]
    print(f"| method | n | Δ acc vs baseline, bank {old} | Δ acc vs baseline, bank {new} | {new} − {old} |")
    print("|---|---:|---|---|---|")
    for m, what in BANK_ROWS:
        for i, n in enumerate([n for n in sizes if (n, m, "conv1") in vs[new]]):   # sizes run with the new bank
            parts = [_delta(vs[b][(n, m, "conv1")]) if (n, m, "conv1") in vs[b] else "not run" for b in (old, new)]
            parts.append(_delta([*cross[(n, m)][:2], cross[(n, m)][2], *cross[(n, m)][4:]])
                         if (n, m) in cross else "not run")
            print(f"| {f'{what}: `{m}`' if i == 0 else ''} | {n} | " + " | ".join(parts) + " |")


def resnet_table(path: str, arch: str) -> None:
    """Δ to the baseline for the runs of another architecture (every method, size, layers)."""
    acc = _arch_cells(rows(path, "## Test accuracy"), arch)
    vs_base = _arch_cells(rows(path, "## Paired difference to the baseline"), arch)
    sizes = [n for n in SIZES if any(k[0] == n for k in acc)]
    print("| method (reg layers) | " + " | ".join(f"n = {n}: Δ acc vs baseline" for n in sizes) + " |")
    print("|---" * (len(sizes) + 1) + "|")
    layers = sorted({k[2] for k in acc})
    for ly in layers:
        print(f"| baseline ({ly}) | " + " | ".join(f"{acc[(n, 'baseline', ly)][5]} %" if (n, "baseline", ly) in acc
                                                  else "not run" for n in sizes) + " |")
        for m in sorted({k[1] for k in vs_base if k[2] == ly}):
            print(f"| `{m}` ({ly}) | " + " | ".join(_delta(vs_base[(n, m, ly)]) if (n, m, ly) in vs_base
                                                   else "not run" for n in sizes) + " |")


def main(path: str = "docs/reports/results.md", bench_json: str | None = None, arch: str = "dwpnet",
         bank: str = "dwpnet-4ep") -> None:
    bench_json = bench_json or None
    if arch != "dwpnet":
        return resnet_table(path, arch)
    acc = _arch_cells(rows(path, "## Test accuracy"), arch, bank)
    vs_base = _arch_cells(rows(path, "## Paired difference to the baseline"), arch, bank)
    vs_bank = _arch_cells(rows(path, "## Paired difference to bank init"), arch, bank)
    bench = {}
    if bench_json:
        for b in json.loads(Path(bench_json).read_text())["benchmarks"]:
            bench[b["extra_info"]["impl"]] = b["stats"]["median"]
    sizes = [n for n in SIZES if any(k[0] == n for k in acc)]
    print("| prior | " + " | ".join(f"n = {n}: Δ acc vs baseline" for n in sizes)
          + " | n = 100: Δ vs bank init (slices) | judge AUC | MMD² | low-freq energy | cost / step |")
    print("|---" * (len(sizes) + 6) + "|")
    base = [acc.get((n, "baseline", "conv1")) for n in sizes]
    print("| baseline (no prior) | " + " | ".join(f"{b[5]} %" if b else "not run" for b in base)
          + f" | | {' | '.join(m.split(' ±')[0] for m in base[0][6:9]) if base[0] else '| |'} | 1.00× |")
    for method, layers, what in ROWS:
        if not any((n, method, layers) in acc for n in sizes):
            continue
        cells = [_delta(vs_base[(n, method, layers)]) if (n, method, layers) in vs_base else "not run"
                 for n in sizes]
        bank = vs_bank.get(("100", method, layers))
        a = acc.get(("100", method, layers))
        metrics = [m.split(" ±")[0] for m in a[6:9]] if a else ["—"] * 3
        label = f"`{method}`" + ("" if layers == "conv1" else f" ({layers})")
        print(f"| {what}: {label} | " + " | ".join(cells) + f" | {_delta(bank) if bank else '—'} | "
              + " | ".join(metrics) + f" | {_cost(method, layers, bench)} |")


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--banks" in args:
        bank_table(Path(next((a for a in args if a != "--banks"), "docs/reports/results.md")).read_text())
    elif "--bank" in args:
        i = args.index("--bank")
        main(*args[:i], *args[i + 2:], **{"bank": args[i + 1]})
    else:
        main(*args)
