"""A Gaussian fitted to bank kernels (DESIGN.md §8): the filter prior behind covariance
initialization (``init_from_bank(kind="cov")``) and the Gaussian-prior penalty (``GaussianPrior``).

The covariance is shrunk toward a multiple of the identity,
``(1 - s) * C + s * (trace(C) / D) * I``: a bank has a few hundred whole filters of
147 (conv1) or 1600 (conv2) numbers, so the sample covariance alone is ill-conditioned
or singular.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .errors import BankError


@dataclass
class Gaussian:
    """Mean ``[D]`` and covariance ``[D, D]`` (float64) with its Cholesky factor."""
    mean: torch.Tensor
    cov: torch.Tensor
    chol: torch.Tensor

    @property
    def dim(self) -> int:
        return int(self.mean.numel())

    def scaled(self, s: float) -> "Gaussian":
        """The law of ``s * x`` for ``x`` from this Gaussian."""
        return Gaussian(self.mean * s, self.cov * s * s, self.chol * abs(s))

    def sample(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """``n`` draws ``[n, D]`` (float64, on the CPU), reproducible from ``gen``."""
        z = torch.randn(n, self.dim, generator=gen, dtype=torch.float64)
        return self.mean + z @ self.chol.T

    def to(self, device: torch.device | str) -> "Gaussian":
        return Gaussian(self.mean.to(device), self.cov.to(device), self.chol.to(device))

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        """Negative log-density of each row of ``x`` ``[B, D]``, computed in float64 (the
        covariance can be ill-conditioned) and differentiable; on this Gaussian's device."""
        d = (x.double() - self.mean).T                                  # [D, B]
        m = torch.linalg.solve_triangular(self.chol, d, upper=False).square().sum(0)
        logdet = 2 * torch.log(torch.diagonal(self.chol)).sum()
        return 0.5 * (m + logdet + self.dim * math.log(2 * math.pi))


def fit_gaussian(x: torch.Tensor, shrink: float, what: str = "kernels") -> Gaussian:
    """Mean and shrunk covariance of the rows of ``x`` ``[N, D]``; refuses a covariance that
    is singular, or nearly (Cholesky pivots spread over more than 1e12), which in practice
    only happens unshrunk."""
    if not 0.0 <= shrink <= 1.0:
        raise BankError(f"shrinkage must be in [0, 1], got {shrink}")
    x = x.detach().double().cpu().reshape(len(x), -1)
    n, d = x.shape
    if n < 2:
        raise BankError(f"fitting a Gaussian to {what} needs at least 2 of them, got {n}")
    mean = x.mean(0)
    xc = x - mean
    cov = xc.T @ xc / (n - 1)
    cov = (1 - shrink) * cov + shrink * (torch.trace(cov) / d) * torch.eye(d, dtype=torch.float64)
    chol, info = torch.linalg.cholesky_ex(cov)
    piv = torch.diagonal(chol).square()         # pivots: their spread bounds the condition number
    if int(info) != 0 or not float(piv.min()) > 1e-12 * float(piv.max()):
        raise BankError(f"the covariance of {n} {what} of {d} numbers is singular; shrink it "
                        f"(shrink > 0, e.g. 0.1)", "shrink")
    return Gaussian(mean, cov, chol)
