"""``disc_step``: the public entry point, picking a backend (SPEC §3)."""
from __future__ import annotations

import torch

from ._torch_impl import disc_step_eager
from .losses import check_target
from .types import DiscStepOutput

BACKENDS = ("auto", "eager", "triton")


def triton_available() -> bool:
    """True when the fused Triton path can run here (CUDA, or the CPU interpreter)."""
    try:
        from . import triton_disc  # noqa: F401
    except Exception:
        return False
    return True


def resolve_backend(backend: str, device: torch.device | str) -> str:
    """``auto`` → Triton on CUDA when importable, else eager."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "auto":
        return backend
    if torch.device(device).type == "cuda" and triton_available():
        return "triton"
    return "eager"


def _check(x: torch.Tensor, disc) -> None:
    if x.dim() == 3:
        if x.shape[1] != x.shape[2] or x.shape[1] != disc.kernel_size:
            raise ValueError(f"x has kernels of shape {tuple(x.shape[1:])}, "
                             f"D expects {disc.kernel_size}x{disc.kernel_size}")
    elif x.dim() == 2:
        if x.shape[1] != disc.dim:
            raise ValueError(f"x has {x.shape[1]} features, D expects {disc.dim}")
    else:
        raise ValueError(f"x must be [B, k, k] or [B, k*k], got shape {tuple(x.shape)}")
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
    backend = resolve_backend(backend, x.device)
    if backend == "eager":
        return disc_step_eager(x, disc, d_target, g_target)
    from .triton_disc import disc_step_triton
    return disc_step_triton(x, disc, d_target, g_target, **kwargs)
