"""The one error metric of DESIGN.md §6: norm-wise relative error ``||out - ref|| / ||ref||``,
inf for any non-finite output, shapes checked (broadcasting would hide a wrong one); used by the
runtime self-test of the fused step and by every test against the float64 reference."""
from __future__ import annotations

import math

import torch


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    """``||out - ref|| / ||ref||`` in float64 (the plain norm when ``ref`` is 0); inf when ``out``
    holds NaN or Inf."""
    if tuple(out.shape) != tuple(ref.shape):
        raise ValueError(f"shapes differ: {tuple(out.shape)} vs {tuple(ref.shape)}")
    out, ref = out.detach().double().cpu(), ref.detach().double().cpu()
    if not bool(torch.isfinite(out).all()):
        return math.inf
    den, num = float(ref.norm()), float((out - ref).norm())
    return num if den == 0 else num / den


def max_rel_err(out, ref) -> float:
    """The largest ``rel_err`` over every output of a disc step (``DiscStepOutput``s) against a
    (float64) reference: logits, D's loss and gradients, and the G head when ``ref`` has one."""
    pairs = [(out.logits, ref.logits), (out.d_loss, ref.d_loss), *zip(out.d_grads, ref.d_grads)]
    if ref.g_grad is not None:
        pairs += [(out.g_loss, ref.g_loss), (out.g_grad, ref.g_grad)]
    return max(rel_err(a, b) for a, b in pairs)
