"""``python -m fastreg.report RUNS_DIR [RUNS_DIR ...]``: aggregate training runs into a Markdown results file.

Every folder under RUNS_DIR holding a train ``config.json`` is one run. Cells are
(train size × method × reg layers); only cells that were run appear, each with its seed count.
Runs trained with different banks are different cells (labelled ``bank=…``), and the same
method on two banks is compared seed by seed. Paired differences to the baseline use the seeds
both cells share. Filter metrics (``fastreg.filter_metrics``) are computed from each run's final
conv1 weights, and from each deeper layer it regularizes or bank-initializes, against the bank
the run trained with. Figures go to ``figures/`` next to the Markdown file. Unfinished or
non-finite runs are listed, never averaged.
"""
from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import UsageError
from ..filter_metrics import group_halves, judge_auc, low_freq_energy, mmd_rbf
from ..io_util import atomic_write_bytes, atomic_write_json, check_out_dir
from .bank_refs import BankRefs, References, _bank_filters, filter_metrics, judge_rows, metric_keys
from .cells import _cells, _created, baseline_cell, cell_records, paired_cells, uses_bank
from .cli import Parser
from .methods import DEFAULT_METHODS, method_order
from .report_header import TITLE, header_section
from .runs import Run, discover, finite

EXTERNAL = [  # (source, setting, labelled images, test accuracy %)
    ("Deep Weight Prior (Atanov et al., ICLR 2019), Bayesian CNN", "CIFAR-10", 50, 23.7),
    ("Deep Weight Prior (Atanov et al., ICLR 2019), Bayesian CNN", "CIFAR-10", 200, 30.3),
    ("Deep Weight Prior (Atanov et al., ICLR 2019), Bayesian CNN", "CIFAR-10", 500, 35.6),
    ("Supervised-only WRN-28-2 (FixMatch paper baselines)", "CIFAR-10", 40, 22.4),
    ("Supervised-only WRN-28-2 (FixMatch paper baselines)", "CIFAR-10", 250, 44.0),
]


def _f(x, spec: str = ".3f") -> str:
    return format(x, spec) if finite(x) else "—"


def _ms(vals: list[float], spec: str = ".3f", scale: float = 1.0) -> str:
    v = [x * scale for x in vals if finite(x)]
    if not v:
        return "—"
    return _f(float(np.mean(v)), spec) + (f" ± {_f(float(np.std(v, ddof=1)), spec)}" if len(v) > 1 else "")


def _metric_cells(rs: list[Run], layer: str = "conv1") -> str:
    """``judge AUC | MMD² | low-freq energy`` cells (mean ± std over the runs) of one layer."""
    auc, mmd, lfe = metric_keys(layer)
    m = lambda k: [r.metrics.get(k) for r in rs]  # noqa: E731
    return f"{_ms(m(auc))} | {_ms(m(mmd), '.4f')} | {_ms(m(lfe))}"


def build_parser() -> Parser:
    p = Parser(prog="python -m fastreg.report", description=__doc__.splitlines()[0].split(": ", 1)[-1])
    p.add_argument("runs_dir", nargs="+", help="folders with run directories (searched recursively)")
    p.add_argument("--out", default=None,
                   help="Markdown file; figures go to figures/ beside it (default: report.md in the first "
                        "runs folder)")
    p.add_argument("--force", action="store_true",
                   help="overwrite --out even when it holds another report (of other runs folders) or "
                        "another file")
    p.add_argument("--include", action="append", default=[], metavar="MD",
                   help="a Markdown file to include after the header, headings one level down (e.g. the "
                        "study the runs rest on); repeatable")
    p.add_argument("--title", default=TITLE, help="the report's heading (default: %(default)s)")
    p.add_argument("--bank", default=None, help="reference kernels for the filter metrics of every run (.safetensors, "
                                                "DWP .npy or a packaged bank's name; default: each run's own bank)")
    return p


