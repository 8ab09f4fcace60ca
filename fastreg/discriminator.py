"""The kernel discriminator D of DESIGN.md §3: normalization + a small MLP, one logit per kernel
(a 2-D ``k×k`` slice, or with ``channels=C`` a whole ``C×k×k`` filter)."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("batch", "kernel")
LOSSES = ("ns", "hinge")


class Discriminator(nn.Module):
    """Scores flattened ``k×k`` kernels (``channels`` × ``k×k`` whole filters when
    ``channels > 1``); high logit = looks like the bank.

    ``parameters()`` order is fixed by DESIGN.md §3: ``gamma, beta`` (batch norm
    only), then ``weight, bias`` of each linear layer from input to output.
    """

    def __init__(self, kernel_size: int = 7, hidden: Sequence[int] = (128, 128),
                 norm: str = "batch", loss: str = "ns", slope: float = 0.2,
                 eps: float = 1e-5, channels: int = 1) -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        if int(kernel_size) < 1:
            raise ValueError(f"kernel_size must be >= 1, got {kernel_size}")
        if int(channels) < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        hidden = tuple(int(h) for h in hidden)
        if not hidden or any(h < 1 for h in hidden):
            raise ValueError(f"hidden must be a non-empty tuple of positive widths, got {hidden}")
        self.kernel_size = int(kernel_size)
        self.channels = int(channels)
        self.dim = self.channels * self.kernel_size ** 2
        self.hidden = hidden
        self.norm = norm
        self.loss = loss
        self.slope = float(slope)
        self.eps = float(eps)
        if norm == "batch":
            self.gamma = nn.Parameter(torch.ones(self.dim))
            self.beta = nn.Parameter(torch.zeros(self.dim))
        widths = (self.dim, *hidden, 1)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], -1)
        if self.norm == "batch":
            mu = x.mean(0, keepdim=True)
            var = (x - mu).square().mean(0, keepdim=True)
            return self.gamma * (x - mu) / torch.sqrt(var + self.eps) + self.beta
        mu = x.mean(1, keepdim=True)
        var = (x - mu).square().mean(1, keepdim=True)
        return (x - mu) / torch.sqrt(var + self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B]`` for kernels ``[B, k, k]``, filters ``[B, C, k, k]`` or flat rows
        ``[B, dim]`` (autograd-friendly)."""
        h = self.normalize(x)
        for layer in self.layers[:-1]:
            h = F.leaky_relu(layer(h), self.slope)
        return self.layers[-1](h).squeeze(1)
