"""``torch.ops.fastreg.disc_step_fused``: the fused disc step as one custom op.

Why: a torch.compile'd training step then sees one opaque node (with a fake
implementation for shapes) instead of graph-breaking on Triton launches.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor


@torch.library.custom_op("fastreg::disc_step_fused", mutates_args=())
def disc_step_fused(x: Tensor, params: List[Tensor], norm: str, loss: str, slope: float,
                    eps: float, d_target: float, g_target: Optional[float], precision: str,
                    block_b: int, num_programs: int, variant: str) -> Tuple[Tensor, Tensor, Tensor]:
    """``x`` ``[B, D]`` float32 -> ``(logits [B], flat, g_grad [B, D] or [0])``;
    ``flat`` = D grads in parameters() order, then d_loss, g_loss, [BN sums]."""
    from .triton_disc import launch
    return launch(x.contiguous(), [p.contiguous() for p in params], norm, loss, slope, eps,
                  d_target, g_target, precision, block_b, num_programs, variant)


@disc_step_fused.register_fake
def _(x, params, norm, loss, slope, eps, d_target, g_target, precision, block_b, num_programs, variant):
    from .triton_disc import flat_size
    B, D = x.shape
    n = flat_size(D, [p.numel() for p in params], norm == "batch")
    g = x.new_empty((B, D) if g_target is not None else (0,), dtype=torch.float32)
    return (x.new_empty((B,), dtype=torch.float32), x.new_empty((n,), dtype=torch.float32), g)
