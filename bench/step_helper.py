"""One training step as the benchmarks time it: forward (bf16 autocast when asked), cross
entropy plus the regularizer's generator loss, backward, optimizer step, D step, and a CUDA
sync so the time is the step's."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def make_train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                    reg=None, bf16: bool = False) -> Callable[[], torch.Tensor]:
    """``step()`` runs one step and returns its (detached) loss."""
    dev = x.device.type

    def step() -> torch.Tensor:
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
        loss = F.cross_entropy(out.float(), y)
        if reg is not None:
            loss = loss + reg.generator_loss()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if reg is not None:
            reg.discriminator_step()
        if dev == "cuda":
            torch.cuda.synchronize()
        return loss.detach()
    return step
