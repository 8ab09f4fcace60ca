"""Loads the native ``fastreg._C`` extension (kernels/); None when it is not there.

Order: the built extension; else, with ``FASTREG_JIT=1`` in a source checkout, a JIT build
of kernels/ via ``torch.utils.cpp_extension.load``; else None (pure-torch fallback).
``FASTREG_NO_EXT=1`` forces None. On load, fake (meta) and autograd rules are registered
so ``torch.compile`` can trace the op and gradients reach the bank as for ``bank[idx]``.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:          # torch is imported late, after the build settings set CUDA_HOME
    import torch

_op = False  # False = not tried yet
_KERNELS = Path(__file__).resolve().parents[2] / "kernels"


def _jit_build() -> None:
    """Compile kernels/ into the process (CUDA too when nvcc and a CUDA torch are there)."""
    spec = importlib.util.spec_from_file_location("fastreg_build_settings",
                                                  _KERNELS / "build_settings.py")
    bs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bs)  # by path: kernels/ is beside the package, not in it
    cuda = bs.with_cuda()  # sets CUDA_HOME first, as cpp_extension reads it on import
    from torch.utils import cpp_extension as ce

    sources = [str(_KERNELS / "sample.cpp")]
    flags = bs.compile_flags(cuda)
    if cuda:
        sources.append(str(_KERNELS / "sample_cuda.cu"))
        bs.set_default_arch_list()
    ce.load(name="fastreg_C", sources=sources, extra_cflags=flags, extra_cuda_cflags=flags,
            extra_include_paths=[str(_KERNELS)], with_cuda=cuda, is_python_module=False)


def _register_python_rules() -> None:
    import torch

    @torch.library.register_fake("fastreg::sample_kernels")
    def _(bank, n, seed, offset=0):
        torch._check(bank.dim() == 3, lambda: f"bank must be 3-D [N, k, k], got {bank.dim()}-D")
        torch._check(n >= 0, lambda: f"n must be >= 0, got {n}")
        return (bank.new_empty((n, bank.shape[1], bank.shape[2])),
                bank.new_empty((n,), dtype=torch.int64))

    @torch.library.register_fake("fastreg::sample_indices")
    def _(n, N, seed, offset=0, device=None):
        torch._check(n >= 0, lambda: f"n must be >= 0, got {n}")
        return torch.empty((n,), dtype=torch.int64, device=device)

    def setup_context(ctx, inputs, output):
        ctx.bank_shape = inputs[0].shape
        ctx.save_for_backward(output[1])

    def backward(ctx, grad_kernels, _grad_idx):
        (idx,) = ctx.saved_tensors
        grad = grad_kernels.new_zeros(ctx.bank_shape).index_add_(0, idx, grad_kernels)
        return grad, None, None, None

    torch.library.register_autograd("fastreg::sample_kernels", backward,
                                    setup_context=setup_context)


def supports(device: torch.device) -> bool:
    """Whether the loaded op has a kernel for this device (a CPU-only build has no CUDA one)."""
    import torch
    if load() is None:
        return False
    key = {"cpu": "CPU", "cuda": "CUDA", "meta": "Meta"}.get(device.type)
    return key is not None and torch._C._dispatch_has_kernel_for_dispatch_key(
        "fastreg::sample_kernels", key)


def load():
    """The callable ``torch.ops.fastreg.sample_kernels`` or None (clean fallback)."""
    global _op
    if _op is False:
        _op = None
        if os.environ.get("FASTREG_NO_EXT") != "1":
            import torch
            try:
                from .. import _C  # noqa: F401  (registers torch.ops.fastreg.*)
            except (ImportError, OSError):
                if os.environ.get("FASTREG_JIT") == "1" and (_KERNELS / "sample.cpp").exists():
                    _jit_build()  # errors propagate: JIT was asked for explicitly
                else:
                    return None
            _op = torch.ops.fastreg.sample_kernels
            _register_python_rules()
    return _op
