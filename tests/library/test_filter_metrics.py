"""Filter-quality metrics: structured kernels (synthetic and real DWP) vs. Gaussian noise."""
from pathlib import Path

import numpy as np
import pytest
import torch

from fastreg.filter_metrics import (group_halves, judge_auc, low_freq_energy, mmd_rbf, normalize_kernels,
                                    roc_auc, total_variation)
from helpers import smooth_kernels

# Optional real-data checks: trained kernels of the Deep Weight Prior code, beside the checkout
# where this project's machines keep shared data; the synthetic checks need no data.
DWP = Path(__file__).resolve().parents[3] / "shared" / "data" / "dwp-notmnist-kernels"


def _noise(n: int, k: int = 7, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, k, k, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def dwp():
    if not (DWP / "conv7x7_train.npy").exists():
        pytest.skip(f"DWP kernels not found at {DWP}")
    load = lambda s: torch.from_numpy(np.load(DWP / f"conv7x7_{s}.npy", allow_pickle=False))[:, 0]  # noqa: E731
    return load("train"), load("test")


def test_roc_auc_matches_pairwise_count_with_ties():
    rng = np.random.default_rng(0)
    pos, neg = rng.integers(0, 5, 40).astype(float), rng.integers(0, 4, 30).astype(float)
    brute = np.mean([(p > q) + 0.5 * (p == q) for p in pos for q in neg])
    assert roc_auc(pos, neg) == pytest.approx(brute, abs=1e-12)
    assert roc_auc([1, 1], [1, 1]) == 0.5 and roc_auc([3, 4], [1, 2]) == 1.0 and roc_auc([1], [2]) == 0.0
    with pytest.raises(ValueError):
        roc_auc([], [1.0])


def test_normalization_is_per_kernel_and_scale_free():
    k = smooth_kernels(50, 7)
    z = normalize_kernels(k * 7 + 3)
    assert torch.allclose(z.mean(1), torch.zeros(50, dtype=z.dtype), atol=1e-9)
    assert torch.allclose(z.norm(dim=1), torch.ones(50, dtype=z.dtype))
    assert torch.isfinite(normalize_kernels(torch.ones(3, 7, 7))).all()
    b = smooth_kernels(300, 7, seed=5)
    assert mmd_rbf(k * 10, b) == pytest.approx(mmd_rbf(k, b), rel=1e-6)


def test_judge_auc_synthetic():
    bank = smooth_kernels(600, 7)
    assert judge_auc(_noise(300), bank, seed=0) > 0.95
    held = smooth_kernels(300, 7, seed=3)
    assert 0.35 < judge_auc(held, bank, seed=0) < 0.65
    assert judge_auc(held, bank, seed=1) == judge_auc(held, bank, seed=1)   # deterministic


def test_judge_auc_real_dwp_kernels(dwp):
    train, test = dwp
    assert judge_auc(_noise(400), train, seed=0) > 0.95
    assert 0.35 < judge_auc(test, train, seed=0) < 0.65


def test_mmd_larger_for_noise_synthetic():
    sm = smooth_kernels(400, 7)
    assert mmd_rbf(_noise(400), sm) > 20 * abs(mmd_rbf(smooth_kernels(400, 7, seed=9), sm))


def test_mmd_larger_for_noise_real_dwp_kernels(dwp):
    train, test = dwp
    same, noise = mmd_rbf(test, train), mmd_rbf(_noise(443), train)
    assert noise > 0.01 and noise > 20 * abs(same)


def test_low_freq_energy_synthetic():
    noise = low_freq_energy(_noise(2000))
    assert noise == pytest.approx(8 / 48, abs=0.02)     # white noise: share of low-frequency bins
    assert low_freq_energy(smooth_kernels(500, 7)) > noise + 0.1
    k = smooth_kernels(20, 7)
    assert low_freq_energy(k + 5.0) == pytest.approx(low_freq_energy(k), abs=1e-5)   # DC removed
    with pytest.raises(ValueError):
        low_freq_energy(torch.ones(4, 7, 7))


def test_low_freq_energy_real_dwp_kernels(dwp):
    assert low_freq_energy(dwp[0]) > low_freq_energy(_noise(2000)) + 0.2


def test_group_halves_keep_filters_whole():
    g = torch.Generator().manual_seed(0)
    tr, te = group_halves(300, 3, 120, g)
    assert len(tr) == len(te) == 60 and not set(tr.tolist()) & set(te.tolist())
    for half in (tr, te):                            # runs of 3q, 3q+1, 3q+2
        r = half.reshape(-1, 3)
        assert (r[:, 0] % 3 == 0).all() and torch.equal(r - r[:, :1], torch.arange(3).expand(len(r), 3))
    tr, te = group_halves(301, 3, 1000, g)          # 3 does not divide 301: rows, all of them
    assert sorted(tr.tolist() + te.tolist()) == list(range(301))


def test_judge_split_by_filter_does_not_leak():
    """Two sets from ONE distribution whose filters are three identical slices: split by
    slice, the judge memorizes the twins of its test kernels (AUC far above 0.5); split by
    filter it cannot."""
    g = torch.Generator().manual_seed(0)

    def triples(n):
        return torch.randn(n, 1, 7, 7, generator=g).expand(n, 3, 7, 7).reshape(-1, 7, 7).clone()
    a, b = triples(160), triples(160)
    assert judge_auc(a, b, seed=0) > 0.8
    assert 0.35 < judge_auc(a, b, seed=0, group_learned=3, group_bank=3) < 0.65


def test_total_variation_noise_vs_smooth():
    noise = total_variation(_noise(4000))
    assert noise == pytest.approx(2 / np.pi ** 0.5, rel=0.03)        # E|a - b|, a, b ~ N(0, 1)
    blurred = torch.nn.functional.avg_pool2d(_noise(500, 9)[:, None], 3, 1)[:, 0]     # 7x7, smooth
    assert total_variation(blurred) < 0.7 * noise
    smooth = smooth_kernels(500, 7)
    assert total_variation(smooth) < 0.85 * noise
    assert total_variation(smooth * 9 + 4) == pytest.approx(total_variation(smooth), rel=1e-9)   # scale-free
    ramp = torch.arange(7.0).expand(7, 7)[None]
    assert total_variation(ramp) == pytest.approx(total_variation(ramp.transpose(1, 2)))
    with pytest.raises(ValueError):
        total_variation(torch.ones(3, 5, 5))
