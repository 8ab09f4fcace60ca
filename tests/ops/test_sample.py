"""Bank sampler (DESIGN.md §5): native op (kernels/) == pure-torch Philox stream, on CPU and CUDA.

Native tests skip only when fastreg._C is not built; CI builds it
(``pip install --no-build-isolation -e .``), so there they all run.
"""
import random

import numpy as np
import pytest
import torch
from scipy import stats

from fastreg.ops import _native
from fastreg.ops.philox import philox4x32_10, sample_indices_torch
from fastreg.ops.sample import sample_kernels, sample_kernels_torch

OP = _native.load()
native = pytest.mark.skipif(
    OP is None, reason="fastreg._C not built (pip install --no-build-isolation -e . with a "
    "compiler, FASTREG_NO_EXT unset) -- only the pure-torch path is tested")
BIG_N = [2**31 - 1, 2**31, 2**31 + 1, 3 * 2**30 + 1, 2**32 - 2, 2**32 - 1]
DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.uint8]


def _cases(count: int, max_N: int = 3000):
    """Deterministic random (n, N, seed, offset): seeds < 0 and >= 2^32, offsets up to 2^63-1."""
    rng = random.Random(1234)
    seeds = [0, -1, -(2**63), 2**63 - 1, 2**32, 2**32 + 17]
    offsets = [0, 1, 2**32 - 5, 2**32, 2**62 + 3, 2**63 - 1 - 10**4]
    out = []
    for c in range(count):
        seed = seeds[c] if c < len(seeds) else rng.randint(-(2**63), 2**63 - 1)
        offset = offsets[c % len(offsets)] if c % 2 else rng.randint(0, 2**63 - 10**5)
        out.append((rng.randint(1, 2000), rng.choice([1, 2, 3, 7, rng.randint(1, max_N)]),
                    seed, offset))
    return out


def _bank(N, k=3, dtype=torch.float32, device="cpu"):
    if not dtype.is_floating_point:
        return torch.randint(0, 256, (N, k, k), dtype=dtype).to(device)
    return torch.randn(N, k, k, dtype=torch.float64).mul(100).to(dtype).to(device)


def _poison(n: int, bank: torch.Tensor) -> None:
    """Fill and free buffers the size of the op's outputs (NaN / 255 kernels, -1 indices):
    the allocator hands the same blocks to the next call, so an output element the op
    failed to write shows up as poison instead of a previous call's correct value."""
    bad = float("nan") if bank.dtype.is_floating_point else 255
    torch.full((n, *bank.shape[1:]), bad, dtype=bank.dtype, device=bank.device)
    torch.full((n,), -1, dtype=torch.int64, device=bank.device)


