"""``python -m fastreg.report RUNS_DIR [RUNS_DIR ...]``: aggregate training runs into a Markdown results file.

Every folder under RUNS_DIR holding a train ``config.json`` is one run. Runs of different
protocols (dataset, classes, image size, the split accuracy is measured on) are reported in
separate sections, each with its own tables and figures. Cells are
(train size × method × reg layers); only cells that were run appear, each with its seed count.
Runs trained with different banks are different cells (labelled ``bank=…``), and the same
method on two banks is compared seed by seed. Paired differences to the baseline use the seeds
both cells share. Filter metrics (``fastreg.filter_metrics``) are computed from each run's final
conv1 weights, and from each deeper layer it regularizes or bank-initializes, against the bank
the run trained with. ``--out`` names a folder (``report.md``, ``report.json`` and ``figures/``
inside it) or a ``.md`` file (its JSON and ``figures/`` beside it). Unfinished or
non-finite runs are listed, never averaged.

Two steps: the analysis turns runs into records (``analysis.report_records``), written to the
JSON beside the Markdown; the cell tables are rendered from those records alone
(``fastreg.lab.report.tables``), as the docs' table printers read them.
"""
from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm

from ...errors import UsageError
from ...filter_metrics import group_halves, judge_auc, low_freq_energy, mmd_rbf
from ...io_util import atomic_write_bytes, atomic_write_json, check_out_dir
from .references import BankRefs, References, bank_filters, filter_metrics, judge_rows, metric_keys
from .analysis import bank_created, comparison_refs, make_cells, report_records, uses_bank
from .kept import keep
from .rows import kept_layers
from ..banks import run_bank_recipe
from ..protocol import protocol_key
from ..cli import Parser
from ..methods import method_order
from .header import TITLE, header_section
from .tables import fmt, report_tables
from ...bayes import OTHER_PREDICTIONS as OTHER_WAYS
from ..runs import Run, discover, finite

EXTERNAL = [  # (source, setting, labelled images, test accuracy %)
    ("Deep Weight Prior (Atanov et al., ICLR 2019), Bayesian CNN", "CIFAR-10", 50, 23.7),
    ("Deep Weight Prior (Atanov et al., ICLR 2019), Bayesian CNN", "CIFAR-10", 200, 30.3),
    ("Deep Weight Prior (Atanov et al., ICLR 2019), Bayesian CNN", "CIFAR-10", 500, 35.6),
    ("Supervised-only WRN-28-2 (FixMatch paper baselines)", "CIFAR-10", 40, 22.4),
    ("Supervised-only WRN-28-2 (FixMatch paper baselines)", "CIFAR-10", 250, 44.0),
]


def build_parser() -> Parser:
    p = Parser(prog="python -m fastreg.report", description=__doc__.splitlines()[0].split(": ", 1)[-1])
    p.add_argument("runs_dir", nargs="+", help="folders with run directories (searched recursively)")
    p.add_argument("--out", default=None,
                   help="a folder (report.md, report.json and figures/ go inside it) or a .md file (its .json "
                        "and figures/ beside it) (default: the first runs folder)")
    p.add_argument("--force", action="store_true",
                   help="overwrite --out even when it holds another report (of other runs folders) or "
                        "another file")
    p.add_argument("--include", action="append", default=[], metavar="MD",
                   help="a Markdown file to include after the header, headings one level down (e.g. the "
                        "study the runs rest on); repeatable (default: none)")
    p.add_argument("--keep", action="append", default=[], metavar="JSON", type=Path,
                   help="an earlier report's JSON: its finished runs count where their folder is gone or "
                        "unfinished (runs/ is not committed; the report is); repeatable (default: none)")
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


def out_path(arg: str | None, roots: list[Path]) -> Path:
    """The Markdown file ``--out`` names: a ``.md`` path as given, else ``report.md`` inside
    the folder it names (the first runs folder by default); never a file of another kind."""
    out = Path(arg) if arg else roots[0]
    if out.suffix == ".md":
        return out
    if out.suffix == ".json":
        raise UsageError(f"--out {out}: give a folder or a .md file (the per-run values go to the .json beside it)")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder or a .md file")
    return out / "report.md"


def _check_out(roots: list[Path], out: Path) -> None:
    for root in roots:
        if not root.is_dir():
            raise UsageError(f"{root}: no such runs folder")
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder, not the report's .md file")
    check_out_dir(out.parent / "figures")   # walks up: covers the Markdown file's folder too


def deeper_layers(cells: dict[tuple, list[Run]], refs: BankRefs) -> list[dict]:
    """The deeper reference layers (conv2, …) some cell was measured on, with the judge's
    subsample size: the report has a table for each."""
    names = [n for n in dict.fromkeys([*(n for x in refs.all() for n in x),       # kept rows: the layers they measured
                                       *(L["layer"] for L in kept_layers([r for rs in cells.values() for r in rs if r.kept]))])
             if n != "conv1"]
    return [{"layer": n, "judge_rows": judge_rows(n)} for n in names
            if any(metric_keys(n)[2] in r.metrics for rs in cells.values() for r in rs)]


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
            L.append(f"| {name} | {fmt(a_)} | {fmt(mmd_rbf(k, rest), '.4f')} | {fmt(low_freq_energy(k))} |")
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
            "", f"The cells' records and per-run values: `{out.with_suffix('.json').name}`.",
            "", f"_Report computed in {seconds:.0f} s._", ""]


# a Bayesian run's test accuracy predicted the two other ways (fastreg.lab.train._other_predictions)
OTHER_PREDICTIONS = tuple(f"test_acc_{how}" for how in OTHER_WAYS)


