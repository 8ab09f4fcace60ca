"""``sample_kernels``: uniform draws with replacement from a bank (DESIGN.md §5).

Uses the native op ``fastreg::sample_kernels`` when the extension is built,
else the pure-torch Philox stream of ``philox.py`` — both give identical indices.
"""
from __future__ import annotations

import torch

from .philox import MAX_N, sample_indices_torch


def _check(bank: torch.Tensor, n: int) -> None:
    if not isinstance(bank, torch.Tensor) or bank.dim() != 3:
        raise ValueError(f"bank must be a 3-D tensor [N, k, k], got "
                         f"{tuple(bank.shape) if isinstance(bank, torch.Tensor) else type(bank).__name__}")
    if bank.shape[0] == 0:
        raise ValueError("bank is empty: nothing to sample")
    if bank.shape[0] > MAX_N:
        raise ValueError(f"bank has {bank.shape[0]} kernels; at most 2^32-1 are supported")
    if int(n) < 0:
        raise ValueError(f"n must be >= 0, got {n}")


def _check_offset(offset: int) -> int:
    if not 0 <= int(offset) < 2**63:
        raise ValueError(f"offset must be in [0, 2^63), got {offset}")
    return int(offset)


def _seed64(seed: int) -> int:
    """Any Python int seed -> the int64 with the same low 64 bits (what the native op takes)."""
    seed = int(seed) & (2**64 - 1)
    return seed - 2**64 if seed >= 2**63 else seed


def sample_kernels_torch(bank: torch.Tensor, n: int, seed: int, offset: int = 0):
    """Pure-torch fallback: identical indices to the native op."""
    _check(bank, n)
    offset = _check_offset(offset)
    idx = sample_indices_torch(int(n), bank.shape[0], _seed64(seed), offset, bank.device)
    return bank[idx], idx


def sample_kernels(bank: torch.Tensor, n: int, seed: int, offset: int = 0,
                   backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """``(kernels [n, k, k], idx int64 [n])``; depends only on (seed, offset, n, N)."""
    if backend not in ("auto", "native", "torch"):
        raise ValueError(f"backend must be auto, native or torch, got {backend!r}")
    if backend != "torch":
        from . import _native
        op = _native.load()
        if op is not None and (backend == "native" or _native.supports(bank.device)):
            _check(bank, n)
            return op(bank, int(n), _seed64(seed), _check_offset(offset))
        if backend == "native":
            raise RuntimeError("the native fastreg extension is not built "
                               "(pip install -e . with a compiler; FASTREG_NO_EXT unset)")
    return sample_kernels_torch(bank, n, seed, offset)