def _chi2_p(idx: torch.Tensor, N: int, bins: int) -> float:
    counts = np.bincount((idx.cpu().numpy().astype(np.uint64) * bins // N).astype(np.int64),
                         minlength=bins)
    exp = np.array([(((b + 1) * N + bins - 1) // bins) - ((b * N + bins - 1) // bins)
                    for b in range(bins)], dtype=np.float64) * len(idx) / N
    return stats.chisquare(counts, exp).pvalue


# --------------------------------------------------------------------- pure torch path
@pytest.mark.parametrize("N,bins", [(17, 17), (1000, 1000), (2**31 + 1, 64), (2**32 - 1, 64)])
def test_uniform_torch(N, bins):
    for seed in (0, -7):
        assert _chi2_p(sample_indices_torch(100_000, N, seed, 5), N, bins) > 1e-4


def test_chi2_detects_modulo_bias():
    """The uniformity test can fail: plain ``w % N`` for N = 3*2^30 is visibly biased."""
    j = torch.arange(50_000, dtype=torch.int64)
    w = philox4x32_10(j, torch.zeros_like(j), torch.zeros_like(j), torch.zeros_like(j), 1, 0)[0]
    N = 3 * 2**30
    assert _chi2_p(w % N, N, 64) < 1e-6


def test_torch_n0_and_N1():
    bank = _bank(1, 5)
    k, i = sample_kernels_torch(bank, 0, 3)
    assert k.shape == (0, 5, 5) and i.shape == (0,) and i.dtype == torch.int64
    k, i = sample_kernels_torch(bank, 50, 3)
    assert (i == 0).all() and torch.equal(k, bank.expand(50, 5, 5))


@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_wrapper_errors(backend):
    with pytest.raises(ValueError, match="3-D"):
        sample_kernels(torch.zeros(4, 9), 2, 0, backend=backend)
    with pytest.raises(ValueError, match="empty"):
        sample_kernels(torch.zeros(0, 3, 3), 2, 0, backend=backend)
    with pytest.raises(ValueError, match="n must be"):
        sample_kernels(torch.zeros(4, 3, 3), -1, 0, backend=backend)
    with pytest.raises(ValueError, match="offset"):
        sample_kernels(torch.zeros(4, 3, 3), 1, 0, -1, backend=backend)


# --------------------------------------------------------------------- native CPU
@native
@pytest.mark.parametrize("n,N,seed,offset", _cases(40))
def test_native_cpu_matches_torch(n, N, seed, offset):
    bank = _bank(N)
    k_ref, i_ref = sample_kernels_torch(bank, n, seed, offset)
    _poison(n, bank)
    k, i = OP(bank, n, seed, offset)
    assert i.dtype == torch.int64 and torch.equal(i, i_ref)
    assert torch.equal(k, k_ref)


def _big_bank(N: int, device: str = "cpu") -> torch.Tensor:
    """A real bank of N one-pixel uint8 kernels (N bytes), row r holding r % 251, so a
    gathered kernel tells which row it came from."""
    return torch.arange(251, dtype=torch.uint8, device=device).repeat(N // 251 + 1)[:N].view(N, 1, 1)


@native
@pytest.mark.parametrize("N", [2**31 + 1])
def test_native_gather_matches_torch_at_N_near_2_31(N):
    """About half of all words are rejected at N = 2^31 + 1, so draws are accepted by words
    1-3 and by later attempts too, with the kernels gathered from a 2 GiB bank."""
    bank = _big_bank(N)
    k_ref, i_ref = sample_kernels_torch(bank, 4096, 7, 2**33)
    _poison(4096, bank)
    k, i = OP(bank, 4096, 7, 2**33)
    assert torch.equal(i, i_ref) and torch.equal(k, k_ref)
    assert torch.equal(k.view(-1), (i_ref % 251).to(torch.uint8)) and int(i.max()) >= 2**31 - 2**24


@native
def test_native_many_draws_parallel():
    """Large n spans many parallel_for chunks; each draw still depends only on its counter."""
    k, i = OP(_bank(50), 150_001, 99, 2**40)
    assert torch.equal(i, sample_indices_torch(150_001, 50, 99, 2**40))


@native
@pytest.mark.parametrize("N", BIG_N)
def test_native_index_path_big_N(N):
    """N near 2^31 / 2^32 without allocating such a bank: the index-only op."""
    for seed, offset in [(3, 0), (-(2**40), 2**33 + 1)]:
        i = torch.ops.fastreg.sample_indices(20_000, N, seed, offset)
        assert torch.equal(i, sample_indices_torch(20_000, N, seed, offset))
        assert int(i.min()) >= 0 and int(i.max()) < N


@native
@pytest.mark.parametrize("N,bins", [(17, 17), (1000, 1000), (2**31 + 1, 64), (2**32 - 1, 64)])
def test_uniform_native(N, bins):
    for seed in (0, 1, -7):
        assert _chi2_p(torch.ops.fastreg.sample_indices(200_000, N, seed, 5), N, bins) > 1e-4


@native
@pytest.mark.parametrize("dtype", DTYPES)
def test_native_kernels_are_bank_rows(dtype):
    bank = _bank(500, 5, dtype)
    for b in (bank, bank.transpose(1, 2), bank[::3]):  # contiguous and strided
        k, i = OP(b, 777, 5, 11)
        assert k.dtype == dtype and k.is_contiguous() and torch.equal(k, b[i])


@native
def test_native_n0_and_N1():
    k, i = OP(_bank(10, 4, torch.float16), 0, 1, 0)
    assert k.shape == (0, 4, 4) and k.dtype == torch.float16 and i.shape == (0,)
    assert i.dtype == torch.int64
    bank = _bank(1)
    k, i = OP(bank, 1000, -5, 2**62)
    assert (i == 0).all() and torch.equal(k, bank.expand(1000, 3, 3))


@native
def test_native_errors():
    with pytest.raises(RuntimeError, match="3-D"):
        OP(torch.zeros(4, 9), 2, 0, 0)
    with pytest.raises(RuntimeError, match="empty"):
        OP(torch.zeros(0, 3, 3), 2, 0, 0)
    with pytest.raises(RuntimeError, match="n must be >= 0"):
        OP(torch.zeros(4, 3, 3), -1, 0, 0)
    with pytest.raises(RuntimeError, match="offset must be >= 0"):
        OP(torch.zeros(4, 3, 3), 1, 0, -3)
    with pytest.raises(RuntimeError, match="2\\^32 - 1"):
        torch.ops.fastreg.sample_indices(1, 2**32, 0, 0)


@native
def test_public_api_uses_native_and_matches():
    bank = _bank(321)
    a = sample_kernels(bank, 1000, 2**64 - 3, 7, backend="native")  # seed taken mod 2^64
    b = sample_kernels(bank, 1000, -3, 7, backend="torch")
    assert torch.equal(a[1], b[1]) and torch.equal(a[0], b[0])


@native
def test_opcheck_and_autograd():
    torch.library.opcheck(OP, (_bank(20), 9, 4, 2))
    torch.library.opcheck(OP, (_bank(20).requires_grad_(), 9, 4, 2))
    torch.library.opcheck(torch.ops.fastreg.sample_indices.default, (9, 20, 4, 2))
    bank = _bank(20).requires_grad_()
    k, i = OP(bank, 64, 1, 0)
    (k * torch.arange(9.0).view(3, 3)).sum().backward()
    ref = bank.detach().clone().requires_grad_()
    (ref[i] * torch.arange(9.0).view(3, 3)).sum().backward()
    assert torch.equal(bank.grad, ref.grad)


@native
def test_torch_compile_traces_op():
    """The fake kernel lets dynamo/AOT trace the op into one graph (no graph break)."""
    bank = _bank(40, 5)
    fn = torch.compile(lambda b: OP(b, 33, 7, 1)[0] * 2, backend="aot_eager", fullgraph=True)
    assert torch.equal(fn(bank), OP(bank, 33, 7, 1)[0] * 2)


# --------------------------------------------------------------------- CUDA
@native
@pytest.mark.cuda
@pytest.mark.parametrize("n,N,seed,offset", _cases(20) + [(255, 10, 1, 0), (256, 10, 1, 0),
                                                          (257, 10, 1, 0), (100_003, 97, 5, 9)])
def test_cuda_matches_cpu(n, N, seed, offset):
    """CUDA op == native CPU op == the pure-torch stream, each output poisoned first."""
    bank = _bank(N)
    k_ref, i_ref = sample_kernels_torch(bank, n, seed, offset)
    bank_cuda = bank.cuda()          # moved first: the poisoned blocks go to the op's outputs
    _poison(n, bank_cuda)
    k, i = OP(bank_cuda, n, seed, offset)
    _poison(n, bank)
    k_cpu, i_cpu = OP(bank, n, seed, offset)
    assert k.is_cuda and torch.equal(i.cpu(), i_ref) and torch.equal(k.cpu(), k_ref)
    assert torch.equal(i_cpu, i_ref) and torch.equal(k_cpu, k_ref)
    assert torch.equal(sample_kernels_torch(bank.cuda(), n, seed, offset)[1].cpu(), i_ref)


@native
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 2, 3, 4, 7])
def test_cuda_gather_units(dtype, k):
    """Every copy width (16/8/4/2/1 B), incl. a base pointer only 4-byte aligned."""
    bank = _bank(300, k, dtype, "cuda")
    views = [bank, bank.transpose(1, 2)]
    flat = _bank(301 * k * k, 1, dtype, "cuda").view(-1)
    views.append(flat[1:1 + 300 * k * k].view(300, k, k))  # contiguous, storage offset 1
    i_ref = sample_indices_torch(1000, 300, 3, 4)
    for b in views:
        _poison(1000, b)
        kern, i = OP(b, 1000, 3, 4)
        assert torch.equal(i.cpu(), i_ref) and torch.equal(kern, b[i_ref.cuda()])


@native
@pytest.mark.cuda
def test_cuda_gather_matches_torch_at_N_near_2_31():
    N = 2**31 + 1
    bank = _big_bank(N, "cuda")
    i_ref = sample_indices_torch(4096, N, 7, 2**33)
    _poison(4096, bank)
    k, i = OP(bank, 4096, 7, 2**33)
    assert torch.equal(i.cpu(), i_ref) and torch.equal(k.view(-1).cpu(), (i_ref % 251).to(torch.uint8))


@native
@pytest.mark.cuda
@pytest.mark.parametrize("N", BIG_N)
def test_cuda_index_path_big_N(N):
    i = torch.ops.fastreg.sample_indices(50_000, N, 11, 2**35, device="cuda")
    assert i.is_cuda and torch.equal(i.cpu(), torch.ops.fastreg.sample_indices(50_000, N, 11, 2**35))


@native
@pytest.mark.cuda
def test_cuda_grid_stride_past_the_block_cap():
    """n > 2^20 blocks x 256 rows: both kernels loop (grid-stride). The stream is
    counter-based, so slices around the first stride boundary (2^28) and the tail are
    checked against short CPU draws at the matching offsets. ~3.3 GB on the GPU."""
    n, cap, N, seed, off = (1 << 28) + 300, 1 << 28, 1009, 5, 7
    bank = _bank(N, 1, device="cuda")
    _poison(n, bank)
    k, i = OP(bank, n, seed, off)
    for start in (0, cap - 300, n - 600):
        want = torch.ops.fastreg.sample_indices(600, N, seed, off + start)
        assert torch.equal(i[start:start + 600].cpu(), want)
        assert torch.equal(k[start:start + 600].cpu(), bank.cpu()[want])
    del k, i
    j = torch.ops.fastreg.sample_indices(n, N, seed, off, device="cuda")
    for start in (cap - 300, n - 600):
        assert torch.equal(j[start:start + 600].cpu(), torch.ops.fastreg.sample_indices(600, N, seed, off + start))


@native
@pytest.mark.cuda
def test_cuda_n0_errors_and_opcheck():
    k, i = OP(_bank(10, 3, device="cuda"), 0, 1, 0)
    assert k.shape == (0, 3, 3) and i.shape == (0,) and k.is_cuda and i.is_cuda
    with pytest.raises(RuntimeError, match="empty"):
        OP(torch.zeros(0, 3, 3, device="cuda"), 2, 0, 0)
    torch.library.opcheck(OP, (_bank(20, device="cuda"), 9, 4, 2))
    assert _chi2_p(torch.ops.fastreg.sample_indices(200_000, 1000, 3, 0, device="cuda"),
                   1000, 1000) > 1e-4
