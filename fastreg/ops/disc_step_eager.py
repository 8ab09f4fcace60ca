"""Eager PyTorch reference of the discriminator step (DESIGN.md §3): the output type, the
GAN losses and the step itself, in plain autograd.

Every fast path is tested against this file; keep it plain.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F


class DiscStepOutput(NamedTuple):
    """What one disc step returns, whatever the backend."""
    logits: torch.Tensor                 # [B]
    d_loss: torch.Tensor                 # scalar
    d_grads: Tuple[torch.Tensor, ...]    # same order/shapes as tuple(disc.parameters())
    g_loss: Optional[torch.Tensor]       # scalar, or None when g_target is None
    g_grad: Optional[torch.Tensor]       # same shape as x, or None


def check_target(loss: str, t: float | None, what: str) -> None:
    if t is None:
        return
    if not 0.0 <= float(t) <= 1.0:
        raise ValueError(f"{what} must be in [0, 1], got {t}")
    if loss == "hinge" and float(t) not in (0.0, 1.0):
        raise ValueError(f"hinge loss takes {what} 0 or 1, got {t}")


def d_loss(logits: torch.Tensor, target: float, loss: str) -> torch.Tensor:
    """Discriminator loss: real batches use target 1, fake batches target 0."""
    if loss == "ns":
        return (F.softplus(logits) - float(target) * logits).mean()
    if float(target) == 1.0:
        return F.relu(1 - logits).mean()
    return F.relu(1 + logits).mean()


def g_loss(logits: torch.Tensor, target: float, loss: str) -> torch.Tensor:
    """Generator loss on the fake batch (target 1 = 'make it look real')."""
    if loss == "ns":
        return (F.softplus(logits) - float(target) * logits).mean()
    return -logits.mean() if float(target) == 1.0 else logits.mean()


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
        dl = d_loss(logits, d_target, disc.loss)
        d_grads = torch.autograd.grad(dl, params, retain_graph=want_g)
        gl = g_grad = None
        if want_g:
            gl = g_loss(logits, g_target, disc.loss)
            (g_grad,) = torch.autograd.grad(gl, xi)
    return DiscStepOutput(
        logits=logits.detach(), d_loss=dl.detach(), d_grads=tuple(g.detach() for g in d_grads),
        g_loss=None if gl is None else gl.detach(), g_grad=None if g_grad is None else g_grad.to(x.dtype))
