"""Adversarial filter regularizer: DESIGN.md §2 (the seed's Algorithm 1).

Holds {layer: bank kernels}, one discriminator per regularized layer, D's
optimizer and λ. Per training step:

    loss = ce + reg.generator_loss()     # λ · G loss on the current kernels (step 2)
    loss.backward(); opt.step()          # classifier update (step 3)
    reg.discriminator_step()             # D update on real vs the step-2 fake batch (step 4)
"""
from __future__ import annotations

import sys
from typing import Mapping, Sequence

import torch
from torch import nn

from .bank import BankError, KernelBank, fallback_note
from .discriminator import Discriminator
from .distributed import Dist, all_reduce_, broadcast_
from .layers import LAYER_WEIGHTS, conv_layers, key, select_layers
from .ops import disc_step, resolve_backend, sample_kernels


SHARES = ("layer", "size")   # one D per layer, or one per kernel size
AUTO_ROWS = 16384            # fake_max="auto": all kernels up to this many per step, in all
RANK_STRIDE = 1_000_003      # real-batch seed offset per data-parallel rank (rank 0: none)



def resolve_fake_max(model: nn.Module, layers: Sequence[str], unit: str,
                     fake_max: int | str | None) -> int | None:
    """``fake_max="auto"`` as a number: None (every kernel) while the layers hold at most
    AUTO_ROWS rows in all, else an equal share of AUTO_ROWS per layer; other values as given."""
    if fake_max != "auto":
        return fake_max
    convs = conv_layers(model)
    rows = sum(convs[n].weight.shape[0] * (1 if unit == "filter" else convs[n].weight.shape[1])
               for n in layers if n in convs)
    return None if rows <= AUTO_ROWS else max(2, AUTO_ROWS // len(layers))

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

    ``layers``: full module names (any ``nn.Module``), or one selector string such as
    ``"conv1"``, ``"layer*.*.conv1"``, ``"k3"`` or ``"all"`` (see ``fastreg.layers``).
    ``lam``: the weight of the G-loss, shared by the layers (``layer_weights="mean"``, each layer
    ``lam / L``, so it means the same for 1 layer or 50) or given to each (``"sum"``).
    ``unit="filter"``: each D judges whole ``C_in×k×k`` filters (one row per output channel)
    instead of 2-D slices, where the bank has filters of the layer's input channels (a
    depthwise layer's filters are single kernels); elsewhere slices, said on stderr.
    ``share="size"``: one D per kernel size, judging all those layers' kernels in one batch
    (against their pooled bank layers), instead of one D per layer (``"layer"``).
    ``fake_max``: at most this many kernels (rows) of a layer per step, drawn at random;
    ``"auto"``: all of them while the layers hold at most AUTO_ROWS in all (DWPNet's conv1 and
    conv2), else an equal share of AUTO_ROWS per layer (every 3×3 conv of a ResNet-18).
    ``lam_decay_steps``: λ falls linearly to 0 over that many steps (None: constant).
    ``bank_map``: classifier layer → bank layers, overriding ``KernelBank.source``.
    """

    def __init__(self, model: nn.Module, bank: KernelBank, layers: Sequence[str] | str, lam: float = 1.0,
                 hidden: Sequence[int] = (128, 128), norm: str = "batch", loss: str = "ns",
                 lr: float = 2e-4, betas: tuple[float, float] = (0.5, 0.999), backend: str = "auto",
                 lecam: float = 0.0, lecam_decay: float = 0.99, fake_max: int | str | None = "auto",
                 seed: int = 0, unit: str = "slice", lam_decay_steps: int | None = None,
                 share: str = "layer", bank_map: Mapping[str, Sequence[str]] | None = None,
                 layer_weights: str = "mean") -> None:
        super().__init__()
        if layer_weights not in LAYER_WEIGHTS:
            raise ValueError(f"layer_weights must be one of {LAYER_WEIGHTS}, got {layer_weights!r}")
        if lam < 0:
            raise ValueError(f"lambda must be >= 0, got {lam}")
        if unit not in ("slice", "filter"):
            raise ValueError(f"unit must be slice or filter, got {unit!r}")
        if share not in SHARES:
            raise ValueError(f"share must be one of {SHARES}, got {share!r}")
        if isinstance(layers, str):          # a selector: "conv1", "layer*.*.conv1", "k3", "all"
            layers = select_layers(model, layers, bank.kernel_sizes(), bank_map or {}, "adversarial term")
        if len(set(layers)) != len(layers):
            raise ValueError(f"a layer is listed twice: {list(layers)}")
        convs = conv_layers(model)
        fake_max = resolve_fake_max(model, layers, unit, fake_max)
        if fake_max is not None and (isinstance(fake_max, str) or fake_max < 2):
            raise ValueError(f"fake_max must be 'auto', None or >= 2 (batch norm needs two kernels), "
                             f"got {fake_max!r}")
        self.model_layers: dict[str, nn.Conv2d] = {}
        self.groups: dict[str, list[str]] = {}        # D's name → the layers it judges
        self.units: dict[str, str] = {}               # layer → what its D judges (filter | slice)
        sources: dict[str, list[str]] = {}
        bank_units: dict[str, str] = {}
        notes = []
        for name in layers:
            if name not in convs:
                raise BankError(f"unknown layer {name!r}; the model has {', '.join(convs)}")
            conv = convs[name]
            k, c = conv.kernel_size[0], conv.weight.shape[1]
            draw = bank.plan(name, conv.weight.shape, unit, bank_map)
            notes += [draw.fallback] if draw.fallback else []
            self.units[name] = draw.unit
            group = name if share == "layer" else f"k{k}" + (f"c{c}" if draw.unit == "filter" else "")
            self.groups.setdefault(group, []).append(name)
            sources.setdefault(group, [])
            sources[group] += [n for n in draw.src if n not in sources[group]]
            bank_units[group] = draw.bank_unit
            self.model_layers[name] = conv
        if notes:
            sys.stderr.write(fallback_note(notes, "whole-filter discriminator"))
        self.layers = list(layers)
        self.lam, self.backend, self.seed, self.fake_max = float(lam), backend, int(seed), fake_max
        self.unit, self.share, self.lam_decay_steps = unit, share, lam_decay_steps
        self.layer_weights = layer_weights
        self.lecam, self.lecam_decay = float(lecam), float(lecam_decay)
        self.discs = nn.ModuleDict()
        for g, names in self.groups.items():
            conv = self.model_layers[names[0]]
            whole = self.units[names[0]] == "filter"
            self.discs[key(g)] = Discriminator(conv.kernel_size[0], hidden, norm, loss,
                                               channels=conv.weight.shape[1] if whole else 1)
            # the bank moves with .to() / .cuda() like any buffer; not saved in checkpoints
            self.register_buffer(f"bank_{key(g)}", bank.units(sources[g], bank_units[g]), persistent=False)
            self.register_buffer(f"ema_real_{key(g)}", torch.zeros(()))
            self.register_buffer(f"ema_fake_{key(g)}", torch.zeros(()))
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))
        self.opt = torch.optim.Adam(self.discs.parameters(), lr=lr, betas=betas)
        self._pending: dict[str, tuple[torch.Tensor, object]] = {}
        self._stats: dict[str, torch.Tensor] = {}
        self.dist = Dist()

    def trained_parameters(self) -> list[nn.Parameter]:
        """The discriminators' parameters (data-parallel ranks keep them identical)."""
        return list(self.discs.parameters())

    def distribute(self, dist: Dist) -> "AdversarialRegularizer":
        """Data-parallel training (DESIGN.md §10): every rank starts from rank 0's D, draws its
        own real kernels, and D's gradients are averaged over the ranks every step."""
        self.dist = dist
        broadcast_([p.data for p in self.discs.parameters()], dist)
        return self

    @property
    def banks(self) -> dict[str, torch.Tensor]:
        """D's name → the bank kernels it draws its real batches from."""
        return {g: getattr(self, f"bank_{key(g)}") for g in self.groups}

    def disc(self, group: str) -> Discriminator:
        return self.discs[key(group)]

    # ---- DESIGN.md §2 step 2 -------------------------------------------------------
    def current_lam(self) -> float:
        """λ at this step: constant, or falling linearly to 0 over ``lam_decay_steps``."""
        if not self.lam_decay_steps:
            return self.lam
        return self.lam * max(0.0, 1.0 - int(self.step) / self.lam_decay_steps)

    def relink(self, model: nn.Module) -> None:
        """Judge the convs ``model`` holds now: after a conv module is replaced (``to_bayes``
        swaps in Bayesian convs), the term would otherwise keep judging the old, frozen kernels."""
        convs = conv_layers(model)
        for name in self.layers:
            if name not in convs or convs[name].weight.shape != self.model_layers[name].weight.shape:
                raise ValueError(f"layer {name} is gone from the model or changed shape")
            self.model_layers[name] = convs[name]

    def _fake(self, name: str, li: int) -> torch.Tensor:
        w = self.model_layers[name].weight
        fake = w.reshape(w.shape[0], -1) if self.units[name] == "filter" else w.reshape(-1, w.shape[-2], w.shape[-1])
        if self.fake_max and fake.shape[0] > self.fake_max:
            gen = torch.Generator(device="cpu").manual_seed(self.seed * 7919 + int(self.step) + 104729 * li)
            idx = torch.randperm(fake.shape[0], generator=gen)[: self.fake_max].to(w.device)
            fake = fake[idx]
        return fake

    def weight_of(self, group: str) -> float:
        """The share of λ a D's G-loss gets: its layers' share of all layers (``"mean"``: λ
        means the same for 1 layer or 50), or 1 (``"sum"``, as settings version 1 weighed them)."""
        return len(self.groups[group]) / len(self.layers) if self.layer_weights == "mean" else 1.0

    def generator_loss(self) -> torch.Tensor:
        """λ · Σ_D w_D · G-loss(D(fake)), ``w_D`` from ``weight_of``; also stashes the fake pass
        for ``discriminator_step``.

        A D judging several layers sees their kernels as one batch; each layer gets its rows'
        share of the G gradient."""
        total, lam = None, self.current_lam()
        for g, names in self.groups.items():
            fakes = [self._fake(n, self.layers.index(n)) for n in names]
            x = (fakes[0] if len(fakes) == 1 else torch.cat(fakes)).detach().float()
            want_g = lam > 0 and fakes[0].requires_grad
            disc = self.disc(g)
            out = disc_step(x, disc, d_target=0.0, g_target=1.0,
                            backend=resolve_backend(self.backend, x.device, disc))
            # x may be a view of the weight, which the classifier update (step 3) changes in
            # place; LeCam re-reads the step-2 batch in step 4, so it gets its own copy
            self._pending[g] = (x.clone() if self.lecam > 0 else x, out)
            if want_g:
                grads = out.g_grad.split([len(f) for f in fakes])
                term = sum(_LossWithGrad.apply(f, out.g_loss / len(fakes), gr.to(f.dtype))
                           for f, gr in zip(fakes, grads))
            else:
                term = out.g_loss
            w = self.weight_of(g)
            term = term * w if w != 1.0 else term
            total = term if total is None else total + term
        return lam * total

    # ---- DESIGN.md §2 step 4 ---------------------------------------------------------
    def discriminator_step(self) -> None:
        """D update on d_loss(real, 1) + d_loss(fake, 0), fake = the batch of step 2."""
        if not self._pending:
            raise RuntimeError("discriminator_step() needs generator_loss() first in the same step")
        step = int(self.step)
        for gi, g in enumerate(self.groups):
            fake, out_f = self._pending.pop(g)
            n = fake.shape[0]
            real, _ = sample_kernels(self.banks[g], n, self.seed * 1000 + gi + RANK_STRIDE * self.dist.rank,
                                     offset=step * n)
            real = real.reshape(n, -1) if self.units[self.groups[g][0]] == "filter" else real
            disc = self.disc(g)
            out_r = disc_step(real, disc, d_target=1.0, g_target=None,
                              backend=resolve_backend(self.backend, real.device, disc))
            grads = [gr + gf for gr, gf in zip(out_r.d_grads, out_f.d_grads)]
            if self.lecam > 0:
                grads = [gr + lg for gr, lg in zip(grads, self._lecam_grads(g, real, fake))]
            for p, gr in zip(disc.parameters(), grads):
                p.grad = gr
            self._record(g, out_r, out_f)
        all_reduce_([p.grad for p in self.discs.parameters()], self.dist, mean=True)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.step += 1

    def _lecam_grads(self, group: str, real: torch.Tensor, fake: torch.Tensor):
        """LeCam regularizer (Tseng et al., CVPR 2021): pull D(real) toward the EMA of
        D(fake) and vice versa; eager autograd (an optional, off-by-default term)."""
        disc = self.disc(group)
        ema_r, ema_f = getattr(self, f"ema_real_{key(group)}"), getattr(self, f"ema_fake_{key(group)}")
        with torch.enable_grad():
            lr_, lf_ = disc(real), disc(fake)
            reg = self.lecam * ((lr_ - ema_f).square().mean() + (lf_ - ema_r).square().mean())
            grads = torch.autograd.grad(reg, tuple(disc.parameters()))
        d = self.lecam_decay
        means = torch.stack([lr_.detach().mean(), lf_.detach().mean()])
        all_reduce_([means], self.dist, mean=True)     # the EMAs stay equal on every rank
        ema_r.mul_(d).add_((1 - d) * means[0])
        ema_f.mul_(d).add_((1 - d) * means[1])
        return grads

    # ---- metrics ----------------------------------------------------------------
    def _record(self, name: str, out_r, out_f) -> None:
        vals = torch.stack([out_f.g_loss, out_r.d_loss + out_f.d_loss,
                            (out_r.logits > 0).float().mean(), (out_f.logits < 0).float().mean(),
                            torch.ones((), device=out_r.logits.device)])
        self._stats[name] = self._stats[name] + vals if name in self._stats else vals

    def pop_stats(self) -> dict[str, float]:
        """Means since the last call: g_loss, d_loss, d_acc_real, d_acc_fake (per D, keyed by
        its layer's full name or kernel size, and overall)."""
        keys = ("g_loss", "d_loss", "d_acc_real", "d_acc_fake")
        out: dict[str, float] = {}
        tot = None
        for name, v in self._stats.items():
            v = v.detach().cpu()
            for i, k in enumerate(keys):
                out[f"{k}/{name}"] = float(v[i] / v[4])
            tot = v if tot is None else tot + v
        if tot is not None:   # g_loss and d_loss overall: weighted as generator_loss weighs them
            nl = len(self._stats)
            for i, k in enumerate(keys):
                out[k] = float(tot[i] / tot[4]) * (nl if k in ("g_loss", "d_loss") and self.layer_weights == "sum"
                                                   else 1.0)
        self._stats = {}
        return out

    # ---- checkpoint -------------------------------------------------------------
    def checkpoint_state(self) -> dict:
        return {"module": self.state_dict(), "opt": self.opt.state_dict()}

    def load_checkpoint_state(self, state: dict) -> None:
        self.load_state_dict(state["module"])
        self.opt.load_state_dict(state["opt"])
