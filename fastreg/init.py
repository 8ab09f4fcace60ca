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

from .bank import Draw, KernelBank, fallback_note
from .errors import UsageError
from .layers import conv_layers, select_layers
from .ops import sample_kernels

UNITS = ("filter", "slice")


def _draws(conv: nn.Conv2d, bank: KernelBank, draw: Draw, kind: str, seed: int, shrink: float,
           vae=None) -> torch.Tensor:
    w = conv.weight
    n = w.shape[0] if draw.unit == "filter" else w.shape[0] * w.shape[1]
    if kind == "bank":
        return sample_kernels(bank.units(draw.src, draw.bank_unit), n, seed)[0]
    gen = torch.Generator().manual_seed(seed)
    if kind == "vae":      # the decoder's means: its per-number noise is what the code leaves unexplained
        return vae.sample(n, gen, mean=True).cpu()
    return bank.gaussian(draw.src, draw.bank_unit, shrink).sample(n, gen).float()


def init_from_bank(model: nn.Module, bank: KernelBank, layers: str | Sequence[str] = "all",
                   kind: str = "bank", unit: str = "filter", seed: int = 0, shrink: float = 0.1,
                   bank_map: Mapping[str, Sequence[str]] | None = None, vaes=None, rescale: bool = True
                   ) -> dict[str, str]:
    """Replace the weights of ``layers`` (names or a selector) by bank draws (``kind="bank"``),
    Gaussian draws (``kind="cov"``) or draws from each layer's fitted VAE (``kind="vae"``,
    ``vaes``: layer → ``fastreg.vae.KernelVAE`` of that unit), filter by filter where the bank's filters fit (a
    depthwise filter is one bank kernel), else slice by slice, said in one line on stderr;
    returns the unit used per layer. Each layer keeps its weights' std (``rescale=False``: the
    draws as they are, as the Deep Weight Prior initializes from its VAE).

    Seeds: layer ``li`` draws with ``seed*1000 + 500 + li`` (bank), ``+ 700 + li`` (cov) or
    ``+ 900 + li`` (vae).
    """
    if kind not in ("bank", "cov", "vae"):
        raise ValueError(f"kind must be bank, cov or vae, got {kind!r}")
    if kind == "vae" and not vaes:
        raise ValueError("kind='vae' needs vaes: {layer: KernelVAE} (fastreg.vae.vae_for)")
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    if isinstance(layers, str):    # a selector serves the convs the bank has kernels for, saying which not
        layers = select_layers(model, layers, bank.kernel_sizes(), bank_map or {}, f"{kind} init")
    convs, used, notes = conv_layers(model), {}, []
    unknown = [n for n in layers if n not in convs]
    if unknown:
        raise UsageError(f"unknown layer {unknown[0]!r}; the model's conv layers are "
                         f"{', '.join(list(convs)[:8])}{' …' if len(convs) > 8 else ''}")
    for li, name in enumerate(layers):
        conv = convs[name]
        w = conv.weight
        draw = bank.plan(name, w.shape, unit, bank_map)
        used[name] = draw.unit
        notes += [draw.fallback] if draw.fallback else []
        s = seed * 1000 + {"bank": 500, "cov": 700, "vae": 900}[kind] + li
        draws = _draws(conv, bank, draw, kind, s, shrink, (vaes or {}).get(name)).to(w.device).reshape(w.shape)
        with torch.no_grad():
            w.copy_(draws * (w.std() / draws.std().clamp_min(1e-12)) if rescale else draws)
    if notes:
        sys.stderr.write(fallback_note(notes, f"{kind} init"))
    return used
