"""A bank from a pretrained network the user already has (``collect --from-checkpoint``).

Reads a state_dict without unpickling code: ``.safetensors``, or ``.pt`` / ``.pth`` through
``torch.load(weights_only=True)`` (a dict holding ``state_dict`` or ``model`` is opened).
Every 4-D ``*.weight`` tensor is a conv layer named by its module (``layer1.0.conv1``);
``--layers`` selects among them as ``train --reg-layers`` does (default: every conv with
square kernels of 3×3 or more).
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import torch

from . import __version__
from .bank import KernelBank
from .errors import UnsafeCheckpoint, UsageError
from .io_util import safe_torch_load
from .layers import select

PREFIXES = ("module.", "_orig_mod.")   # DDP and torch.compile wrappers


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, by name (wrapper prefixes stripped)."""
    if not path.is_file():
        raise UsageError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        try:
            sd = load_file(str(path))
        except Exception as e:  # safetensors raises its own error types
            raise UnsafeCheckpoint(f"{path}: not a readable safetensors file ({str(e)[:160]})") from None
    else:
        sd = safe_torch_load(path)
        for k in ("state_dict", "model"):
            if isinstance(sd, dict) and isinstance(sd.get(k), dict):
                sd = sd[k]
        if not isinstance(sd, dict):
            raise UsageError(f"{path}: holds a {type(sd).__name__}, not a state_dict")
    out = {}
    for name, t in sd.items():
        if isinstance(t, torch.Tensor):
            for p in PREFIXES:
                name = name[len(p):] if name.startswith(p) else name
            out[name] = t
    return out


def conv_weights(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Module name → conv weight ``[O, I, kh, kw]``: every 4-D floating ``*.weight``."""
    return {n[: -len(".weight")]: t for n, t in sd.items()
            if n.endswith(".weight") and t.dim() == 4 and t.is_floating_point()}


def bank_from_checkpoint(path: str | Path, selector: str = "all",
                         max_kernels: int | None = None) -> KernelBank:
    """A bank of the selected conv layers' kernels, with the file's provenance."""
    path = Path(path)
    convs = conv_weights(load_state_dict(path))
    if not convs:
        raise UsageError(f"{path}: no conv weights (4-D '*.weight' tensors) in it")
    names = select({n: tuple(w.shape[-2:]) for n, w in convs.items()}, selector, where=str(path))
    kept = {n: convs[n].detach().float() for n in names}
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    meta = {"dataset": "unknown (pretrained checkpoint)", "source": f"checkpoint {path.name}",
            "checkpoint_sha256": digest, "architecture": "unknown",
            "filter_rows": json.dumps({n: w.shape[1] for n, w in kept.items()}),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "version": __version__}
    bank = KernelBank({n: w.reshape(-1, w.shape[-2], w.shape[-1]) for n, w in kept.items()}, meta)
    return bank.subsample(max_kernels)
