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

import hashlib
import json
import math
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from safetensors import safe_open
from tqdm.auto import tqdm

from .bank import PACKAGED, KernelBank, bank_file, bank_id, bank_label, merged_parts
from .cli import Parser, run_main
from .errors import BankError, UnsafeCheckpoint, UsageError
from .filter_metrics import group_halves, judge_auc, low_freq_energy, mmd_rbf
from .io_util import atomic_write_bytes, atomic_write_json, check_out_dir
from .runs import (DEFAULT_METHODS, FINAL_KERNELS, Run, discover, finite, layer_kernels, method_order, precision_of,
                   read_jsonl, weighs_layers)

# settings that, when they differ between runs of one train size, split cells
EXTRA = ("arch", "bank", "width", "amp", "precision", "epochs", "batch_size", "lr", "weight_decay", "d_hidden", "d_norm", "d_loss",
         "d_lr", "lecam", "eval_size", "d_share", "fake_max", "dataset", "image_size", "bank_map", "shrink",
         "layer_weights", "classes", "sources")
# cannot change the classifier of a reference cell (baseline, bankinit: λ = 0, no prior)
D_ONLY = ("d_hidden", "d_norm", "d_loss", "d_lr", "lecam", "d_share", "fake_max", "layer_weights", "sources")
OPTIONAL = ("bank", "layer_weights", "sources")   # None where they cannot matter; such runs do not make them vary
EXTERNAL = [  # (source, setting, labelled images, test accuracy %)
    ("Deep Weight Prior (Atanov et al., ICLR 2019), Bayesian CNN", "CIFAR-10", 50, 23.7),
    ("Deep Weight Prior (Atanov et al., ICLR 2019), Bayesian CNN", "CIFAR-10", 200, 30.3),
    ("Deep Weight Prior (Atanov et al., ICLR 2019), Bayesian CNN", "CIFAR-10", 500, 35.6),
    ("Supervised-only WRN-28-2 (FixMatch paper baselines)", "CIFAR-10", 40, 22.4),
    ("Supervised-only WRN-28-2 (FixMatch paper baselines)", "CIFAR-10", 250, 44.0),
]


# EXTRA settings runs made before they existed had, as those runs read them
EXTRA_DEFAULTS = {"arch": "dwpnet", "d_share": "layer", "dataset": "cifar10", "image_size": 32,
                  "bank_map": None, "shrink": 0.1, "classes": None}


def _setting(r: Run, key: str):
    """A run's value of an EXTRA setting (precision: as trained, see ``precision_of``)."""
    if key == "precision":
        return precision_of(r.cfg)
    if key == "fake_max":   # as resolved for the run ("auto" → a number, or None = all kernels)
        return r.cfg.get("fake_max_used", r.cfg.get("fake_max"))
    if key == "bank":       # by name; None where the classifier never sees the bank
        return r.bank_name if uses_bank(r.cfg) else None
    if key == "sources":         # the source networks of chain init and fine-tuning: a name, a folder or folder/file
        if r.cfg.get("init") not in ("chain", "finetune"):
            return None
        p = Path(str(r.cfg["sources"]))
        return p.name if len(p.parts) == 1 or not p.suffix else f"{p.parent.name}/{p.name}"
    if key == "classes":         # the class-disjoint protocol: its classes, e.g. "5,6,7,8,9"
        v = r.cfg.get(key)
        return ",".join(map(str, v)) if v else "all"
    if key == "layer_weights":   # None where a run weighs one layer, or none
        return r.cfg.get(key, "sum") if weighs_layers(r.cfg, r.final.get("reg_layers")) else None
    return r.cfg.get(key, EXTRA_DEFAULTS.get(key))


def _label(runs: list[Run]) -> None:
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

    _name_banks(runs)
    def values(k: str, rs: list[Run]) -> set:   # a run without a bank does not make banks vary
        return {json.dumps(_setting(r, k)) for r in rs if not (k in OPTIONAL and _setting(r, k) is None)}

    vary = [k for k in EXTRA if any(len(values(k, rs)) > 1 for rs in groups(k).values())]
    for r in runs:
        r.extra = {k: _setting(r, k) for k in vary}
        extra = ", ".join(f"{k}={v}" for k, v in r.extra.items() if not (k in OPTIONAL and v is None))
        r.label = r.method + (f" [{extra}]" if extra else "")


