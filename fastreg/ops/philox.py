"""Pure-torch Philox4x32-10 and the bank-sampling index stream (DESIGN.md §5).

The stream, shared bit-for-bit with the native op in ``kernels/``:

* key   = (lo32(seed), hi32(seed)), seed taken as a 64-bit two's-complement int;
* draw ``j`` (0 <= j < n) uses the 64-bit counter ``c = offset + j`` and, for
  attempt ``a = 0, 1, ...``, the Philox block of counter words
  ``(lo32(c), hi32(c), a, 0)``;
* its four output words ``w0..w3`` are tried in order with Lemire's
  multiply-shift: ``m = w * N`` (64-bit); accept when ``lo32(m) >= (2^32 - N) mod N``,
  giving ``idx = hi32(m)`` — exactly uniform on ``[0, N)``, no modulo bias;
* if all four are rejected (probability < (N/2^32)^4), attempt ``a + 1``.

uint32 arithmetic is emulated in int64 tensors (products split in 16-bit
halves so nothing overflows), so this runs on any device torch runs on.
"""
from __future__ import annotations

import torch

M0, M1 = 0xD2511F53, 0xCD9E8D57
W0, W1 = 0x9E3779B9, 0xBB67AE85
MASK32 = 0xFFFFFFFF
MAX_N = 2 ** 32 - 1


def mulhilo32(a: torch.Tensor, b) -> tuple[torch.Tensor, torch.Tensor]:
    """(hi, lo) 32-bit halves of the 64-bit product of two uint32 values held in int64."""
    b_lo, b_hi = b & 0xFFFF, b >> 16
    p = a * b_lo                      # < 2^48
    q = a * b_hi                      # < 2^48
    mid = p + ((q & 0xFFFF) << 16)    # < 2^49
    lo = mid & MASK32
    hi = (q >> 16) + (mid >> 32)
    return hi & MASK32, lo


def philox4x32_10(c0, c1, c2, c3, k0: int, k1: int):
    """Ten Philox rounds on int64 tensors holding uint32 words (Random123's philox4x32)."""
    for r in range(10):
        if r:
            k0 = (k0 + W0) & MASK32
            k1 = (k1 + W1) & MASK32
        hi0, lo0 = mulhilo32(c0, M0)
        hi1, lo1 = mulhilo32(c2, M1)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


def lemire_threshold(N: int) -> int:
    return (2 ** 32 - N) % N


def sample_indices_torch(n: int, N: int, seed: int, offset: int = 0,
                         device: torch.device | str = "cpu") -> torch.Tensor:
    """int64 ``[n]`` uniform indices in ``[0, N)`` — the reference stream above."""
    if not 1 <= N <= MAX_N:
        raise ValueError(f"bank size must be in [1, 2^32), got {N}")
    seed &= 2 ** 64 - 1
    k0, k1 = seed & MASK32, seed >> 32
    thr = lemire_threshold(N)
    j = torch.arange(n, dtype=torch.int64, device=device)
    c = (j + (offset & (2 ** 64 - 1))) if offset < 2 ** 62 else None
    if c is None:   # very large offsets: add in two 32-bit halves
        c_lo = (j + (offset & MASK32))
        c_hi = (c_lo >> 32) + (offset >> 32)
        c_lo = c_lo & MASK32
    else:
        c_lo, c_hi = c & MASK32, (c >> 32) & MASK32
    c_hi = c_hi & MASK32
    out = torch.full((n,), -1, dtype=torch.int64, device=device)
    todo = torch.arange(n, dtype=torch.int64, device=device)
    attempt = 0
    while todo.numel():
        a = torch.full_like(todo, attempt)
        words = philox4x32_10(c_lo[todo], c_hi[todo], a, torch.zeros_like(todo), k0, k1)
        got = torch.zeros_like(todo, dtype=torch.bool)
        for w in words:
            hi, lo = mulhilo32(w, N)
            take = (~got) & (lo >= thr)
            out[todo[take]] = hi[take]
            got |= take
        todo = todo[~got]
        attempt += 1
    return out
