"""Regularizing every 3×3 conv of a CIFAR ResNet-18 (17 layers, 1.2 M kernels) against the
plain training step, with the defaults (``--fake-max auto``: 16384 kernels a step in all).

Target: at most 1.10× the plain step on the CPU. Group ``train_step-resnet18``;
names ``plain``, ``reg-layer`` (one D per layer, the default) and ``reg-size`` (one D per
kernel size). On the CPU one thread and fp32 (what a CPU without native bf16 runs), batch
100; on CUDA bf16 autocast and the fused D step. The check after timing: the regularized
step's losses are finite and D moved.
"""
from __future__ import annotations

import pytest
import torch

from fastreg.bank import KernelBank
from fastreg.layers import select_layers
from fastreg.models import resnet18_cifar
from fastreg.regularizer import AdversarialRegularizer
from step_helper import make_train_step

HAS_CUDA = torch.cuda.is_available()
DEV = "cuda" if HAS_CUDA else "cpu"


pytestmark = pytest.mark.usefixtures("one_cpu_thread")


def _bank3() -> KernelBank:
    g = torch.Generator().manual_seed(0)
    return KernelBank({"k3": torch.randn(60000, 3, 3, generator=g)})


@pytest.mark.parametrize("variant", ["plain", "reg-layer", "reg-size"])
def test_resnet18_every_3x3(benchmark, variant):
    torch.manual_seed(0)
    model = resnet18_cifar(10).to(DEV)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    reg = None
    if variant != "plain":
        reg = AdversarialRegularizer(model, _bank3(), select_layers(model, "k3"), lam=1.0,
                                     share=variant.split("-")[1]).to(DEV)
    x = torch.randn(100, 3, 32, 32, device=DEV)
    y = torch.randint(0, 10, (100,), device=DEV)
    seen = []
    train_step = make_train_step(model, opt, x, y, reg, bf16=HAS_CUDA)

    def step():
        seen.append(float(train_step()))

    benchmark.group = "train_step-resnet18"
    benchmark.extra_info.update(impl=variant, device=DEV, threads=torch.get_num_threads(),
                                fake_max=reg.fake_max if reg else None)
    d0 = [p.detach().clone() for p in reg.discs.parameters()] if reg else []
    benchmark.pedantic(step, rounds=10 if HAS_CUDA else 3, warmup_rounds=1, iterations=1)
    assert all(torch.isfinite(torch.tensor(seen)))
    if reg is not None:
        assert any(not torch.equal(a, b) for a, b in zip(d0, reg.discs.parameters()))
        assert all(torch.isfinite(torch.tensor(v)) for v in reg.pop_stats().values())