def uses_bank(cfg: dict) -> bool:
    """Whether a run's classifier depends on its bank: the adversarial term, a bank init or
    the Gaussian prior (a λ = 0 run's discriminator never touches the classifier)."""
    return bool(cfg.get("lam")) or cfg.get("init", "default") in ("bank", "cov") or cfg.get("prior", "none") == "gauss"


def _meta(r: Run) -> dict | None:
    """A run's recorded bank metadata (a string map), or None."""
    meta = r.cfg.get("bank_meta")
    return meta if isinstance(meta, dict) and meta else None


def _bank_id(r: Run) -> str:
    """The bank a run trained with, by its metadata (``bank.bank_id``), else its path."""
    meta = _meta(r)
    return bank_id(meta) if meta else str(r.cfg.get("bank"))


def _name_banks(runs: list[Run]) -> None:
    """``r.bank_name``: the bank's short label (``bank.bank_label``), made unique across the
    runs by a short hash where two different banks read alike."""
    ids: dict[str, set] = {}
    for r in runs:
        r.bank_name = bank_label(_meta(r)) if _meta(r) else "?"
        if r.bank_name == "?":
            r.bank_name = Path(str(r.cfg.get("bank"))).stem
        ids.setdefault(r.bank_name, set()).add(_bank_id(r))
    for r in runs:
        if len(ids[r.bank_name]) > 1:
            r.bank_name += "#" + hashlib.sha1(_bank_id(r).encode()).hexdigest()[:6]


def check_cells(cells: dict[tuple, list[Run]]) -> None:
    """A cell's runs must be distinct seeds from one bank: a copied run folder, or a rerun
    into the same sweep with another ``--bank``, would otherwise count as an extra seed."""
    for c, rs in cells.items():
        seen: dict[int, Run] = {}
        for r in rs:
            if r.seed in seen:
                raise UsageError(f"cell n={c[0]} {c[1]} ({c[2]}) holds seed {r.seed} twice: {seen[r.seed].dir} "
                                 f"and {r.dir}; report them from separate folders")
            seen[r.seed] = r
        if len({_bank_id(r) for r in rs}) > 1:
            raise UsageError(f"cell n={c[0]} {c[1]} ({c[2]}) mixes runs with different banks; "
                             f"report them from separate folders")


def baseline_cell(c: tuple, cells: dict[tuple, list[Run]], ref: str = "baseline") -> tuple | None:
    """The ``ref`` cell (a λ = 0 method: baseline, or bankinit) to pair cell ``c`` with: same
    size and the same settings except those that cannot change a λ = 0 run (D settings);
    preferring the same reg layers, then the same D settings."""
    ex = cells[c][0].extra

    def core(e: dict, bank: bool) -> dict:   # a ref cell that never saw its bank pairs with any bank
        return {k: v for k, v in e.items() if k not in D_ONLY and (bank or k != "bank")}

    cands = [k for k in cells if k[0] == c[0] and k[1].split(" [")[0] == ref
             and core(cells[k][0].extra, cells[k][0].extra.get("bank") is not None)
             == core(ex, cells[k][0].extra.get("bank") is not None)]
    return min(cands, key=lambda k: (k[2] != c[2], cells[k][0].extra != ex, k)) if cands else None


def _sweep_info(roots: list[Path], runs: list[Run]) -> tuple[list[str], list[str], float, int]:
    """(commands, devices, total wall seconds, runs with a known time) from logs and timing files."""
    cmds, devs, secs = [], [], {}
    for log in [f for root in roots for f in sorted(root.rglob("sweep_log.jsonl"))]:
        for row in read_jsonl(log):
            if row.get("cmd") and row["cmd"] not in cmds:
                cmds.append(row["cmd"])
            dev = row.get("device_name") or row.get("device")
            if dev and dev not in devs:
                devs.append(dev)
            if finite(row.get("seconds")):
                key = (log.parent / row["run"]).resolve()
                secs[key] = secs.get(key, 0.0) + float(row["seconds"])
    total, known = 0.0, 0
    for r in runs:
        if r.status != "ok":
            continue
        t = r.wall if r.wall is not None else secs.get(r.dir.resolve())
        if t is None:
            times = [m["time"] for m in read_jsonl(r.dir / "metrics.jsonl") if finite(m.get("time"))]
            t = max(times) - min(times) if len(times) > 1 else None
        if t is not None:
            total, known = total + t, known + 1
    if not devs:
        devs = sorted({str(r.cfg.get("device", "?")) for r in runs})
    return cmds, devs, total, known


