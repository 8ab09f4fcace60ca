"""Initializing conv layers from a bank (DESIGN.md §8): bank kernels themselves (``bank``),
or draws from a Gaussian fitted to them (``cov``), as 2-D slices or as whole filters.

Whatever is drawn, the layer's weight is then scaled by one factor so that its std equals
the default init's: activations keep their usual scale, only the filters' shapes change.
"""
from __future__ import annotations

import sys
from typing import Mapping, Sequence

import torch
from torch import nn

from .bank import KernelBank
from .layers import conv_layers, select_layers
from .ops import sample_kernels

INITS = ("default", "bank", "cov")
UNITS = ("filter", "slice")


def init_unit(conv: nn.Conv2d, bank: KernelBank, src: Sequence[str], unit: str) -> str:
    """``unit``, or ``slice`` where whole filters do not fit: the bank's filters must have as
    many input channels as the layer's (grouped) weight (said on stderr)."""
    rows, c = bank.rows_of(src), conv.weight.shape[1]
    if unit == "filter" and rows != c:
        sys.stderr.write(f"bank layer {'+'.join(src)} has filters of {rows} channel(s), the layer "
                         f"has {c} inputs: drawing 2-D slices\n")
        return "slice"
    return unit


def _draws(conv: nn.Conv2d, bank: KernelBank, src: Sequence[str], kind: str, unit: str, seed: int,
           shrink: float) -> torch.Tensor:
    w = conv.weight
    n = w.shape[0] if unit == "filter" else w.shape[0] * w.shape[1]
    if kind == "bank":
        return sample_kernels(bank.units(src, unit), n, seed)[0]
    gen = torch.Generator().manual_seed(seed)
    return bank.gaussian(src, unit, shrink).sample(n, gen).float()


def init_from_bank(model: nn.Module, bank: KernelBank, layers: str | Sequence[str] = "all",
                   kind: str = "bank", unit: str = "filter", seed: int = 0, shrink: float = 0.1,
                   bank_map: Mapping[str, Sequence[str]] | None = None) -> dict[str, str]:
    """Replace the weights of ``layers`` (names or a selector) by bank draws (``kind="bank"``)
    or Gaussian draws (``kind="cov"``), filter by filter where the bank's filters fit, else
    slice by slice; returns the unit used per layer. Each layer keeps its weights' std.

    Seeds: layer ``li`` draws with ``seed*1000 + 500 + li`` (bank) or ``+ 700 + li`` (cov).
    """
    if kind not in INITS[1:]:
        raise ValueError(f"kind must be one of {INITS[1:]}, got {kind!r}")
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    if isinstance(layers, str):
        layers = select_layers(model, layers)
    convs, used = conv_layers(model), {}
    for li, name in enumerate(layers):
        conv = convs[name]
        w = conv.weight
        src = bank.source(name, w.shape[-1], bank_map, w.shape[1] if unit == "filter" else None)
        used[name] = init_unit(conv, bank, src, unit)
        s = seed * 1000 + (500 if kind == "bank" else 700) + li
        draws = _draws(conv, bank, src, kind, used[name], s, shrink).to(w.device).reshape(w.shape)
        with torch.no_grad():
            w.copy_(draws * (w.std() / draws.std().clamp_min(1e-12)))
    return used
