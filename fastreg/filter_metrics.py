"""Filter-quality metrics that do not reuse the training discriminator.

The training D is a party to the game (the classifier was optimized against it), so its
scores say little about whether the learned kernels really look like the bank. These
metrics are computed after the fact, from the kernels alone:

- ``judge_auc``: a fresh classifier trained to tell bank kernels from learned ones;
  ROC AUC on held-out kernels (0.5 = indistinguishable, 1 = trivially separable).
- ``mmd_rbf``: kernel two-sample statistic (MMD², RBF kernel, median-heuristic bandwidth).
- ``low_freq_energy``: share of spectral energy at low spatial frequencies (bank-free).
- ``total_variation``: mean absolute difference of neighbouring pixels (bank-free smoothness).

All shape comparisons use per-kernel normalized kernels (zero mean, unit L2 norm): a
kernel's scale depends on init, weight decay and BatchNorm, not on its structure.
"""
from __future__ import annotations

import numpy as np
import torch


def normalize_kernels(k: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``[N, k, k]`` (or ``[N, D]``) → ``[N, D]`` float64, each row zero mean and unit norm.

    Why: compares kernel *shapes*; all-constant kernels map to zero rather than NaN."""
    x = torch.as_tensor(k).detach().double().cpu().reshape(len(k), -1)
    x = x - x.mean(1, keepdim=True)
    return x / x.norm(dim=1, keepdim=True).clamp_min(eps)


def roc_auc(scores_pos: np.ndarray, scores_neg: np.ndarray) -> float:
    """ROC AUC = P(score_pos > score_neg) + ½ P(tie), from average ranks (Mann–Whitney U).

    Why our own: no sklearn dependency; ties get the average rank, so equal scores give 0.5."""
    pos, neg = np.asarray(scores_pos, np.float64).ravel(), np.asarray(scores_neg, np.float64).ravel()
    if pos.size == 0 or neg.size == 0:
        raise ValueError("roc_auc needs at least one positive and one negative score")
    s = np.concatenate([pos, neg])
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(s.size, np.float64)
    sorted_s = s[order]
    i = 0
    while i < s.size:                           # average 1-based rank over each run of ties
        j = i
        while j + 1 < s.size and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    u = ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2
    return float(u / (pos.size * neg.size))


def group_halves(n: int, group: int, max_n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Row indices of two disjoint random halves of at most ``max_n`` rows, keeping each run of
    ``group`` consecutive rows (the 2-D slices of one filter) on one side.

    Why: the RGB slices of one filter are alike; split across train and test they would
    leak. ``group`` falls back to 1 when it does not divide ``n`` or leaves < 2 groups."""
    g = group if group >= 1 and n % group == 0 and n // group >= 2 else 1
    perm = torch.randperm(n // g, generator=gen)[: max(2, max_n // g)]
    h = len(perm) // 2
    rows = lambda p: (p[:, None] * g + torch.arange(g)).reshape(-1)  # noqa: E731
    return rows(perm[:h]), rows(perm[h:])


def judge_auc(learned: torch.Tensor, bank: torch.Tensor, seed: int = 0, hidden: int = 64,
              steps: int = 300, max_n: int = 1000, group_learned: int = 1, group_bank: int = 1) -> float:
    """Held-out ROC AUC of a fresh MLP judge separating ``bank`` (positive) from ``learned``.

    Why: a post-hoc discriminator that never played the training game; it sees per-kernel
    normalized kernels (unlike the training D's batch norm), trains on half of each set
    (classes balanced by loss weighting) and is scored on the other half. 0.5 means the
    judge cannot tell them apart; near 1 means the learned kernels are clearly not bank-like.
    Both sets are subsampled to about ``max_n`` kernels, split by whole filters (``group_*``
    consecutive rows, see ``group_halves``); deterministic given ``seed``.
    """
    if len(learned) < 4 or len(bank) < 4:
        raise ValueError("judge_auc needs at least 4 kernels in each set")
    gen = torch.Generator().manual_seed(int(seed))
    a, b = normalize_kernels(learned).float(), normalize_kernels(bank).float()
    atr, ate = group_halves(len(a), group_learned, max_n, gen)
    btr, bte = group_halves(len(b), group_bank, max_n, gen)
    x = torch.cat([b[btr], a[atr]])
    y = torch.cat([torch.ones(len(btr)), torch.zeros(len(atr))])
    w = torch.where(y > 0, 0.5 / len(btr), 0.5 / len(atr))        # balanced classes
    d = x.shape[1]
    w1 = (torch.randn(d, hidden, generator=gen) / d ** 0.5).requires_grad_(True)
    b1 = torch.zeros(hidden, requires_grad=True)
    w2 = (torch.randn(hidden, generator=gen) / hidden ** 0.5).requires_grad_(True)
    b2 = torch.zeros((), requires_grad=True)
    params = [w1, b1, w2, b2]

    def f(z: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.leaky_relu(z @ w1 + b1, 0.2) @ w2 + b2

    opt = torch.optim.Adam(params, lr=1e-2, weight_decay=1e-4)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)      # tiny matrices: extra threads only add overhead (10x on a busy CPU)
    try:
        with torch.enable_grad():
            for _ in range(steps):
                loss = (w * torch.nn.functional.binary_cross_entropy_with_logits(f(x), y, reduction="none")).sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
        with torch.no_grad():
            return roc_auc(f(b[bte]).numpy(), f(a[ate]).numpy())
    finally:
        torch.set_num_threads(threads)


def mmd_rbf(a: torch.Tensor, b: torch.Tensor, max_n: int = 1500, seed: int = 0) -> float:
    """Unbiased MMD² between two kernel sets, RBF kernel, median-heuristic bandwidth.

    Why: a judge-free two-sample distance on normalized kernels; ≈ 0 (may be slightly
    negative: unbiased estimator) for the same distribution, larger = more different.
    Bandwidth: σ² = median of pooled pairwise squared distances / 2, i.e.
    k(x, y) = exp(-‖x-y‖² / median). Sets are subsampled to ``max_n`` (seeded).
    """
    gen = torch.Generator().manual_seed(int(seed))
    x = normalize_kernels(a)[torch.randperm(len(a), generator=gen)[:max_n]]
    y = normalize_kernels(b)[torch.randperm(len(b), generator=gen)[:max_n]]
    if len(x) < 2 or len(y) < 2:
        raise ValueError("mmd_rbf needs at least 2 kernels in each set")
    z = torch.cat([x, y])
    d2 = torch.cdist(z, z).square()
    off = d2[~torch.eye(len(z), dtype=torch.bool)]
    med = float(off.median())
    k = torch.exp(-d2 / max(med, 1e-12))
    n, m = len(x), len(y)
    kxx, kyy, kxy = k[:n, :n], k[n:, n:], k[:n, n:]
    mmd = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1)) \
        + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1)) - 2 * kxy.mean()
    return float(mmd)


