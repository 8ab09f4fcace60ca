"""Disc step benchmarks: eager vs torch.compile vs fused Triton at DESIGN.md §7 shapes.

One timed call = one DESIGN.md §2 training step's D work: the real batch
(d_target=1, no G head) and the fake batch (d_target=0, g_target=1). The last timed call's
outputs are checked against a float64 eager step (1e-4: every impl here computes in fp32 or
3xTF32), so a fast but wrong kernel fails instead of being timed.
Groups are ``disc_step-<shape>``; ``extra_info`` holds impl/shape (and the
compile mode that won). On CPU only eager and compile run, at S1 only.

    pytest bench/test_bench_disc_step.py --benchmark-only --benchmark-json=out.json
"""
from __future__ import annotations

import copy
import os
import statistics
import time
from typing import Callable

import pytest
import torch

from fastreg import Discriminator
from fastreg.ops.tolerance import max_rel_err
from fastreg.ops.disc_step_eager import DiscStepOutput, d_loss, disc_step_eager, g_loss

HAS_CUDA = torch.cuda.is_available()
DEV = "cuda" if HAS_CUDA else "cpu"
# name -> (fake batch, real batch, k[, channels]); S1f: whole 3x7x7 filters of a full-width conv1
SHAPES = {"S1": (384, 384, 7), "S2": (32768, 32768, 5), "S3": (1 << 20, 1 << 20, 3), "S1f": (128, 128, 7, 3)}
ROUNDS = {"S1": 30, "S2": 15, "S3": 8, "S1f": 30}
# max-autotune compiles for minutes per shape on CUDA; bench/gpu_check.sh gives all of
# bench/ ~4 minutes, so on CUDA it is opt-in: FASTREG_BENCH_COMPILE_MODES=default,max-autotune
# ("none" skips the compile baseline).
COMPILE_MODES = os.environ.get(
    "FASTREG_BENCH_COMPILE_MODES", "default" if HAS_CUDA else "default,max-autotune").split(",")


pytestmark = pytest.mark.usefixtures("one_cpu_thread")   # bench/conftest.py


def _sync() -> None:
    if HAS_CUDA:
        torch.cuda.synchronize()


def _setup(shape: str):
    n_fake, n_real, k, *c = SHAPES[shape]
    if not HAS_CUDA and shape != "S1":
        pytest.skip("CPU: S1 only")
    torch.manual_seed(0)
    disc = Discriminator(kernel_size=k, hidden=(128, 128), channels=c[0] if c else 1).to(DEV)
    real = torch.randn(n_real, *c, k, k, device=DEV)
    fake = torch.randn(n_fake, *c, k, k, device=DEV)
    return disc, real, fake


def _check(disc, real, fake, outs, tol: float) -> None:
    """What was timed must be right: both halves against a float64 eager step (DESIGN.md §6)."""
    d64 = copy.deepcopy(disc).double()
    refs = (disc_step_eager(real.double(), d64, 1.0, None), disc_step_eager(fake.double(), d64, 0.0, 1.0))
    errs = [max_rel_err(o, r) for o, r in zip(outs, refs)]
    assert max(errs) <= tol, f"benchmarked output off by {errs} (tolerance {tol})"


def _run(benchmark, shape: str, impl: str, step: Callable, real, fake, disc, tol: float = 1e-4,
         **info) -> None:
    def both_halves():
        r = step(real, 1.0, None)
        f = step(fake, 0.0, 1.0)
        _sync()  # time the device work, not the launch queue
        return r, f

    benchmark.group = f"disc_step-{shape}"
    benchmark.extra_info.update(impl=impl, shape=shape, device=DEV,
                                threads=torch.get_num_threads(), **info)
    if HAS_CUDA:
        benchmark.extra_info["gpu"] = torch.cuda.get_device_name()
    _check(disc, real, fake, benchmark.pedantic(both_halves, rounds=ROUNDS[shape], warmup_rounds=3,
                                                iterations=1), tol)


def _compiled_step(disc, mode: str) -> Callable:
    """Eager disc_step math with the forward + losses compiled (AOTAutograd compiles
    the backward); the two autograd.grad calls mirror disc_step_eager."""
    @torch.compile(mode=None if mode == "default" else mode, dynamic=False)
    def losses(x, d_t: float, g_t: float):
        logits = disc(x)
        return logits, d_loss(logits, d_t, disc.loss), g_loss(logits, g_t, disc.loss)

    params = tuple(disc.parameters())

    def step(x, d_t, g_t):
        xi = x.detach().requires_grad_(g_t is not None)
        logits, dl, gl = losses(xi, d_t, 1.0 if g_t is None else g_t)
        grads = torch.autograd.grad(dl, params, retain_graph=g_t is not None)
        gx = torch.autograd.grad(gl, xi)[0] if g_t is not None else None
        return DiscStepOutput(logits, dl, grads, gl if g_t is not None else None, gx)
    return step


def _median_s(fn: Callable, n: int = 5) -> float:
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        _sync()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


@pytest.mark.parametrize("shape", list(SHAPES))
def test_eager(benchmark, shape):
    disc, real, fake = _setup(shape)
    _run(benchmark, shape, "eager", lambda x, d, g: disc_step_eager(x, disc, d, g), real, fake, disc)


def _time_mode(disc, mode: str, real, fake) -> float:
    torch._dynamo.reset()
    step = _compiled_step(disc, mode)
    for _ in range(3):  # compile both specializations (real, fake) + warm up
        step(real, 1.0, None), step(fake, 0.0, 1.0)
    return _median_s(lambda: (step(real, 1.0, None), step(fake, 0.0, 1.0)))


@pytest.mark.parametrize("shape", list(SHAPES))
def test_compile(benchmark, shape):
    """Best of COMPILE_MODES (picked by a short pre-timing, recorded in extra_info)."""
    if COMPILE_MODES == ["none"]:
        pytest.skip("FASTREG_BENCH_COMPILE_MODES=none")
    disc, real, fake = _setup(shape)
    mode = COMPILE_MODES[0]
    if len(COMPILE_MODES) > 1:
        mode = min(COMPILE_MODES, key=lambda m: _time_mode(disc, m, real, fake))
    torch._dynamo.reset()
    _run(benchmark, shape, "compile", _compiled_step(disc, mode), real, fake, disc, compile_mode=mode)


TRITON_IMPLS = {  # impl name -> (kwargs, shapes); extras only at S3, where compute dominates
    "triton": ({}, tuple(SHAPES)),
    "triton-chunked": ({"variant": "chunked"}, ("S3",)),
    "triton-tf32x3": ({"precision": "tf32x3"}, ("S3",)),
}


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("impl", list(TRITON_IMPLS))
def test_triton(benchmark, shape, impl):
    """``triton`` is what disc_step(backend="triton") runs (auto: the register kernel at
    width 128); the chunked (wide-layer) kernel and 3xTF32 dots are timed at S3 to check
    the defaults."""
    if not HAS_CUDA:
        pytest.skip("Triton timing needs CUDA (the CPU interpreter is not a benchmark)")
    kw, shapes = TRITON_IMPLS[impl]
    if shape not in shapes:
        pytest.skip(f"{impl} is timed at {shapes} only")
    from fastreg.ops.disc_step_triton import disc_step_triton
    disc, real, fake = _setup(shape)
    _run(benchmark, shape, impl, lambda x, d, g: disc_step_triton(x, disc, d, g, **kw),
         real, fake, disc)
