"""Pure-torch Philox4x32-10 (fastreg/ops/philox.py) against Random123 vectors and a scalar
Python-int reference of the index stream, written independently of the tensor code."""
import random

import pytest
import torch

from fastreg.ops.philox import lemire_threshold, mulhilo32, philox4x32_10, sample_indices_torch

KAT = [  # (counter, key, expected) from Random123 kat_vectors
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]
M32 = 0xFFFFFFFF


@pytest.mark.parametrize("ctr,key,want", KAT)
def test_philox_kat(ctr, key, want):
    words = philox4x32_10(*[torch.tensor([c], dtype=torch.int64) for c in ctr], *key)
    assert tuple(int(w) for w in words) == want


def test_mulhilo32_matches_python_ints():
    rng = random.Random(0)
    a = [0, 1, M32, 0x80000000] + [rng.getrandbits(32) for _ in range(2000)]
    for b in [0, 1, 3, M32, 0xD2511F53, rng.getrandbits(32)]:
        hi, lo = mulhilo32(torch.tensor(a, dtype=torch.int64), b)
        assert hi.tolist() == [(x * b) >> 32 for x in a]
        assert lo.tolist() == [(x * b) & M32 for x in a]


def _philox_py(c, k0, k1):
    for r in range(10):
        if r:
            k0, k1 = (k0 + 0x9E3779B9) & M32, (k1 + 0xBB67AE85) & M32
        p0, p1 = 0xD2511F53 * c[0], 0xCD9E8D57 * c[2]
        c = [(p1 >> 32) ^ c[1] ^ k0, p1 & M32, (p0 >> 32) ^ c[3] ^ k1, p0 & M32]
    return c


def _index_py(seed, ctr, N):
    seed &= 2**64 - 1
    ctr &= 2**64 - 1
    thr = (2**32 - N) % N
    for a in range(100):
        for w in _philox_py([ctr & M32, ctr >> 32, a, 0], seed & M32, seed >> 32):
            if (w * N) & M32 >= thr:
                return (w * N) >> 32
    raise AssertionError("no acceptance in 100 attempts")


@pytest.mark.parametrize("seed,offset,N", [
    (0, 0, 1), (1, 0, 10), (-1, 5, 3), (2**40 + 7, 2**32 - 3, 1000),
    (-(2**63), 2**62 + 11, 2**31 + 1), (2**63 - 1, 2**63 - 20, 2**32 - 1), (12345, 0, 2**31),
])
def test_stream_matches_scalar_reference(seed, offset, N):
    n = 40
    got = sample_indices_torch(n, N, seed, offset).tolist()
    assert got == [_index_py(seed, offset + j, N) for j in range(n)]
    assert all(0 <= i < N for i in got)


def test_threshold():
    assert [lemire_threshold(N) for N in (1, 2, 3, 10, 2**31, 2**31 + 1, 2**32 - 1)] == \
        [0, 0, 1, 6, 0, 2**31 - 1, 1]


def test_bad_bank_size():
    with pytest.raises(ValueError):
        sample_indices_torch(3, 0, 0)
    with pytest.raises(ValueError):
        sample_indices_torch(3, 2**32, 0)