def low_freq_energy(kernels: torch.Tensor, cutoff: float = 0.25) -> float:
    """Mean over kernels of the share of 2-D spectral energy (|FFT|²) at radial frequency
    ≤ ``cutoff`` cycles/pixel (Nyquist = 0.5), **DC removed**.

    Why: trained first-layer filters are smooth (edges, blobs, low-frequency gratings);
    small-data filters are close to white noise, whose energy is spread evenly over all
    frequencies (for 7×7 and cutoff 0.25: 8 of the 48 non-DC bins, ≈ 0.17). The DC term is
    removed (kernel mean subtracted) because it only measures the kernel's mean response,
    and would make any offset kernel look 'smooth'. Kernels with no non-DC energy are skipped.
    """
    x = torch.as_tensor(kernels).detach().double().cpu()
    if x.dim() != 3 or x.shape[0] == 0:
        raise ValueError(f"low_freq_energy expects [N, k, k] kernels, got {tuple(x.shape)}")
    x = x - x.mean((1, 2), keepdim=True)
    p = torch.fft.fft2(x).abs().square()
    fy = torch.fft.fftfreq(x.shape[1], dtype=torch.float64)
    fx = torch.fft.fftfreq(x.shape[2], dtype=torch.float64)
    low = (fy[:, None].square() + fx[None, :].square()).sqrt() <= cutoff
    low[0, 0] = False
    tot = p.sum((1, 2))
    ok = tot > 1e-20 * tot.max().clamp_min(1e-300)
    if not bool(ok.any()):
        raise ValueError("low_freq_energy: every kernel is constant")
    return float(((p * low).sum((1, 2))[ok] / tot[ok]).mean())


def total_variation(kernels: torch.Tensor) -> float:
    """Mean absolute difference between horizontally and vertically neighbouring pixels of
    each kernel, the kernel first scaled to zero mean and unit RMS; averaged over kernels.

    Why: a scale-free smoothness measure beside the spectrum. White noise reads about 1.13
    (E|a - b| for two unit normals is 2/sqrt(pi)); smooth, structured filters read far lower.
    Constant kernels are skipped."""
    x = torch.as_tensor(kernels).detach().double().cpu()
    if x.dim() != 3 or x.shape[0] == 0 or min(x.shape[1:]) < 2:
        raise ValueError(f"total_variation expects [N, k, k] kernels with k >= 2, got {tuple(x.shape)}")
    x = x - x.mean((1, 2), keepdim=True)
    rms = x.square().mean((1, 2)).sqrt()
    ok = rms > 1e-12 * rms.max().clamp_min(1e-300)
    if not bool(ok.any()):
        raise ValueError("total_variation: every kernel is constant")
    x = x[ok] / rms[ok, None, None]
    tv = (x[:, 1:] - x[:, :-1]).abs().mean((1, 2)) + (x[:, :, 1:] - x[:, :, :-1]).abs().mean((1, 2))
    return float((tv / 2).mean())
