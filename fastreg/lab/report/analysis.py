"""The report's analysis: runs → cells (train size × method label × reg layers), labelled by
the settings that vary between runs of a size, each paired seed by seed with its reference
cell (the baseline, or bank init), and the records ``results.json`` keeps of them."""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from ..inits import needs
from ..methods import SEED_METHODS, method_order
from ..priors import adversarial, prior_needs
from ..banks import bank_label, merged_parts, recorded_meta, run_bank_id, run_bank_recipe
from ...errors import UsageError
from ..runs import Run, finite, precision_of
from ..settings import upgrade, weighs_layers

class Cell(NamedTuple):
    """One cell of a report: its runs share the train size, the method, the variant (the
    settings that vary between runs of a size, in words: ``bank=dwpnet-24ep``) and the reg
    layers. The label is rendered from the method and the variant, never parsed back."""
    size: int
    method: str
    variant: str
    layers: str

    @property
    def label(self) -> str:
        return self.method + (f" [{self.variant}]" if self.variant else "")


# settings that, when they differ between runs of one train size, split cells
EXTRA = ("arch", "bank", "width", "amp", "precision", "epochs", "batch_size", "lr", "weight_decay", "d_hidden", "d_norm", "d_loss",
         "d_lr", "lecam", "eval_size", "d_share", "fake_max", "dataset", "image_size", "bank_map", "shrink",
         "layer_weights", "classes", "sources", "loop")
# cannot change the classifier of a reference cell (baseline, bankinit: λ = 0, no prior)
D_ONLY = ("d_hidden", "d_norm", "d_loss", "d_lr", "lecam", "d_share", "fake_max", "layer_weights", "sources")
OPTIONAL = ("bank", "layer_weights", "sources", "fake_max")   # None where they cannot matter; such runs do not make them vary
def _setting(r: Run, key: str):
    """A run's value of an EXTRA setting (precision: as trained, see ``precision_of``)."""
    if key == "precision":
        return precision_of(r.cfg)
    if key == "fake_max":   # as resolved for the run ("auto" → a number, or all kernels); None at λ = 0 (D only judges)
        v = r.cfg.get("fake_max_used", r.cfg.get("fake_max"))
        return ("all" if v is None else v) if adversarial(r.cfg) else None
    if key == "bank":       # by name; None where the classifier never sees the bank
        return r.bank_name if uses_bank(r.cfg) else None
    if key == "sources":         # the source networks of chain init and fine-tuning: a name, a folder or folder/file
        if needs(r.cfg.get("init")) != "sources":
            return None
        p = Path(str(r.cfg["sources"]))
        return p.name if len(p.parts) == 1 or not p.suffix else f"{p.parent.name}/{p.name}"
    if key == "classes":         # the class-disjoint protocol: its classes, e.g. "5,6,7,8,9"
        v = r.cfg.get(key)
        return ",".join(map(str, v)) if v else "all"
    if key == "layer_weights":   # None where a run weighs one layer, or none
        return upgrade(r.cfg)[key] if weighs_layers(r.cfg, r.final.get("reg_layers")) else None
    return upgrade(r.cfg).get(key)


def label_runs(runs: list[Run]) -> None:
    """Cell label = method, plus any EXTRA setting that differs between runs of one size,
    shown for every size so a series keeps one label across sizes (settings that only
    change with the size, like the per-size epochs, stay out). Runs of different precision
    therefore never share a cell unlabelled; precision is shown where ``amp`` alone does not
    explain it (the same ``--amp`` ran in bf16 on one machine and in fp32 on another)."""
    def groups(key: str) -> dict:
        g: dict = {}
        for r in runs:
            g.setdefault((r.size, r.cfg.get("amp")) if key == "precision" else r.size, []).append(r)
        return g

    kept = [r for r in runs if r.kept]            # rows of an earlier report: labelled already
    runs = [r for r in runs if not r.kept]
    _name_banks(runs)
    def values(k: str, rs: list[Run]) -> set:   # a run without a bank does not make banks vary
        return {json.dumps(_setting(r, k)) for r in rs if not (k in OPTIONAL and _setting(r, k) is None)}

    vary = [k for k in EXTRA if any(len(values(k, rs)) > 1 for rs in groups(k).values())]
    for r in runs:
        r.extra = {k: _setting(r, k) for k in vary}
        r.variant = ", ".join(f"{k}={v}" for k, v in r.extra.items() if not (k in OPTIONAL and v is None))
    by = sorted({k for r in kept for k in r.extra})
    if kept and runs and by != sorted(vary):      # one label would name two different cells
        raise UsageError(f"the kept rows are labelled by {', '.join(by) or 'no setting'}, the run folders by "
                         f"{', '.join(vary) or 'no setting'}; report them apart")


def uses_bank(cfg: dict) -> bool:
    """Whether a run's classifier depends on its bank: the adversarial term, an init drawn from
    it or from a fit to it (bank, covariance, VAE), or a prior fitted to it (Gaussian, VAE); a
    λ = 0 run's discriminator never touches the classifier."""
    return adversarial(cfg) or needs(cfg.get("init", "default")) == "bank" \
        or prior_needs(cfg.get("prior", "none")) == "bank"


