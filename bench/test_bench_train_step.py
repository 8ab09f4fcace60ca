"""Whole training step (S1 model: DWPNet width 1, batch 100) with and without the regularizer.

Target (issue 3): regularized step with the fused backend <= 1.05x the plain step on CUDA.
Group ``train_step-S1``; names ``plain``, ``reg-eager``, ``reg-triton`` (CUDA only).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fastreg.bank import KernelBank
from fastreg.models import DWPNet
from fastreg.regularizer import AdversarialRegularizer

HAS_CUDA = torch.cuda.is_available()
DEV = "cuda" if HAS_CUDA else "cpu"
ROUNDS = 50 if HAS_CUDA else 5


def _step_fn(reg_backend: str | None):
    torch.manual_seed(0)
    model = DWPNet().to(DEV)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    reg = None
    if reg_backend:
        bank = KernelBank({"conv1": torch.randn(4096, 7, 7)}).to(DEV)
        reg = AdversarialRegularizer(model, bank, ["conv1"], lam=1.0, backend=reg_backend).to(DEV)
    x = torch.randn(100, 3, 32, 32, device=DEV)
    y = torch.randint(0, 10, (100,), device=DEV)

    def step():
        with torch.autocast(DEV, dtype=torch.bfloat16):
            out = model(x)
        loss = F.cross_entropy(out.float(), y)
        if reg is not None:
            loss = loss + reg.generator_loss()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if reg is not None:
            reg.discriminator_step()
        if HAS_CUDA:
            torch.cuda.synchronize()
    return step


@pytest.mark.parametrize("variant", ["plain", "reg-eager", "reg-triton"])
def test_train_step(benchmark, variant):
    if variant == "reg-triton" and not HAS_CUDA:
        pytest.skip("fused backend is benchmarked on CUDA only")
    step = _step_fn(None if variant == "plain" else variant.split("-")[1])
    benchmark.group = "train_step-S1"
    benchmark.extra_info.update(impl=variant, device=DEV)
    if HAS_CUDA:
        benchmark.extra_info["gpu"] = torch.cuda.get_device_name()
    benchmark.pedantic(step, rounds=ROUNDS, warmup_rounds=3, iterations=1)
