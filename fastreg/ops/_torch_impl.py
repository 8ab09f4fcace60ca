"""Eager PyTorch reference for the discriminator step (SPEC §3).

Every fast path is tested against this file; keep it plain autograd.
"""
from __future__ import annotations

import torch

from .losses import d_loss as _d_loss, g_loss as _g_loss
from .types import DiscStepOutput


def disc_step_eager(x: torch.Tensor, disc, d_target: float = 0.0,
                    g_target: float | None = 1.0) -> DiscStepOutput:
    """One D forward over ``x``; D-loss grads for D's params, G-loss grad for ``x``.

    Computes in D's dtype (like the fused path, whatever float ``x`` is) and returns
    ``g_grad`` in ``x``'s dtype."""
    params = tuple(disc.parameters())
    want_g = g_target is not None
    with torch.enable_grad():
        xi = x.detach().to(params[0].dtype).requires_grad_(want_g)
        logits = disc(xi)
        dl = _d_loss(logits, d_target, disc.loss)
        d_grads = torch.autograd.grad(dl, params, retain_graph=want_g)
        gl = g_grad = None
        if want_g:
            gl = _g_loss(logits, g_target, disc.loss)
            (g_grad,) = torch.autograd.grad(gl, xi)
    return DiscStepOutput(
        logits=logits.detach(), d_loss=dl.detach(), d_grads=tuple(g.detach() for g in d_grads),
        g_loss=None if gl is None else gl.detach(), g_grad=None if g_grad is None else g_grad.to(x.dtype))