def _name_banks(runs: list[Run]) -> None:
    """``r.bank_name``: the bank's short label (``bank.bank_label``), made unique across the
    runs by a short hash where two different banks read alike."""
    ids: dict[str, set] = {}
    for r in runs:
        r.bank_name = bank_label(recorded_meta(r.cfg)) if recorded_meta(r.cfg) else "?"
        if r.bank_name == "?":
            r.bank_name = Path(str(r.cfg.get("bank"))).stem
        ids.setdefault(r.bank_name, set()).add(run_bank_id(r.cfg))
    for r in runs:
        if len(ids[r.bank_name]) > 1:
            r.bank_name += "#" + hashlib.sha1(run_bank_id(r.cfg).encode()).hexdigest()[:6]


def _bank_ids(rs: list[Run]) -> set[str]:
    """The banks of a cell's runs; beside kept rows, by recipe (``run_bank_recipe``: a bank rebuilt
    by the same command is the same bank), where a row recorded one."""
    if not any(r.kept for r in rs):
        return {run_bank_id(r.cfg) for r in rs}
    return {b for r in rs if (b := r.bank_id if r.kept else run_bank_recipe(r.cfg)) is not None}


def check_cells(cells: dict[tuple, list[Run]]) -> None:
    """A cell's runs must be distinct seeds from one bank: a copied run folder, or a rerun
    into the same sweep with another ``--bank``, would otherwise count as an extra seed. A kept
    row (``kept``) that did not record its bank is trusted to its label."""
    for c, rs in cells.items():
        seen: dict[int, Run] = {}
        for r in rs:
            if r.seed in seen:
                raise UsageError(f"cell n={c.size} {c.label} ({c.layers}) holds seed {r.seed} twice: {seen[r.seed].dir} "
                                 f"and {r.dir}; report them from separate folders")
            seen[r.seed] = r
        if len(_bank_ids(rs)) > 1:
            raise UsageError(f"cell n={c.size} {c.label} ({c.layers}) mixes runs with different banks; "
                             f"report them from separate folders")


def baseline_cell(c: tuple, cells: dict[tuple, list[Run]], ref: str = "baseline") -> tuple | None:
    """The ``ref`` cell (a λ = 0 method: baseline, or bankinit) to pair cell ``c`` with: same
    size and the same settings except those that cannot change a λ = 0 run (D settings);
    preferring the same reg layers, then the same D settings, then a cell of the same sweep
    folder (of several chains from other sources, the one run beside ``c``)."""
    ex = cells[c][0].extra

    def core(e: dict, bank: bool) -> dict:   # a ref cell that never saw its bank pairs with any bank
        return {k: v for k, v in e.items() if k not in D_ONLY and (bank or k != "bank")}

    cands = [k for k in cells if k.size == c.size and k.method == ref
             and core(cells[k][0].extra, cells[k][0].extra.get("bank") is not None)
             == core(ex, cells[k][0].extra.get("bank") is not None)]
    sweep = {r.dir.parent.parent.parent for r in cells[c]}      # SWEEP/nSIZE/METHOD/sSEED
    return min(cands, key=lambda k: (k.layers != c.layers, cells[k][0].extra != ex,
                                     not sweep & {r.dir.parent.parent.parent for r in cells[k]}, k)) if cands else None


def paired(d: np.ndarray) -> tuple[float, float | None, float | None, float | None, str]:
    """Mean paired difference, paired-t 95% CI and two-sided p (no CI from one pair).

    Differences equal up to float noise (sd ≤ 1e-9 of their scale) have no t statistic;
    they are reported as such rather than with an absurd p."""
    from scipy import stats
    d = np.asarray(d, np.float64)
    n, m = len(d), float(np.mean(d))
    if n < 2:
        return m, None, None, None, "—"
    sd = float(np.std(d, ddof=1))
    if sd <= 1e-9 * max(1.0, float(np.abs(d).max())):
        return m, m, m, None, "all differences equal"
    h = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return m, m - h, m + h, float(stats.ttest_1samp(d, 0.0).pvalue), "paired t"


def make_cells(runs: list[Run]) -> dict[tuple, list[Run]]:
    """(train size, method, variant, reg layers) → its finished runs; variants are set here."""
    label_runs(runs)
    cells: dict[tuple, list[Run]] = {}
    for r in runs:
        if r.status == "ok":
            cells.setdefault(Cell(r.size, r.method, r.variant, r.layers), []).append(r)
    check_cells(cells)
    return cells