def _included(path: Path) -> str:
    """An included Markdown file, its headings one level down (its title becomes a section)."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--include {path}: cannot read it ({e.__class__.__name__})") from None
    return re.sub(r"^(#+) ", r"\1# ", text, flags=re.M).rstrip() + "\n"


def _report_roots(text: str) -> list[str] | None:
    """The runs folders a report was generated from (its header line), None if it is not one."""
    m = re.search(r"^Generated .* by `python -m fastreg\.report .*` from \d+ run folders under (.*)\.$", text, re.M)
    return re.findall(r"`([^`]*)`", m.group(1)) if m else None


def _check_overwrite(roots: list[Path], out: Path, force: bool) -> None:
    """Refuse to replace a file that is not this report: another file, or a report of other
    runs folders (``--force`` overrides)."""
    if force or not out.exists():
        return
    try:
        was = _report_roots(out.read_text())
    except (OSError, UnicodeDecodeError):
        was = None
    if was is None:
        raise UsageError(f"--out {out} exists and is not a fastreg report; choose another --out or pass --force")
    if sorted(str(Path(r).resolve()) for r in was) != sorted(str(r.resolve()) for r in roots):
        raise UsageError(f"--out {out} holds the report of {', '.join(was)}; choose another --out or pass "
                         f"--force to replace it")


def _check_out(roots: list[Path], out: Path) -> None:
    for root in roots:
        if not root.is_dir():
            raise UsageError(f"{root}: no such runs folder")
    if out.suffix == ".json":
        raise UsageError(f"--out {out}: the Markdown file must not end in .json (per-run values go there)")
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give the Markdown file's name")
    check_out_dir(out.parent / "figures")   # walks up: covers the Markdown file's folder too


def accuracy_section(cells: dict[tuple, list[Run]], keys: list[tuple]) -> list[str]:
    """Test accuracy and conv1 filter metrics per cell."""
    L = ["## Test accuracy", "",
         "Cells that were run, only. Test accuracy on the full test set after the last epoch; mean ± std "
         "(ddof 1) over seeds. Filter metrics on the final conv1 kernels: judge AUC (fresh MLP, held-out "
         "halves split by whole filter; 0.5 = indistinguishable from the bank, below 0.5 = more typical "
         "of the bank than the bank's own held-out filters), MMD² (RBF, median bandwidth; ≈ 0 = same "
         "distribution), low-freq energy (share of non-DC spectral energy at ≤ 0.25 cycles/px).", "",
         "| train size | method | reg layers | n | seeds | test acc (%) | judge AUC | MMD² | low-freq energy |",
         "|---:|---|---|---:|---|---:|---:|---:|---:|"]
    for c in keys:
        rs = sorted(cells[c], key=lambda r: r.seed)
        L.append(f"| {c.size} | {c.label} | {c.layers} | {len(rs)} | {','.join(str(r.seed) for r in rs)} | "
                 f"{_ms([r.final['test_acc'] for r in rs], '.2f', 100)} | {_metric_cells(rs)} |")
    return L


def _paired_cells(ref: list[Run], runs: list[Run]) -> tuple[tuple, str] | None:
    """``cells.paired_cells`` as ((mean, CI low, CI high), the table cells ``seeds (n) | Δ | CI |
    p | test``); None without a shared seed."""
    d = paired_cells(ref, runs)
    if d is None:
        return None
    ci = f"[{_f(d['lo'], '+.2f')}, {_f(d['hi'], '+.2f')}]" if d["lo"] is not None else "—"
    return (d["mean"], d["lo"], d["hi"]), (f"{','.join(map(str, d['seeds']))} ({len(d['seeds'])}) | "
                                           f"{_f(d['mean'], '+.2f')} | {ci} | {_f(d['p'], '.3g')} | {d['test']}")


def comparison_refs(keys: list[tuple]) -> list[str]:
    """Reference cells beside the baseline: bank init once new priors are in the runs (as
    before), and whole-filter init, chain init and fine-tuning wherever they were run, so a
    whole-network grid says where each prior stands against the others (issue 26)."""
    methods = {k.method for k in keys}
    refs = ["bankinit"] if methods - set(DEFAULT_METHODS) else []
    return refs + [m for m in ("filterinit", "chaininit", "finetune") if m in methods and len(methods) > 2]


def paired_section(cells: dict[tuple, list[Run]], keys: list[tuple], ref: str = "baseline"
                   ) -> tuple[list[str], dict[tuple, tuple[float, float | None, float | None]]]:
    """Paired differences to each cell's ``ref`` cell (the baseline, or bank init); also
    returns them (mean, CI) for the figures."""
    name = {"baseline": "the baseline", "bankinit": "bank init (2-D slices)", "filterinit": "whole-filter init",
            "chaininit": "chain init", "finetune": "fine-tuning"}.get(ref, ref)
    L = ["", f"## Paired difference to {name}", "",
         f"Δ = method − {ref} test accuracy (percentage points), same train size, same seed and "
         f"data seed, paired t over seeds. The {ref if ref == 'baseline' else ref + ' cell'} has the same "
         "settings, reg layers when run "
         "(a λ = 0 run does not depend on them), and discriminator settings likewise.", "",
         "| train size | method | reg layers | paired seeds (n) | Δ acc (pp) | 95% CI | p | test |",
         "|---:|---|---|---|---:|---|---:|---|"]
    deltas: dict[tuple, tuple[float, float | None, float | None]] = {}
    for c in keys:
        if c.method in ("baseline", ref):
            continue
        bc = baseline_cell(c, cells, ref)
        if bc is None:
            continue
        d = _paired_cells(cells[bc], cells[c])
        if d is None:
            continue
        deltas[c] = d[0]
        own = bc.variant == c.variant and bc.layers == c.layers
        vs = "" if own else f" (vs {bc.label}{'' if bc.layers == c.layers else ', ' + bc.layers})"
        L.append(f"| {c.size} | {c.label} | {c.layers}{vs} | {d[1]} |")
    return L, deltas


def bank_section(cells: dict[tuple, list[Run]], keys: list[tuple]) -> list[str]:
    """The same method (same size, layers and other settings) trained with two banks:
    Δ = newer bank − older bank, paired by seed and data seed."""
    groups: dict[tuple, list[tuple]] = {}
    for c in keys:
        ex = cells[c][0].extra
        if ex.get("bank") is not None:
            rest = json.dumps({k: v for k, v in ex.items() if k != "bank"}, sort_keys=True, default=str)
            groups.setdefault((c.method, c.layers, rest, c.size), []).append(c)
    L = ["", "## The same method with another bank", "",
         "Δ = test accuracy with the newer bank − with the older one (percentage points), same "
         "method, train size, settings, seed and data seed; paired t over seeds.", "",
         "| train size | method | reg layers | banks (newer vs older) | paired seeds (n) | Δ acc (pp) | 95% CI | p | test |",
         "|---:|---|---|---|---|---:|---|---:|---|"]
    rows = []
    for (m, layers, _, size), cs in groups.items():
        cs = sorted(cs, key=lambda c: (_created(cells[c][0]), c))
        for new in cs[1:]:
            d = _paired_cells(cells[cs[0]], cells[new])
            if d is not None:
                rows.append((m, size, f"| {size} | {m} | {layers} | {cells[new][0].extra['bank']} vs "
                                      f"{cells[cs[0]][0].extra['bank']} | {d[1]} |"))
    return L + [r for *_, r in sorted(rows, key=lambda x: (method_order(x[0]), x[1]))] if rows else []


def deeper_layer_sections(cells: dict[tuple, list[Run]], keys: list[tuple], refs: "BankRefs") -> list[str]:
    """One table per deeper reference layer (conv2) for the cells that regularize it."""
    L: list[str] = []
    for layer in [n for n in dict.fromkeys(n for x in refs.all() for n in x) if n != "conv1"]:
        lfe = metric_keys(layer)[2]
        lk = [c for c in keys if any(lfe in r.metrics for r in cells[c])]
        if not lk:
            continue
        L += ["", f"## Filter metrics on {layer}", "",
              f"Cells whose runs regularize or bank-initialize {layer}: the same metrics on its final "
              f"kernels, against the bank kernels that serve {layer} in the run's own bank (the judge "
              f"subsamples up to {judge_rows(layer)} kernels "
              "per set, split by whole filter).", "",
              "| train size | method | reg layers | n | judge AUC | MMD² | low-freq energy |",
              "|---:|---|---|---:|---:|---:|---:|"]
        L += [f"| {c.size} | {c.label} | {c.layers} | {len(cells[c])} | {_metric_cells(cells[c], layer)} |" for c in lk]
    return L


def reference_section(refs: "BankRefs") -> list[str]:
    """What the metrics read for one half of each bank against the other, and for noise."""
    banks = refs.all()
    if not banks:
        return []
    L = ["", "## Filter-metric reference points", "", "| kernels | judge AUC vs bank | MMD² vs bank | "
         "low-freq energy |", "|---|---:|---:|---:|"]
    for layer, (ref, group), where in [(n, v, x.where) for x in banks for n, v in x.items()]:
        tag = f" {where}" if len(banks) > 1 else ""
        g = torch.Generator().manual_seed(0)
        max_n = judge_rows(layer)
        hi, ri = group_halves(len(ref), group, len(ref), g)
        half, rest = ref[hi], ref[ri]
        noise = torch.randn((min(len(ref), max_n),) + tuple(ref.shape[1:]), generator=g)
        for name, k, gk in ((f"{layer} bank{tag}, one half vs the other", half, group),
                            (f"Gaussian noise ({layer} shape{',' + tag if tag else ''})", noise, 1)):
            a_ = judge_auc(k, rest, max_n=max_n, group_learned=gk, group_bank=group)
            L.append(f"| {name} | {_f(a_)} | {_f(mmd_rbf(k, rest), '.4f')} | {_f(low_freq_energy(k))} |")
    return L


def flagged_section(runs: list[Run]) -> list[str]:
    """Runs left out (unfinished, failed) and counted runs without filter metrics."""
    bad = [r for r in runs if r.status != "ok"]
    notes = [r for r in runs if r.status == "ok" and "note" in r.metrics]
    if not (bad or notes):
        return []
    return ["", "## Runs not counted / flagged", "", "| run | status | reason |", "|---|---|---|",
            *(f"| `{r.dir}` | {r.status} | {r.reason} |" for r in bad),
            *(f"| `{r.dir}` | counted, no filter metrics | {r.metrics['note']} |" for r in notes)]


def external_section() -> list[str]:
    return ["", "## External reference points (not run here)", "",
            "Published numbers with other models, protocols and training budgets: for orientation only, "
            "not comparable cell by cell.", "", "| source | data | labelled training images | test acc (%) |",
            "|---|---|---:|---:|", *(f"| {s} | {d} | {n} | {acc:.1f} |" for s, d, n, acc in EXTERNAL)]


def figures_section(names: Sequence[str], out: Path, seconds: float) -> list[str]:
    return ["", "## Figures", "", *(f"![{name}](figures/{name})" for name in names),
            "", f"Per-run values: `{out.with_suffix('.json').name}`.",
            "", f"_Report computed in {seconds:.0f} s._", ""]


def per_run_rows(runs: list[Run]) -> list[dict]:
    """results.json: one row per run folder, finished or not, with its filter metrics."""
    return [{"run": str(r.dir), "train_size": r.size, "method": r.label, "reg_layers": r.layers,
             "seed": r.seed, "status": r.status, "test_acc": r.final.get("test_acc") if r.status == "ok" else None,
             "wall_time_s": r.wall, **{k: v for k, v in r.metrics.items() if finite(v)}} for r in runs]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    a = build_parser().parse_args(argv)
    roots = [Path(d) for d in a.runs_dir]
    out = Path(a.out) if a.out else roots[0] / "report.md"
    _check_out(roots, out)
    _check_overwrite(roots, out, a.force)
    included = [_included(Path(f)) for f in a.include]
    runs = [r for root in roots for r in discover(root)]
    ok = [r for r in runs if r.status == "ok"]
    if not ok:
        raise UsageError(f"{', '.join(map(str, roots))}: no finished runs ({len(runs)} unfinished or failed)")
    refs = BankRefs(a.bank)
    cells = _cells(runs)
    t0 = time.time()
    for r in tqdm(ok, desc="filter metrics", unit="run", leave=False):
        filter_metrics(r, refs.of_run(r))
    keys = sorted(cells, key=lambda c: (c.size, method_order(c.method, c.variant), c.layers))
    paired_lines, deltas = paired_section(cells, keys)
    refs_used = ["baseline"]
    for ref in comparison_refs(keys):        # the priors beside each other, not only vs the baseline
        vs = paired_section(cells, keys, ref)[0]
        if vs[-1].startswith("| ") and not vs[-1].startswith("|---"):
            paired_lines += vs
            refs_used.append(ref)
    L = [*header_section(argv, roots, runs, refs.describe(), a.title), *included, *accuracy_section(cells, keys), *paired_lines,
         *bank_section(cells, keys), *deeper_layer_sections(cells, keys, refs), *reference_section(refs),
         *flagged_section(runs), *external_section()]
    from .report_figures import figures   # matplotlib only when writing
    newest = max((r for r in ok if uses_bank(r.cfg) and refs.of_run(r).bank is not None), key=_created,
                 default=None)
    shown = refs.of_run(newest) if newest is not None else References()
    figs = figures(cells, deltas, ok, _bank_filters(*shown["conv1"]) if "conv1" in shown else None, out.stem,
                   newest.bank_name if newest is not None else None)
    L += figures_section(list(figs), out, time.time() - t0)
    text = "\n".join(L)
    if re.search(r"(?<![\w/.`-])(nan|inf)(?![\w/.`-])", text, re.I):
        raise RuntimeError("refusing to write NaN/Inf into the report")
    fig_dir = out.parent / "figures"
    for name, data in figs.items():
        atomic_write_bytes(fig_dir / name, data)
    atomic_write_json(out.with_suffix(".json"), {"cells": cell_records(cells, keys, tuple(refs_used)),
                                                 "runs": per_run_rows(runs)})
    atomic_write_bytes(out, text.encode())
    print(f"wrote {out} ({len(keys)} cells, {len(ok)} runs, {len(runs) - len(ok)} not counted) and "
          f"{len(figs)} figures in {fig_dir}")
    return 0

