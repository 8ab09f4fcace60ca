"""The Deep Weight Prior's own kernel VAE (DESIGN.md §15): convolutional encoder and decoder for
7×7 or 5×5 kernels, the decoder's variance a function of z. fastreg's ``KernelVAE`` is an MLP
with one variance per number; this twin exists so that the paper's trained VAEs (converted
once by ``docs/scripts/import_dwp_vae.py``) can serve as the prior and the init, to tell a
difference of VAE from a difference of everything else. Same interface as ``KernelVAE``:
``elbo``, ``sample``, ``z_dim``, ``dim``, ``describe``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

FORMAT = "fastreg-conv-vae/1"


def _stack(*mods: nn.Module) -> nn.Sequential:
    """Each module followed by an ELU, as DWP's layers are."""
    out = []
    for m in mods:
        out += [m, nn.ELU()]
    return nn.Sequential(*out)


class ConvKernelVAE(nn.Module):
    """r(z|w) = N(mu(w), var(w)), p(z) = N(0, I), p(w|z) = N(m(z), v(z)) per number; the layer
    sizes of DWP's ``Encoder7x7``/``Decoder7x7`` (``hidden`` 32 there) and ``Encoder5x5``/
    ``Decoder5x5`` (64). The kernels are modelled in their own units (no standardization)."""

    def __init__(self, kernel_size: int, hidden: int, z_dim: int) -> None:
        super().__init__()
        k, h = int(kernel_size), int(hidden)
        if k == 7:
            self.enc = _stack(nn.Conv2d(1, h, 3), nn.Conv2d(h, 2 * h, 3), nn.Conv2d(2 * h, 2 * h, 3))
            self.dec = _stack(nn.ConvTranspose2d(z_dim, 2 * h, 3), nn.ConvTranspose2d(2 * h, 2 * h, 3),
                              nn.ConvTranspose2d(2 * h, h, 3))
        elif k == 5:
            self.enc = _stack(nn.Conv2d(1, h, 3, padding=1), nn.Conv2d(h, h, 3, padding=1), nn.Conv2d(h, 2 * h, 3),
                              nn.Conv2d(2 * h, 2 * h, 3))
            self.dec = _stack(nn.Conv2d(z_dim, 2 * h, 1), nn.ConvTranspose2d(2 * h, 2 * h, 3),
                              nn.ConvTranspose2d(2 * h, 2 * h, 3), nn.Conv2d(2 * h, h, 1))
        else:
            raise ValueError(f"the DWP convolutional VAE exists for 7x7 and 5x5 kernels, not {k}x{k}")
        self.enc_mu, self.enc_var = nn.Conv2d(2 * h, z_dim, 1), nn.Conv2d(2 * h, z_dim, 1)
        self.dec_mu, self.dec_var = nn.Conv2d(h, 1, 1), nn.Conv2d(h, 1, 1)
        self.kernel_size, self.hidden, self.z_dim, self.dim = k, h, int(z_dim), k * k

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Kernels ``[B, k·k]`` → the mean and variance of r(z|w), ``[B, z_dim]`` each."""
        f = self.enc(x.reshape(-1, 1, self.kernel_size, self.kernel_size))
        return self.enc_mu(f).flatten(1), F.softplus(self.enc_var(f)).flatten(1)

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``z`` ``[B, z_dim]`` → the mean and variance of p(w|z), ``[B, k·k]`` each."""
        f = self.dec(z.reshape(len(z), self.z_dim, 1, 1))
        return self.dec_mu(f).flatten(1), F.softplus(self.dec_var(f)).flatten(1)

    def elbo(self, w: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
        """Per-row ELBO of kernels ``w`` ``[B, k·k]``, one reparametrized z per row (``eps``)."""
        mu, var = self.encode(w)
        eps = torch.randn_like(mu) if eps is None else eps
        m, v = self.decode(mu + var.sqrt() * eps)
        log_pw = -0.5 * ((w - m) ** 2 / v + v.log() + math.log(2 * math.pi)).sum(-1)
        kl = 0.5 * (mu ** 2 + var - 1 - var.log()).sum(-1)
        return log_pw - kl

    @torch.no_grad()
    def sample(self, n: int, gen: torch.Generator | None = None, mean: bool = False) -> torch.Tensor:
        """``n`` kernels ``[n, k·k]``: z ~ N(0, I), then the decoder's mean (``mean``) or a draw."""
        like = self.dec_mu.weight        # its device and dtype
        m, v = self.decode(torch.randn(n, self.z_dim, generator=gen).to(like))
        return m if mean else m + v.sqrt() * torch.randn(m.shape, generator=gen).to(like)

    def describe(self) -> dict:
        return {"kernel_size": self.kernel_size, "hidden": self.hidden, "z_dim": self.z_dim, "dim": self.dim}
