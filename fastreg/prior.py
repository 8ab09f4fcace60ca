"""The Gaussian filter prior as a penalty (SK-reg, Feinman & Lake 2019; DESIGN.md §8), a
``fastreg.terms.Regularizer`` like the adversarial term, so the two combine.

Penalty on a layer: ``α · mean over its kernels of NLL(kernel) / D`` under the Gaussian
fitted to its bank layer (slices or whole filters), with the bank scaled to the layer's
init std (as bank init scales it). Divided by ``D`` (numbers per kernel) so that ``α``
means the same for 7×7 slices and 3×7×7 filters: nats per weight; averaged over the layers
(``layer_weights="mean"``) so that it means the same for one layer or fifty.
"""
from __future__ import annotations

import sys
from typing import Mapping, Sequence

import torch
from torch import nn

from .bank import KernelBank, fallback_note
from .errors import BankError
from .gaussian import Gaussian
from .layers import LAYER_WEIGHTS, conv_layers, select_layers


class GaussianPrior(nn.Module):
    """``weight · NLL / D`` of each layer's kernels under its bank's Gaussian; no D to train."""

    def __init__(self, model: nn.Module, bank: KernelBank, layers: Sequence[str] | str, weight: float,
                 unit: str = "filter", shrink: float = 0.1,
                 bank_map: Mapping[str, Sequence[str]] | None = None, layer_weights: str = "mean") -> None:
        super().__init__()
        if not weight >= 0:
            raise ValueError(f"prior weight must be >= 0, got {weight}")
        if layer_weights not in LAYER_WEIGHTS:
            raise ValueError(f"layer_weights must be one of {LAYER_WEIGHTS}, got {layer_weights!r}")
        convs = conv_layers(model)
        if isinstance(layers, str):
            layers = select_layers(model, layers, bank.kernel_sizes(), bank_map or {}, "Gaussian prior")
        self.weight, self.layers, self.layer_weights = float(weight), list(layers), layer_weights
        self.convs, self.units, self.laws, notes = {}, {}, {}, []
        for name in self.layers:
            if name not in convs:
                raise BankError(f"unknown layer {name!r}; the model has {', '.join(convs)}")
            conv = convs[name]
            draw = bank.plan(name, conv.weight.shape, unit, bank_map)
            self.units[name] = draw.unit
            notes += [draw.fallback] if draw.fallback else []
            law = bank.gaussian(draw.src, draw.bank_unit, shrink)
            # the bank at the layer's scale: its kernels' std made the default init's
            scale = float(conv.weight.detach().std()) / float(bank.units(draw.src, "slice").std())
            self.laws[name] = law.scaled(scale)
            self.convs[name] = conv
        if notes:
            sys.stderr.write(fallback_note(notes, "Gaussian prior"))
        self._stats: dict[str, torch.Tensor] = {}

    def _rows(self, name: str) -> torch.Tensor:
        w = self.convs[name].weight
        return w.reshape(w.shape[0], -1) if self.units[name] == "filter" else w.reshape(-1, w.shape[-2] * w.shape[-1])

    def nll_per_weight(self, name: str) -> torch.Tensor:
        """Mean NLL of the layer's kernels, per number in a kernel (differentiable)."""
        x = self._rows(name)
        law: Gaussian = self.laws[name]
        if law.mean.device != x.device:                 # moved once, with the model
            law = self.laws[name] = law.to(x.device)
        return (law.nll(x).mean() / law.dim).to(x.dtype)

    def generator_loss(self) -> torch.Tensor:
        total = None
        for name in self.layers:
            v = self.nll_per_weight(name)
            self._stats[name] = self._stats.get(name, 0) + torch.stack([v.detach(), torch.ones_like(v)])
            total = v if total is None else total + v
        return self.weight * (total / len(self.layers) if self.layer_weights == "mean" else total)

    def discriminator_step(self) -> None:
        """Nothing to train: the prior is fixed."""

    def pop_stats(self) -> dict[str, float]:
        out = {f"prior_nll/{n}": float(v[0] / v[1]) for n, v in self._stats.items()}
        self._stats = {}
        return out

    def checkpoint_state(self) -> dict:
        return {}

    def load_checkpoint_state(self, state: dict) -> None:
        pass

    def trained_parameters(self) -> list[nn.Parameter]:
        """Nothing of its own is trained."""
        return []

    def distribute(self, dist) -> "GaussianPrior":
        """Nothing to share between data-parallel ranks."""
        return self