def paired_cells(ref: list[Run], runs: list[Run]) -> dict | None:
    """Test accuracy of ``runs`` − ``ref`` (pp), paired by seed and data seed: {"seeds", "mean",
    "lo", "hi", "p", "test"} (CI bounds None from one pair); None without a shared seed."""
    key = lambda r: (r.seed, r.cfg.get("data_seed", r.seed))  # noqa: E731
    base = {key(r): r.final["test_acc"] for r in ref}
    pairs = sorted((r.seed, 100 * (r.final["test_acc"] - base[key(r)])) for r in runs if key(r) in base)
    if not pairs:
        return None
    mean, lo, hi, p, how = paired(np.array([d for _, d in pairs]))
    return {"seeds": [s for s, _ in pairs], "mean": mean, "lo": lo, "hi": hi, "p": p, "test": how}


def bank_created(r: Run) -> str:
    """When a run's bank was made (the newest part of a merged bank): orders banks old → new."""
    meta = recorded_meta(r.cfg) or {}
    parts = merged_parts(meta)
    return max((str(m.get("created", "")) for m in (parts if parts is not None else [meta])), default="")


def cell_records(cells: dict[tuple, list[Run]], keys: list[tuple], refs: Sequence[str] = ("baseline",)) -> list[dict]:
    """results.json's cells: each cell's runs aggregated (test accuracy mean and std over seeds,
    filter metrics' means) and its paired difference to each reference cell it has."""
    out = []
    for c in keys:
        rs = sorted(cells[c], key=lambda r: r.seed)
        acc = [100 * r.final["test_acc"] for r in rs]
        rec = {"train_size": c.size, "label": c.label, "method": c.method, "variant": c.variant, "reg_layers": c.layers,
               "extra": rs[0].extra, "seeds": [r.seed for r in rs], "acc_mean": float(np.mean(acc)),
               "acc_std": float(np.std(acc, ddof=1)) if len(acc) > 1 else None,
               "metrics": {k: float(np.mean(v)) for k in sorted({k for r in rs for k in r.metrics})
                           if (v := [r.metrics[k] for r in rs if finite(r.metrics.get(k))])},
               "metrics_std": {k: float(np.std(v, ddof=1)) for k in sorted({k for r in rs for k in r.metrics})
                               if len(v := [r.metrics[k] for r in rs if finite(r.metrics.get(k))]) > 1},
               "paired": {}}
        for ref in refs:
            bc = baseline_cell(c, cells, ref) if c.method not in ("baseline", ref) else None
            d = paired_cells(cells[bc], cells[c]) if bc is not None else None
            if d is not None:
                rec["paired"][ref] = {"vs": bc.label, "vs_variant": bc.variant, "vs_layers": bc.layers, **d}
        out.append(rec)
    return out


def comparison_refs(keys: list[tuple]) -> list[str]:
    """Reference cells beside the baseline: bank init once new priors are in the runs (as
    before), and whole-filter init, chain init and fine-tuning wherever they were run, so a
    whole-network grid says where each prior stands against the others."""
    methods = {k.method for k in keys}
    refs = ["bankinit"] if methods - set(SEED_METHODS) else []
    return refs + [m for m in ("filterinit", "chaininit", "finetune") if m in methods and len(methods) > 2]


def bank_pairs(cells: dict[tuple, list[Run]], keys: list[tuple], created=bank_created) -> list[dict]:
    """The same method (same size, layers and other settings) trained with two banks, each newer
    bank paired seed by seed with the oldest (``created``: a run → a sortable bank age):
    {"train_size", "method", "reg_layers", "newer", "older", **paired_cells}."""
    groups: dict[tuple, list[tuple]] = {}
    for c in keys:
        ex = cells[c][0].extra
        if ex.get("bank") is not None:
            rest = json.dumps({k: v for k, v in ex.items() if k != "bank"}, sort_keys=True, default=str)
            groups.setdefault((c.method, c.layers, rest, c.size), []).append(c)
    out = []
    for (m, layers, _, size), cs in groups.items():
        if len(cs) < 2:
            continue
        cs = sorted(cs, key=lambda c: (created(cells[c][0]), c))
        for new in cs[1:]:
            d = paired_cells(cells[cs[0]], cells[new])
            if d is not None:
                out.append({"train_size": size, "method": m, "reg_layers": layers, "newer": cells[new][0].extra["bank"],
                            "older": cells[cs[0]][0].extra["bank"], **d})
    return sorted(out, key=lambda p: (method_order(p["method"]), p["train_size"]))


def report_records(cells: dict[tuple, list[Run]], keys: list[tuple], refs: Sequence[str], layers: list[dict],
                   created=bank_created) -> dict:
    """What ``results.json`` keeps of a report's analysis, and all its tables are rendered from
    (``fastreg.lab.report.tables``): the cells, the references they are paired with (of ``refs``, the
    baseline and those some cell pairs with), the same method across banks, and the deeper layers measured
    (``{"layer", "judge_rows"}``)."""
    recs = cell_records(cells, keys, refs)
    refs = [r for r in refs if r == "baseline" or any(r in c["paired"] for c in recs)]
    return {"format": 2, "refs": refs, "cells": recs,
            "bank_pairs": bank_pairs(cells, keys, created), "layers": layers}
