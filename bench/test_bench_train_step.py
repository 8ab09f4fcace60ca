"""Whole training step (S1 model: DWPNet width 1, batch 100) with and without the regularizer.

Target: regularized step with the fused backend <= 1.05x the plain step on CUDA.
Group ``train_step-S1``; names ``plain``, ``reg-eager``, ``reg-triton`` (CUDA only).

Group ``train_step-cpu``: the regularized step on the CPU it runs on, in fp32 and under bf16
autocast, whatever ``--amp`` would pick there; the CPU's capability is printed and stored in
``extra_info``. Where bf16 is not native it is emulated and many times slower, which is why
``--amp`` trains in fp32 there (``fastreg.device.amp_precision``).
"""
from __future__ import annotations

import copy

import pytest
import torch

from fastreg.bank import KernelBank
from fastreg.lab.device import amp_precision, cpu_has_native_bf16
from fastreg.models import DWPNet
from fastreg.ops import disc_step, resolve_backend
from fastreg.ops.tolerance import max_rel_err
from fastreg.ops.disc_step_eager import disc_step_eager
from fastreg.regularizer import AdversarialRegularizer
from step_helper import make_train_step

HAS_CUDA = torch.cuda.is_available()
DEV = "cuda" if HAS_CUDA else "cpu"
ROUNDS = 50 if HAS_CUDA else 5


def _step_fn(reg_backend: str | None, dev: str = DEV, bf16: bool = True):
    torch.manual_seed(0)
    model = DWPNet().to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    reg = None
    if reg_backend:
        bank = KernelBank({"conv1": torch.randn(4096, 7, 7)}).to(dev)
        reg = AdversarialRegularizer(model, bank, ["conv1"], lam=1.0, backend=reg_backend).to(dev)
    x = torch.randn(100, 3, 32, 32, device=dev)
    y = torch.randint(0, 10, (100,), device=dev)
    step = make_train_step(model, opt, x, y, reg, bf16=bf16)

    def check() -> None:
        """What was timed must be right (DESIGN.md §6): the trained classifier's forward in
        the timed precision, and the regularizer's disc step with the timed backend on the
        trained kernels, each against float64."""
        with torch.no_grad():
            ref = copy.deepcopy(model).double()(x.double())
            with torch.autocast(dev, dtype=torch.bfloat16, enabled=bf16):
                out = model(x).float()
        err, tol = float((out.double() - ref).norm() / ref.norm()), 3e-2 if bf16 else 1e-4
        assert err <= tol, f"classifier forward off by {err} (tolerance {tol})"
        if reg is not None:
            w = model.conv1.weight.detach().reshape(-1, 7, 7)
            disc = reg.discs["conv1"]
            got = disc_step(w, disc, 0.0, 1.0, backend=resolve_backend(reg.backend, w.device, disc))
            err = max_rel_err(got, disc_step_eager(w.double(), copy.deepcopy(disc).double(), 0.0, 1.0))
            assert err <= 1e-4, f"disc step off by {err}"
    return step, check


@pytest.mark.parametrize("variant", ["plain", "reg-eager", "reg-triton"])
def test_train_step(benchmark, variant):
    if variant == "reg-triton" and not HAS_CUDA:
        pytest.skip("fused backend is benchmarked on CUDA only")
    step, check = _step_fn(None if variant == "plain" else variant.split("-")[1])
    benchmark.group = "train_step-S1"
    benchmark.extra_info.update(impl=variant, device=DEV)
    if HAS_CUDA:
        benchmark.extra_info["gpu"] = torch.cuda.get_device_name()
    benchmark.pedantic(step, rounds=ROUNDS, warmup_rounds=3, iterations=1)
    check()


def cpu_capability() -> str:
    """What this CPU offers torch: its vector ISA, and whether bf16 is native."""
    return (f"{torch.backends.cpu.get_cpu_capability()}, native bf16: {cpu_has_native_bf16()}, "
            f"--amp here trains in {amp_precision(torch.device('cpu'), True)}, "
            f"{torch.get_num_threads()} threads")


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_train_step_cpu(benchmark, precision, capsys):
    with capsys.disabled():
        print(f"\nCPU: {cpu_capability()}")
    step, check = _step_fn("eager", "cpu", bf16=precision == "bf16")
    benchmark.group = "train_step-cpu"
    benchmark.extra_info.update(impl=precision, device="cpu", cpu=cpu_capability())
    benchmark.pedantic(step, rounds=3, warmup_rounds=1, iterations=1)
    check()
