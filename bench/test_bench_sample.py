"""Bank sampling: native ``fastreg::sample_kernels`` vs ``bank[torch.randint(...)]``.

``pytest bench/test_bench_sample.py --benchmark-only``. Groups ``sample-n{n}-k{k}``;
on CUDA also ``d2d_copy`` of the same output bytes at n=2^20, k=7, whose time over the
native time is the fraction of copy bandwidth the sampler reaches.
"""
import pytest
import torch

from fastreg.ops import _native

OP = _native.load()
CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
BANK_N = 1_000_000 if CUDA else 100_000  # CPU: short, 2-core machine
NS, KS = [384, 32768, 1_048_576], [3, 5, 7]


def _sync() -> None:
    if CUDA:
        torch.cuda.synchronize()


def _rounds(n: int) -> int:
    return 50 if CUDA else (5 if n > 100_000 else 20)


@pytest.fixture(scope="module")
def banks():
    g = torch.Generator().manual_seed(0)
    return {k: torch.randn(BANK_N, k, k, generator=g).to(DEVICE) for k in KS}


CASES = [pytest.param(n, k, impl, id=f"{impl}-n{n}-k{k}")
         for n in NS for k in KS for impl in ("native", "randint")]
CASES.append(pytest.param(NS[-1], 7, "d2d_copy", id=f"d2d_copy-n{NS[-1]}-k7",
                          marks=pytest.mark.cuda))


@pytest.mark.parametrize("n,k,impl", CASES)
def test_sample(benchmark, banks, n, k, impl):
    if impl == "native" and OP is None:
        pytest.skip("fastreg._C not built")
    bank = banks[k]
    benchmark.group = f"sample-n{n}-k{k}"
    benchmark.extra_info.update(impl=impl, device=DEVICE, bank_n=BANK_N, bytes_out=n * k * k * 4)
    if CUDA:
        benchmark.extra_info["gpu"] = torch.cuda.get_device_name()
    if impl == "native":
        def fn():
            out = OP(bank, n, 1234, 0)[0]
            _sync()
            return out
    elif impl == "randint":
        gen = torch.Generator(device=DEVICE).manual_seed(1234)

        def fn():
            out = bank[torch.randint(BANK_N, (n,), device=DEVICE, generator=gen)]
            _sync()
            return out
    else:  # same output bytes, device to device: the bandwidth roof for the gather
        src = torch.randn(n, k, k, device=DEVICE)
        dst = torch.empty_like(src)

        def fn():
            dst.copy_(src)
            _sync()
            return dst
    out = benchmark.pedantic(fn, rounds=_rounds(n), warmup_rounds=1)
    assert out.shape == (n, k, k)