def metric_keys(layer: str) -> tuple[str, str, str]:
    """Keys of (judge AUC, MMD², low-freq energy) in ``Run.metrics`` and results.json:
    bare for conv1, suffixed for deeper layers (``auc_conv2``, ...)."""
    sfx = "" if layer == "conv1" else f"_{layer}"
    return f"auc{sfx}", f"mmd{sfx}", f"lfe{sfx}"


def judge_rows(layer: str) -> int:
    """Kernels the judge subsamples per set. Deeper layers have 64+ slices per filter, and
    the halves are split by whole filter: 4096 rows keep dozens of filters on each side."""
    return 1000 if layer == "conv1" else 4096


def measured_layers(r: Run) -> list[str]:
    """The layers a run's filter metrics cover: those its final kernels kept (conv1 and the
    regularized or bank-initialized layers), else (older runs) conv1 and its --reg-layers."""
    small = r.dir / FINAL_KERNELS
    if small.exists():
        try:
            with safe_open(str(small), framework="pt") as f:
                return list(f.keys())
        except Exception:  # safetensors raises its own error types; layer_kernels reports it
            pass
    return ["conv1"] + [n for n in r.layers.split(",") if n != "conv1"]


JUDGED_LAYERS = 4   # a run measuring more layers gets judge AUC and MMD² on conv1 only


def filter_metrics(r: Run, refs: "References") -> None:
    """Judge AUC, MMD² and low-freq energy of the run's final kernels, layer by layer
    (``measured_layers``), against the bank kernels that serve each layer (``refs``). A
    judge costs seconds per layer: a run of many layers (a ResNet's 19 convs) is judged on
    conv1 only; every layer gets its low-freq energy (results.json)."""
    layers = measured_layers(r)
    for layer in layers:
        try:
            w = layer_kernels(r.dir, layer, flat=False)
        except (UnsafeCheckpoint, KeyError, TypeError) as e:
            r.metrics.setdefault("note", f"no {layer} filter metrics ({str(e)[:80]})")
            continue
        k = w.reshape(-1, w.shape[-2], w.shape[-1])
        if not torch.isfinite(k).all():
            r.metrics.setdefault("note", f"non-finite {layer} weights")
            continue
        auc, mmd, lfe = metric_keys(layer)
        r.metrics[lfe] = low_freq_energy(k)
        if layer != "conv1" and len(layers) > JUDGED_LAYERS:
            continue
        bank, group = refs.of(layer, k.shape[-1]) or (None, 1)
        if bank is not None and bank.shape[-1] == k.shape[-1] and len(k) >= 4 and len(bank) >= 4:
            r.metrics[auc] = judge_auc(k, bank, seed=r.seed, max_n=judge_rows(layer),
                                       group_learned=w.shape[1], group_bank=group)
            r.metrics[mmd] = mmd_rbf(k, bank, seed=r.seed)


