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
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file as safetensors_load

from ..errors import UnsafeCheckpoint
from ..io_util import read_json, safe_torch_load
from .protocol import protocol
from .methods import method_of

FINAL_KERNELS = "final_kernels.safetensors"  # conv1 + regularized layers at the end
START_KERNELS = "start_kernels.safetensors"  # the same layers as training starts (after any init)

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
    variant: str = ""                # the settings that distinguish its cell, in words (set by the report)
    extra: dict = field(default_factory=dict)   # the same settings, as values
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

    @property
    def protocol(self) -> dict:
        """What its test accuracy was measured on (``protocol.protocol``): runs of different
        protocols never share a table, a difference or a curve."""
        return protocol(self.cfg)

    @property
    def kept(self) -> bool:
        """Whether it is a row an earlier report kept (``report.kept``), not a run folder."""
        return False

    @property
    def label(self) -> str:
        """Its cell's label: the method, then the settings that vary (``adv1 [width=0.5]``)."""
        return self.method + (f" [{self.variant}]" if self.variant else "")


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