def per_run_rows(runs: list[Run]) -> list[dict]:
    """results.json: one row per run folder, finished or not, with its filter metrics and its
    bank's identity (what ``--keep`` needs to count it again once the folder is gone); a kept
    row as it was kept."""
    return [dict(r.row) if r.kept else
            {"run": str(r.dir), "train_size": r.size, "method": r.label, "reg_layers": r.layers,
             "protocol": r.protocol, "seed": r.seed, "data_seed": r.cfg.get("data_seed", r.seed), "status": r.status,
             "test_acc": r.final.get("test_acc") if r.status == "ok" else None,
             **{k: r.final[k] for k in OTHER_PREDICTIONS if r.status == "ok" and finite(r.final.get(k))},
             "wall_time_s": r.wall, **({"bank_id": run_bank_recipe(r.cfg)} if uses_bank(r.cfg) else {}),
             **{k: v for k, v in r.metrics.items() if finite(v)}} for r in runs]


def protocol_groups(runs: list[Run]) -> list[tuple[dict, list[Run]]]:
    """The runs by protocol (``protocol.protocol``: dataset, classes, image size, split): each
    group is analysed on its own, so no table, difference or curve mixes two."""
    groups: dict[str, list[Run]] = {}
    for r in runs:
        groups.setdefault(protocol_key(r.protocol), []).append(r)
    out = []
    for k in sorted(groups):
        proto = dict(groups[k][0].protocol)
        counted = [r for r in groups[k] if r.status == "ok"] or groups[k]     # as the records rebuild it
        if len({json.dumps(r.protocol.get("eval_images")) for r in counted}) > 1:
            proto["eval_images"] = None        # the same split, counted differently: no count shown
        out.append((proto, groups[k]))
    return out


def analyse(cells: dict, refs: BankRefs) -> tuple[dict, dict]:
    """One protocol's cell records (``analysis.report_records``) and the paired Δ to the baseline
    per cell (for the accuracy figure)."""
    keys = sorted(cells, key=lambda c: (c.size, method_order(c.method, c.variant), c.layers))
    records = report_records(cells, keys, ["baseline", *comparison_refs(keys)], deeper_layers(cells, refs))
    deltas = {c: (r["paired"]["baseline"]["mean"], r["paired"]["baseline"]["lo"], r["paired"]["baseline"]["hi"])
              for c, r in zip(keys, records["cells"]) if "baseline" in r["paired"]}
    return records, deltas


def protocol_figures(cells: dict, deltas: dict, runs: list[Run], refs: BankRefs, stem: str,
                     protocol: dict) -> dict[str, bytes]:
    """One protocol's figures (``figures.figures``), with the bank of its newest banked run."""
    from .figures import figures   # matplotlib only when writing
    ok = [r for r in runs if r.status == "ok"]
    newest = max((r for r in ok if uses_bank(r.cfg) and refs.of_run(r).bank is not None), key=bank_created,
                 default=None)
    shown = refs.of_run(newest) if newest is not None else References()
    return figures(cells, deltas, ok, bank_filters(*shown["conv1"]) if "conv1" in shown else None, stem,
                   newest.bank_name if newest is not None else None, protocol)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    a = build_parser().parse_args(argv)
    roots = [Path(d) for d in a.runs_dir]
    for root in roots:
        if not root.is_dir():
            raise UsageError(f"{root}: no such runs folder")
    out = out_path(a.out, roots)
    _check_out(roots, out)
    _check_overwrite(roots, out, a.force)
    included = [_included(Path(f)) for f in a.include]
    kept, runs = keep(a.keep, [r for root in roots for r in discover(root)])   # before --out is rewritten
    runs += kept.runs
    ok = [r for r in runs if r.status == "ok"]
    if not ok:
        raise UsageError(f"{', '.join(map(str, roots))}: no finished runs ({len(runs)} unfinished or failed)")
    groups = [(p, rs, make_cells(rs)) for p, rs in protocol_groups(runs)]   # labels every run, finished or not
    groups = [g for g in groups if g[2]]
    refs = BankRefs(a.bank)
    t0 = time.time()
    for r in tqdm([r for r in ok if not r.kept], desc="filter metrics", unit="run", leave=False):
        filter_metrics(r, refs.of_run(r))
    sections, figs = [], {}
    for i, (proto, rs, cells) in enumerate(groups):
        records, deltas = analyse(cells, refs)
        sections.append({"protocol": proto, **records})
        stem = out.stem if len(groups) == 1 else f"{out.stem}_protocol{i + 1}"
        figs.update(protocol_figures(cells, deltas, rs, refs, stem, proto))
    data = sections[0] if len(sections) == 1 else {"format": 2, "protocols": sections}
    L = [*header_section(argv, roots, runs, refs.describe(), a.title, kept), *included, *report_tables(data),
         *reference_section(refs), *flagged_section(runs), *external_section()]
    L += figures_section(list(figs), out, time.time() - t0)
    text = "\n".join(L)
    if re.search(r"(?<![\w/.`-])(nan|inf)(?![\w/.`-])", text, re.I):
        raise RuntimeError("refusing to write NaN/Inf into the report")
    fig_dir = out.parent / "figures"
    for name, fig in figs.items():
        atomic_write_bytes(fig_dir / name, fig)
    atomic_write_json(out.with_suffix(".json"), {**data, "runs": per_run_rows(runs)})
    atomic_write_bytes(out, text.encode())
    cells_n = sum(len(sec["cells"]) for sec in sections)
    print(f"wrote {out} ({cells_n} cells, {len(ok)} runs, {len(runs) - len(ok)} not counted"
          f"{f', {len(sections)} protocols in separate tables' if len(sections) > 1 else ''}) and "
          f"{len(figs)} figures in {fig_dir}")
    return 0
