"""Result type shared by every disc_step backend."""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import torch


class DiscStepOutput(NamedTuple):
    logits: torch.Tensor                 # [B]
    d_loss: torch.Tensor                 # scalar
    d_grads: Tuple[torch.Tensor, ...]    # same order/shapes as tuple(disc.parameters())
    g_loss: Optional[torch.Tensor]       # scalar, or None when g_target is None
    g_grad: Optional[torch.Tensor]       # same shape as x, or None