def _bank_filters(kernels: torch.Tensor, rows: int) -> torch.Tensor:
    """Reference kernels as whole filters ``[N, rows, k, k]`` (RGB in pictures when rows is 3)."""
    k = kernels.shape[-1]
    return kernels[: len(kernels) // rows * rows].reshape(-1, rows, k, k)


class References(dict):
    """layer → (reference kernels ``[N, k, k]``, rows per filter), filled in the order layers
    are measured: the bank layers that serve the layer (``KernelBank.source``), pooled as 2-D
    slices. A layer name met again with another kernel size has no reference."""

    def __init__(self, bank: KernelBank | None = None, where: str = "") -> None:
        super().__init__()
        self.bank, self.where, self.sources = bank, where, {}

    def of(self, layer: str, k: int) -> tuple[torch.Tensor, int] | None:
        if layer not in self.sources and self.bank is not None:
            try:
                src = self.bank.source(layer, k)
            except BankError:
                src = None
            self.sources[layer] = src
            if src is not None:
                self[layer] = (self.bank.units(src, "slice"), self.bank.rows_of(src))
        ref = self.get(layer)
        return ref if ref is not None and ref[0].shape[-1] == k else None

    def describe(self) -> str:
        if not self:
            return "none found (judge AUC and MMD omitted)"
        def pool(src: tuple) -> str:
            return "+".join(src) if len(src) <= 3 else f"{len(src)} layers pooled ({src[0]}, …)"
        parts = [f"layer {n}, {len(t)} kernels" if self.sources[n] == (n,) else
                 f"layer {n}: bank {pool(self.sources[n])}, {len(t)} kernels" for n, (t, _) in self.items()]
        return f"`{self.where}` ({'; '.join(parts)})"


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
    p.add_argument("--bank", default=None, help="reference kernels for the filter metrics of every run (.safetensors, "
                                                "DWP .npy or a packaged bank's name; default: each run's own bank)")
    return p


def _packaged_candidates() -> dict[str, tuple[KernelBank, str]]:
    """bank id → (bank, name) for every packaged bank, alone and as ``--bank auto`` merges it
    for non-DWPNet models (each 7x7/5x5 bank + the 3x3 one; older runs used the first bank)."""
    banks = {n: KernelBank.load(f) for n, f in PACKAGED.items() if f.is_file()}
    out = {bank_id(b.meta): (b, f"{n} (packaged)") for n, b in banks.items()}
    for n in [n for n in banks if n.startswith("dwpnet")]:
        if "resnet20" in banks:
            m = KernelBank.merge([banks[n], banks["resnet20"]])
            out[bank_id(m.meta)] = (m, f"{n} + resnet20 (packaged)")
    return out


class BankRefs:
    """Reference kernels per bank: each run is measured against the bank it trained with,
    found by its recorded metadata among the packaged banks, else at its recorded path
    (if that file still holds the same bank); ``--bank`` fixes one for every run."""

    def __init__(self, path: str | None) -> None:
        self.fixed = References(KernelBank.load(bank_file(path)), path) if path else None
        self.by_id: dict[str, References] = {}
        self._packaged: dict | None = None

    def of_run(self, r: Run) -> References:
        if self.fixed is not None:
            return self.fixed
        key = _bank_id(r)
        if key not in self.by_id:
            self.by_id[key] = self._find(r)
        return self.by_id[key]

    def _find(self, r: Run) -> References:
        meta = _meta(r)
        if meta:
            if self._packaged is None:
                self._packaged = _packaged_candidates()
            if bank_id(meta) in self._packaged:
                bank, name = self._packaged[bank_id(meta)]
                return References(bank, name)
        c = str(r.cfg.get("bank"))
        f = bank_file(c)
        if c.lower() not in ("none", "auto") and f.is_file():
            try:
                bank = KernelBank.load(f)
            except BankError:
                return References()
            if not meta or bank_id(bank.meta) == bank_id(meta):
                return References(bank, str(f))
        return References()

    def all(self) -> list[References]:
        """The distinct references in use, each once, those with kernels only."""
        seen = [self.fixed] if self.fixed is not None else list(self.by_id.values())
        return [x for i, x in enumerate(seen) if x and all(x is not y for y in seen[:i])]

    def describe(self) -> str:
        return "; ".join(x.describe() for x in self.all()) or "none found (judge AUC and MMD omitted)"


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


def _cells(runs: list[Run]) -> dict[tuple, list[Run]]:
    """(train size, label, reg layers) → its finished runs; labels are set here."""
    _label(runs)
    cells: dict[tuple, list[Run]] = {}
    for r in runs:
        if r.status == "ok":
            cells.setdefault((r.size, r.label, r.layers), []).append(r)
    check_cells(cells)
    return cells


def header_section(argv: Sequence[str], roots: list[Path], runs: list[Run], bank_desc: str) -> list[str]:
    """Title, the commands that made the runs, device, total training time, reference bank."""
    cmds, devs, wall, known = _sweep_info(roots, runs)
    n_ok = sum(r.status == "ok" for r in runs)
    return ["# Results: adversarial filter regularization", "",
            f"Generated {time.strftime('%Y-%m-%d %H:%M')} by "
            f"`python -m fastreg.report {shlex.join(argv)}` "
            f"from {len(runs)} run folders under {', '.join(f'`{r}`' for r in roots)}.", "", "**Commands**", "", "```bash",
            *(cmds or ["# (no sweep_log.jsonl found: runs were not started by fastreg.sweep)"]), "```", "",
            f"**Device**: {', '.join(devs)}  ", f"**Total training wall time**: {wall / 3600:.2f} h "
            f"({wall:.0f} s, summed over the {known} of {n_ok} finished runs with a recorded time)  ",
            f"**Reference kernels for filter metrics**: {bank_desc}", ""]


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
        L.append(f"| {c[0]} | {c[1]} | {c[2]} | {len(rs)} | {','.join(str(r.seed) for r in rs)} | "
                 f"{_ms([r.final['test_acc'] for r in rs], '.2f', 100)} | {_metric_cells(rs)} |")
    return L


def _paired_cells(ref: list[Run], runs: list[Run]) -> tuple[tuple, str] | None:
    """Test accuracy of ``runs`` − ``ref`` (pp), paired by seed and data seed: ((mean, CI low,
    CI high), the table cells ``seeds (n) | Δ | CI | p | test``); None without a shared seed."""
    key = lambda r: (r.seed, r.cfg.get("data_seed", r.seed))  # noqa: E731
    base = {key(r): r.final["test_acc"] for r in ref}
    pairs = sorted((r.seed, 100 * (r.final["test_acc"] - base[key(r)])) for r in runs if key(r) in base)
    if not pairs:
        return None
    mean, lo, hi, p, how = paired(np.array([d for _, d in pairs]))
    ci = f"[{_f(lo, '+.2f')}, {_f(hi, '+.2f')}]" if lo is not None else "—"
    return (mean, lo, hi), (f"{','.join(str(s) for s, _ in pairs)} ({len(pairs)}) | {_f(mean, '+.2f')} | {ci} | "
                            f"{_f(p, '.3g')} | {how}")


def paired_section(cells: dict[tuple, list[Run]], keys: list[tuple], ref: str = "baseline"
                   ) -> tuple[list[str], dict[tuple, tuple[float, float | None, float | None]]]:
    """Paired differences to each cell's ``ref`` cell (the baseline, or bank init); also
    returns them (mean, CI) for the figures."""
    name = {"baseline": "the baseline", "bankinit": "bank init (2-D slices)"}.get(ref, ref)
    L = ["", f"## Paired difference to {name}", "",
         f"Δ = method − {ref} test accuracy (percentage points), same train size, same seed and "
         f"data seed, paired t over seeds. The {ref if ref == 'baseline' else ref + ' cell'} has the same "
         "settings, reg layers when run "
         "(a λ = 0 run does not depend on them), and discriminator settings likewise.", "",
         "| train size | method | reg layers | paired seeds (n) | Δ acc (pp) | 95% CI | p | test |",
         "|---:|---|---|---|---:|---|---:|---|"]
    deltas: dict[tuple, tuple[float, float | None, float | None]] = {}
    for c in keys:
        if c[1].split(" [")[0] in ("baseline", ref):
            continue
        bc = baseline_cell(c, cells, ref)
        if bc is None:
            continue
        d = _paired_cells(cells[bc], cells[c])
        if d is None:
            continue
        deltas[c] = d[0]
        own = bc[1] == c[1].replace(c[1].split(" [")[0], ref, 1) and bc[2] == c[2]
        vs = "" if own else f" (vs {bc[1]}{'' if bc[2] == c[2] else ', ' + bc[2]})"
        L.append(f"| {c[0]} | {c[1]} | {c[2]}{vs} | {d[1]} |")
    return L, deltas


def _created(r: Run) -> str:
    """When a run's bank was made (the newest part of a merged bank): orders banks old → new."""
    meta = _meta(r) or {}
    parts = merged_parts(meta)
    return max((str(m.get("created", "")) for m in (parts if parts is not None else [meta])), default="")


def bank_section(cells: dict[tuple, list[Run]], keys: list[tuple]) -> list[str]:
    """The same method (same size, layers and other settings) trained with two banks:
    Δ = newer bank − older bank, paired by seed and data seed."""
    groups: dict[tuple, list[tuple]] = {}
    for c in keys:
        ex = cells[c][0].extra
        if ex.get("bank") is not None:
            rest = json.dumps({k: v for k, v in ex.items() if k != "bank"}, sort_keys=True, default=str)
            groups.setdefault((c[1].split(" [")[0], c[2], rest, c[0]), []).append(c)
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
        L += [f"| {c[0]} | {c[1]} | {c[2]} | {len(cells[c])} | {_metric_cells(cells[c], layer)} |" for c in lk]
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
    keys = sorted(cells, key=lambda c: (c[0], method_order(c[1]), c[2]))
    paired_lines, deltas = paired_section(cells, keys)
    if any(k[1].split(" [")[0] not in DEFAULT_METHODS for k in keys):   # new priors: vs bank init too
        vs_init = paired_section(cells, keys, "bankinit")[0]
        paired_lines += vs_init if vs_init[-1].startswith("| ") and not vs_init[-1].startswith("|---") else []
    L = [*header_section(argv, roots, runs, refs.describe()), *included, *accuracy_section(cells, keys), *paired_lines,
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
    atomic_write_json(out.with_suffix(".json"), {"runs": per_run_rows(runs)})
    atomic_write_bytes(out, text.encode())
    print(f"wrote {out} ({len(keys)} cells, {len(ok)} runs, {len(runs) - len(ok)} not counted) and "
          f"{len(figs)} figures in {fig_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
