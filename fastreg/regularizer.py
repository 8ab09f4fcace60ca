"""Adversarial filter regularizer: DESIGN.md §2 (the seed's Algorithm 1).

Holds {layer: bank kernels}, one discriminator per regularized layer, D's
optimizer and λ. Per training step:

    loss = ce + reg.generator_loss()     # λ · G loss on the current kernels (step 2)
    loss.backward(); opt.step()          # classifier update (step 3)
    reg.discriminator_step()             # D update on real vs the step-2 fake batch (step 4)
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .bank import BankError, KernelBank
from .discriminator import Discriminator
from .models import conv_layers
from .ops import disc_step, resolve_backend, sample_kernels


class _LossWithGrad(torch.autograd.Function):
    """Returns a precomputed loss value whose gradient w.r.t. ``x`` is ``grad``."""

    @staticmethod
    def forward(ctx, x, value, grad):  # type: ignore[override]
        ctx.save_for_backward(grad)
        return value.clone()

    @staticmethod
    def backward(ctx, go):  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        return go * grad, None, None


class AdversarialRegularizer(nn.Module):
    """λ · G-loss on the classifier's kernels, with discriminators trained against a bank.

    ``unit="filter"``: each D judges whole ``C_in×k×k`` filters (one row per output channel)
    instead of 2-D slices; the bank's filters must have the layer's input channels.
    ``lam_decay_steps``: λ falls linearly to 0 over that many steps (None: constant).
    """

    def __init__(self, model: nn.Module, bank: KernelBank, layers: Sequence[str], lam: float = 1.0,
                 hidden: Sequence[int] = (128, 128), norm: str = "batch", loss: str = "ns",
                 lr: float = 2e-4, betas: tuple[float, float] = (0.5, 0.999), backend: str = "auto",
                 lecam: float = 0.0, lecam_decay: float = 0.99, fake_max: int | None = None,
                 seed: int = 0, unit: str = "slice", lam_decay_steps: int | None = None) -> None:
        super().__init__()
        if lam < 0:
            raise ValueError(f"lambda must be >= 0, got {lam}")
        if unit not in ("slice", "filter"):
            raise ValueError(f"unit must be slice or filter, got {unit!r}")
        if len(set(layers)) != len(layers):
            raise ValueError(f"a layer is listed twice: {list(layers)}")
        convs = conv_layers(model)
        self.model_layers = {}
        self.bank_layer: dict[str, str] = {}
        for name in layers:
            if name not in convs:
                raise BankError(f"unknown layer {name!r}; the model has {', '.join(convs)}")
            k = convs[name].kernel_size[0]
            self.bank_layer[name] = bank.layer_for(name, k)
            self.model_layers[name] = convs[name]
            rows = bank.filter_rows(self.bank_layer[name])
            if unit == "filter" and rows != convs[name].in_channels:
                raise BankError(f"whole-filter D on {name}: the bank's {self.bank_layer[name]} filters "
                                f"have {rows} channel(s), the layer has {convs[name].in_channels} inputs")
        self.layers = list(layers)
        self.lam, self.backend, self.seed, self.fake_max = float(lam), backend, int(seed), fake_max
        self.unit, self.lam_decay_steps = unit, lam_decay_steps
        self.lecam, self.lecam_decay = float(lecam), float(lecam_decay)
        self.banks = {n: bank.units(self.bank_layer[n], unit) for n in self.layers}
        chans = {n: self.model_layers[n].in_channels if unit == "filter" else 1 for n in self.layers}
        self.discs = nn.ModuleDict({
            n: Discriminator(self.model_layers[n].kernel_size[0], hidden, norm, loss, channels=chans[n])
            for n in self.layers})
        for n in self.layers:
            self.register_buffer(f"ema_real_{n}", torch.zeros(()))
            self.register_buffer(f"ema_fake_{n}", torch.zeros(()))
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))
        self.opt = torch.optim.Adam(self.discs.parameters(), lr=lr, betas=betas)
        self._pending: dict[str, tuple[torch.Tensor, object]] = {}
        self._stats: dict[str, torch.Tensor] = {}

    def to(self, *args, **kwargs):  # banks are plain tensors: move them too
        super().to(*args, **kwargs)
        dev = next(self.discs.parameters()).device
        self.banks = {n: b.to(dev) for n, b in self.banks.items()}
        return self

    # ---- DESIGN.md §2 step 2 -------------------------------------------------------
    def current_lam(self) -> float:
        """λ at this step: constant, or falling linearly to 0 over ``lam_decay_steps``."""
        if not self.lam_decay_steps:
            return self.lam
        return self.lam * max(0.0, 1.0 - int(self.step) / self.lam_decay_steps)

    def _fake(self, name: str) -> torch.Tensor:
        w = self.model_layers[name].weight
        fake = w.reshape(w.shape[0], -1) if self.unit == "filter" else w.reshape(-1, w.shape[-2], w.shape[-1])
        if self.fake_max and fake.shape[0] > self.fake_max:
            gen = torch.Generator(device="cpu").manual_seed(self.seed * 7919 + int(self.step))
            idx = torch.randperm(fake.shape[0], generator=gen)[: self.fake_max].to(w.device)
            fake = fake[idx]
        return fake

    def generator_loss(self) -> torch.Tensor:
        """λ · Σ_layers G-loss(D(fake)); also stashes the fake pass for ``discriminator_step``."""
        total, lam = None, self.current_lam()
        for name in self.layers:
            fake = self._fake(name)
            x = fake.detach().float()
            want_g = lam > 0 and fake.requires_grad
            out = disc_step(x, self.discs[name], d_target=0.0, g_target=1.0,
                            backend=resolve_backend(self.backend, x.device, self.discs[name]))
            # x may be a view of the weight, which the classifier update (step 3) changes in
            # place; LeCam re-reads the step-2 batch in step 4, so it gets its own copy
            self._pending[name] = (x.clone() if self.lecam > 0 else x, out)
            term = _LossWithGrad.apply(fake, out.g_loss, out.g_grad.to(fake.dtype)) if want_g \
                else out.g_loss
            total = term if total is None else total + term
        return lam * total

    # ---- DESIGN.md §2 step 4 ---------------------------------------------------------
    def discriminator_step(self) -> None:
        """D update on d_loss(real, 1) + d_loss(fake, 0), fake = the batch of step 2."""
        if not self._pending:
            raise RuntimeError("discriminator_step() needs generator_loss() first in the same step")
        step = int(self.step)
        for li, name in enumerate(self.layers):
            fake, out_f = self._pending.pop(name)
            n = fake.shape[0]
            real, _ = sample_kernels(self.banks[name], n, self.seed * 1000 + li, offset=step * n)
            real = real.reshape(n, -1) if self.unit == "filter" else real
            disc = self.discs[name]
            out_r = disc_step(real, disc, d_target=1.0, g_target=None,
                              backend=resolve_backend(self.backend, real.device, disc))
            grads = [gr + gf for gr, gf in zip(out_r.d_grads, out_f.d_grads)]
            if self.lecam > 0:
                grads = [g + lg for g, lg in zip(grads, self._lecam_grads(name, real, fake))]
            for p, g in zip(disc.parameters(), grads):
                p.grad = g
            self._record(name, out_r, out_f)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.step += 1

    def _lecam_grads(self, name: str, real: torch.Tensor, fake: torch.Tensor):
        """LeCam regularizer (Tseng et al., CVPR 2021): pull D(real) toward the EMA of
        D(fake) and vice versa; eager autograd (an optional, off-by-default term)."""
        disc = self.discs[name]
        ema_r, ema_f = getattr(self, f"ema_real_{name}"), getattr(self, f"ema_fake_{name}")
        with torch.enable_grad():
            lr_, lf_ = disc(real), disc(fake)
            reg = self.lecam * ((lr_ - ema_f).square().mean() + (lf_ - ema_r).square().mean())
            grads = torch.autograd.grad(reg, tuple(disc.parameters()))
        d = self.lecam_decay
        ema_r.mul_(d).add_((1 - d) * lr_.detach().mean())
        ema_f.mul_(d).add_((1 - d) * lf_.detach().mean())
        return grads

    # ---- metrics ----------------------------------------------------------------
    def _record(self, name: str, out_r, out_f) -> None:
        vals = torch.stack([out_f.g_loss, out_r.d_loss + out_f.d_loss,
                            (out_r.logits > 0).float().mean(), (out_f.logits < 0).float().mean(),
                            torch.ones((), device=out_r.logits.device)])
        self._stats[name] = self._stats[name] + vals if name in self._stats else vals

    def pop_stats(self) -> dict[str, float]:
        """Means since the last call: g_loss, d_loss, d_acc_real, d_acc_fake (per layer and overall)."""
        keys = ("g_loss", "d_loss", "d_acc_real", "d_acc_fake")
        out: dict[str, float] = {}
        tot = None
        for name, v in self._stats.items():
            v = v.detach().cpu()
            for i, k in enumerate(keys):
                out[f"{k}/{name}"] = float(v[i] / v[4])
            tot = v if tot is None else tot + v
        if tot is not None:
            nl = len(self._stats)
            for i, k in enumerate(keys):
                out[k] = float(tot[i] / tot[4]) * (nl if k in ("g_loss", "d_loss") else 1.0)
        self._stats = {}
        return out

    # ---- checkpoint -------------------------------------------------------------
    def checkpoint_state(self) -> dict:
        return {"module": self.state_dict(), "opt": self.opt.state_dict()}

    def load_checkpoint_state(self, state: dict) -> None:
        self.load_state_dict(state["module"])
        self.opt.load_state_dict(state["opt"])
