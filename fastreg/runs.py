"""Reading training-run folders: what ``train`` leaves behind, as the report and sweep see it.

A run folder holds ``config.json`` (settings), ``metrics.jsonl`` (one row per evaluation),
``final.json`` (marks it finished), ``timing.json``, ``start_kernels.safetensors`` and
``final_kernels.safetensors`` (conv1 and the regularized layers at the start and the end),
``filters_LAYER.png`` and, until the run finishes (or kept with ``--keep-checkpoint``),
``checkpoint.pt``. A run that went non-finite under the sweep gets ``failed.json``.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file as safetensors_load

from .errors import UnsafeCheckpoint
from .io_util import read_json, safe_torch_load

FINAL_KERNELS = "final_kernels.safetensors"  # conv1 + regularized layers at the end
START_KERNELS = "start_kernels.safetensors"  # the same layers as training starts (after any init)

# A run's train settings that make its method (all others default); runs written before a
# setting existed read as its old behaviour (2-D slices, no prior, constant λ).
METHOD_KEYS = {"lam": 0.0, "init": "default", "init_unit": "slice", "d_unit": "slice",
               "prior": "none", "prior_weight": 1.0, "prior_unit": "filter", "lambda_schedule": "constant",
               "chain_norms": False}
GAUSS_WEIGHT = 1e4   # --prior-weight of the sweep's gauss methods: the best of 0.1 ... 1e5 in a pilot (n = 100, seeds 0-2)
L2SP_WEIGHT = 0.01   # --prior-weight of the sweep's l2sp methods: α of Li et al. (2018)


def _m(**kw) -> dict:
    return {**METHOD_KEYS, **kw}


# The sweep's methods: name → settings; names are fixed (the report and the docs use them),
# and method_of(settings) gives the name back. The first six are the original comparison.
METHODS: dict[str, dict] = {
    "baseline": _m(), "adv0.1": _m(lam=0.1), "adv1": _m(lam=1.0), "adv10": _m(lam=10.0),
    "bankinit": _m(init="bank"), "bankinit+adv1": _m(init="bank", lam=1.0),
    "filterinit": _m(init="bank", init_unit="filter"),
    "covinit": _m(init="cov", init_unit="filter"), "covinit-slice": _m(init="cov"),
    "gauss": _m(prior="gauss", prior_weight=GAUSS_WEIGHT),
    "advf1": _m(lam=1.0, d_unit="filter"),
    "filterinit+adv1": _m(init="bank", init_unit="filter", lam=1.0),
    "filterinit+advf1": _m(init="bank", init_unit="filter", lam=1.0, d_unit="filter"),
    "filterinit+advf1-decay": _m(init="bank", init_unit="filter", lam=1.0, d_unit="filter",
                                 lambda_schedule="linear"),
    "covinit+advf1": _m(init="cov", init_unit="filter", lam=1.0, d_unit="filter"),
    "filterinit+gauss": _m(init="bank", init_unit="filter", prior="gauss", prior_weight=GAUSS_WEIGHT),
    # priors for a whole network (DESIGN.md §12): one source network's layers, and the transfer baselines
    "chaininit": _m(init="chain"),
    "chaininit-norms": _m(init="chain", chain_norms=True),
    "chaininit+advf1": _m(init="chain", lam=1.0, d_unit="filter"),
    "chaininit+gauss": _m(init="chain", prior="gauss", prior_weight=GAUSS_WEIGHT),
    "chaininit+l2sp": _m(init="chain", prior="l2sp", prior_weight=L2SP_WEIGHT),
    "finetune": _m(init="finetune"),
}
DEFAULT_METHODS = ("baseline", "adv0.1", "adv1", "adv10", "bankinit", "bankinit+adv1")


def describe(settings: dict) -> str:
    """What a method does, in words, from its settings (``sweep --help`` lists these)."""
    c = {**METHOD_KEYS, **settings}
    parts = []
    if c["init"] == "chain":
        parts.append("start from one source network's layers, channels coherent"
                     + (", with their norms" if c["chain_norms"] else ""))
    elif c["init"] == "finetune":
        parts.append("fine-tune a source network (every layer but the head)")
    elif c["init"] != "default":
        what = "bank kernels" if c["init"] == "bank" else "draws from a Gaussian fitted to the bank"
        parts.append(f"start from {what} ({'whole filters' if c['init_unit'] == 'filter' else '2-D kernels'})")
    if c["prior"] == "l2sp":
        parts.append(f"L2-SP toward the start, weight {float(c['prior_weight']):g}")
    elif c["prior"] != "none":
        parts.append(f"Gaussian penalty, weight {float(c['prior_weight']):g} "
                     f"({'whole filters' if c['prior_unit'] == 'filter' else '2-D kernels'})")
    if float(c["lam"]) > 0:
        parts.append(f"adversarial term λ = {float(c['lam']):g}, D on "
                     f"{'whole filters' if c['d_unit'] == 'filter' else '2-D kernels'}"
                     + (", λ decaying to 0" if c["lambda_schedule"] == "linear" else ""))
    return "; ".join(parts) or "the model's own random init, no prior"


def method_of(cfg: dict) -> str:
    """The method name of a run's settings (inverse of METHODS): its init, prior and
    adversarial parts joined by '+', 'baseline' when it has none."""
    c = {k: cfg.get(k, v) for k, v in METHOD_KEYS.items()}
    parts = []
    if c["init"] == "chain":
        parts.append("chaininit" + ("-norms" if c["chain_norms"] else ""))
    elif c["init"] == "finetune":
        parts.append("finetune")
    elif c["init"] != "default":
        parts.append({("bank", "slice"): "bankinit", ("bank", "filter"): "filterinit",
                      ("cov", "filter"): "covinit", ("cov", "slice"): "covinit-slice"}
                     .get((c["init"], c["init_unit"]), f"{c['init']}init-{c['init_unit']}"))
    if c["prior"] == "l2sp":
        w = float(c["prior_weight"])
        parts.append("l2sp" + ("" if w == L2SP_WEIGHT else f"{w:g}"))
    elif c["prior"] != "none":
        w = float(c["prior_weight"])
        parts.append(c["prior"] + ("" if w == GAUSS_WEIGHT else f"{w:g}")
                     + ("" if c["prior_unit"] == "filter" else "-slice"))
    lam = float(c["lam"])
    if lam > 0:
        parts.append(("advf" if c["d_unit"] == "filter" else "adv") + f"{lam:g}"
                     + ("-decay" if c["lambda_schedule"] == "linear" else ""))
    name = "+".join(parts) or "baseline"
    bank = cfg.get("bank")
    return name + (" (no D)" if bank is not None and str(bank).lower() == "none" else "")


def method_order(label: str) -> tuple:
    """Sort key of a cell label: the METHODS order first, then the label."""
    base = label.split(" [")[0]
    return (list(METHODS).index(base) if base in METHODS else len(METHODS), label)


def weighs_layers(cfg: dict, layers: list | None = None) -> bool:
    """Whether ``layer_weights`` (how λ and the prior weight spread over layers) can change a
    run: a weighted term (λ > 0 or a prior) on several layers: ``layers`` as the run resolved
    them (its final.json), else as its selector may name them (a plain layer name is one)."""
    if not (cfg.get("lam") or cfg.get("prior", "none") != "none"):
        return False
    if layers is not None:
        return len(layers) > 1
    sel = str(cfg.get("reg_layers", "conv1"))
    return "," in sel or any(c in sel for c in "*?[") or sel == "all" or re.fullmatch(r"k\d+", sel) is not None


def precision_of(cfg: dict) -> str:
    """The precision a run trained in: recorded in its config.json, else (runs made before it
    was recorded, when ``--amp`` meant bf16 autocast on every device) derived from ``amp``."""
    return str(cfg.get("precision") or ("bf16" if cfg.get("amp") else "fp32"))


def finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def read_jsonl(p: Path) -> list[dict]:
    """Rows of a JSON-lines file; [] when it is missing or unreadable."""
    try:
        return [json.loads(l) for l in p.read_text().splitlines() if l.strip()] if p.exists() else []
    except (OSError, ValueError):
        return []


@dataclass
class Run:
    dir: Path
    cfg: dict
    status: str                      # ok | failed | incomplete
    reason: str = ""
    final: dict = field(default_factory=dict)
    wall: float | None = None
    label: str = ""
    extra: dict = field(default_factory=dict)   # the settings that distinguish its cell
    bank_name: str = ""                          # its bank's short label (set by the report)
    metrics: dict = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(self.cfg["train_size"])

    @property
    def seed(self) -> int:
        return int(self.cfg["seed"])

    @property
    def layers(self) -> str:
        return str(self.cfg.get("reg_layers", "conv1"))

    @property
    def method(self) -> str:
        return method_of(self.cfg)


def discover(root: Path) -> list[Run]:
    """Every train run under ``root`` (a folder with a train config.json), with its status."""
    runs = []
    for c in sorted(root.rglob("config.json")):
        try:
            cfg = read_json(c)
        except (OSError, ValueError):
            continue
        if not isinstance(cfg, dict) or "train_size" not in cfg or "lam" not in cfg:
            continue
        d = c.parent
        r = Run(d, cfg, "incomplete", "no final.json (still running, interrupted or crashed)")
        if (d / "final.json").exists():    # a finished run counts, as in the sweep, even if an
            try:                           # earlier attempt left a failed.json
                r.final = read_json(d / "final.json")
                ok = finite(r.final.get("test_acc"))
            except (OSError, ValueError):
                ok = False
            r.status, r.reason = ("ok", "") if ok else ("failed", "final.json unreadable or non-finite")
        elif (d / "failed.json").exists():
            r.status, r.reason = "failed", "non-finite training (failed.json)"
        if (d / "timing.json").exists():
            try:
                r.wall = float(read_json(d / "timing.json")["wall_time_s"])
            except (OSError, ValueError, KeyError, TypeError):
                pass
        runs.append(r)
    return runs


def run_state(d: Path) -> str:
    """done (final.json) | failed (failed.json) | interrupted (a checkpoint) | new."""
    if (d / "final.json").exists():
        return "done"
    if (d / "failed.json").exists():
        return "failed"
    return "interrupted" if (d / "checkpoint.pt").exists() else "new"


def layer_kernels(d: Path, layer: str = "conv1", flat: bool = True) -> torch.Tensor:
    """Final kernels of one conv layer, ``[O*I, k, k]`` (or the weight ``[O, I, k, k]``), from
    a run's ``final_kernels.safetensors``, else its checkpoint (weights-only load)."""
    small = d / FINAL_KERNELS
    if small.exists():
        try:
            kept = safetensors_load(small)
        except Exception as e:  # safetensors raises its own error types
            raise UnsafeCheckpoint(f"{small}: unreadable ({e})") from None
        w = kept[layer].float()
    else:
        w = safe_torch_load(d / "checkpoint.pt")["model"][f"{layer}.weight"].float()
    return w.reshape(-1, w.shape[-2], w.shape[-1]) if flat else w
