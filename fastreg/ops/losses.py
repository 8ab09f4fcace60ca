"""The GAN losses of SPEC §3, written once for every backend's reference."""
from __future__ import annotations

import torch
import torch.nn.functional as F


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
