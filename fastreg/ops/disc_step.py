"""``disc_step``: the public entry point of the discriminator step (DESIGN.md §3).

It checks the input and picks a backend: ``disc_step_eager.py`` (the plain-autograd
reference) or ``disc_step_triton.py`` (the fused kernels, CUDA or the CPU interpreter).
"""
from __future__ import annotations

import copy

import torch

from .disc_step_eager import DiscStepOutput, check_target, disc_step_eager
from .fused_limits import MAX_FUSED_HIDDEN, MAX_FUSED_INPUT
from .tolerance import max_rel_err  # noqa: F401  (re-exported: the self-test's metric)

BACKENDS = ("auto", "eager", "triton")


def triton_available() -> bool:
    """True when the fused Triton path can run here (CUDA, or the CPU interpreter)."""
    try:
        from . import disc_step_triton  # noqa: F401
    except Exception:
        return False
    return True


_SELF_TEST: dict[str, bool] = {}


def triton_self_test(device: torch.device | str) -> bool:
    """Once per device: the fused step must match eager on a random S1-sized batch
    (DESIGN.md §6, 1e-4). ``auto`` falls back to eager, with a warning, if it does not —
    a guard for GPUs and Triton versions the test suite has not run on."""
    key = str(torch.device(device))
    if key not in _SELF_TEST:
        import warnings
        from ..discriminator import Discriminator
        ok = False
        try:
            from .disc_step_triton import disc_step_triton
            g = torch.Generator(device="cpu").manual_seed(0)
            disc = Discriminator(7).to(device)
            x = torch.randn(384, 7, 7, generator=g).to(device)
            ref = disc_step_eager(x.double(), copy.deepcopy(disc).double(), 0.0, 1.0)
            out = disc_step_triton(x, disc, 0.0, 1.0)
            ok = max_rel_err(out, ref) < 1e-4
            if not ok:
                warnings.warn(f"fused Triton disc step disagrees with eager on {key}; using eager")
        except Exception as e:  # noqa: BLE001  (any failure to compile or run: fall back)
            warnings.warn(f"fused Triton disc step unavailable on {key} ({type(e).__name__}: {e}); "
                          f"using eager")
        _SELF_TEST[key] = ok
    return _SELF_TEST[key]


def fused_serves(disc) -> bool:
    """Whether the fused step can run this D: up to MAX_FUSED_INPUT inputs (e.g. a whole
    3x7x7 filter, 147; not a 64x5x5 one, 1600) and 1-3 hidden layers."""
    return disc.dim <= MAX_FUSED_INPUT and 1 <= len(disc.hidden) <= MAX_FUSED_HIDDEN


def resolve_backend(backend: str, device: torch.device | str, disc=None) -> str:
    """``auto`` → Triton on CUDA when it imports, passes its self-test and serves ``disc``
    (when given), else eager."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "auto":
        return backend
    if disc is not None and not fused_serves(disc):
        return "eager"
    if torch.device(device).type == "cuda" and triton_available() and triton_self_test(device):
        return "triton"
    return "eager"


def _check(x: torch.Tensor, disc) -> None:
    k, c = disc.kernel_size, disc.channels
    want = (k, k) if c == 1 else (c, k, k)
    if x.dim() == 2:
        if x.shape[1] != disc.dim:
            raise ValueError(f"x has {x.shape[1]} features, D expects {disc.dim}")
    elif x.dim() in (3, 4):
        if tuple(x.shape[1:]) != want:
            raise ValueError(f"x has kernels of shape {tuple(x.shape[1:])}, D expects "
                             f"{'x'.join(map(str, want))}")
    else:
        raise ValueError(f"x must be [B, {', '.join(map(str, want))}] or [B, {disc.dim}], "
                         f"got shape {tuple(x.shape)}")
    if x.shape[0] < 2 and disc.norm == "batch":
        raise ValueError("batch normalization needs at least 2 kernels")
    if not x.is_floating_point():
        raise ValueError(f"x must be a float tensor, got {x.dtype}")


def disc_step(x: torch.Tensor, disc, d_target: float = 0.0, g_target: float | None = 1.0,
              backend: str = "auto", **kwargs) -> DiscStepOutput:
    """From ONE D forward over ``x``: D's loss and parameter grads at ``d_target``,
    and (unless ``g_target`` is None) the generator loss and its grad w.r.t. ``x``."""
    _check(x, disc)
    check_target(disc.loss, d_target, "d_target")
    check_target(disc.loss, g_target, "g_target")
    backend = resolve_backend(backend, x.device, disc)
    if backend == "eager":
        return disc_step_eager(x, disc, d_target, g_target)
    from .disc_step_triton import disc_step_triton
    return disc_step_triton(x, disc, d_target, g_target, **kwargs)
