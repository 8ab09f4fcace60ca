"""What the training loop calls on a regularizer (``Regularizer``), and ``Terms``, several of
them summed behind that one interface: the adversarial term (``AdversarialRegularizer``), the
Gaussian penalty (``prior.GaussianPrior``) and L2-SP (``chain.L2SP``) combine this way."""
from __future__ import annotations

from typing import Iterable, Mapping, Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class Regularizer(Protocol):
    """A term added to the classifier's loss, with whatever it trains on the side."""

    def generator_loss(self) -> torch.Tensor:
        """The term's value on the classifier's current weights (differentiable)."""

    def discriminator_step(self) -> None:
        """After the classifier's update: train what the term trains (a discriminator), if anything."""

    def pop_stats(self) -> dict[str, float]:
        """Means since the last call, for the run's metrics."""

    def checkpoint_state(self) -> dict:
        """Everything a resumed run needs to continue the same numbers."""

    def load_checkpoint_state(self, state: dict) -> None:
        """The inverse of ``checkpoint_state``."""

    def trained_parameters(self) -> Iterable[nn.Parameter]:
        """Parameters it trains, which data-parallel ranks must hold identical."""

    def distribute(self, dist) -> "Regularizer":
        """Join data-parallel training (``fastreg.distributed.Dist``); returns itself."""


class Terms:
    """Several ``Regularizer`` terms behind the same interface: their losses summed, each
    stepped, their stats merged, their checkpoints kept by name."""

    def __init__(self, terms: Mapping[str, Regularizer]) -> None:
        self.terms = dict(terms)

    def generator_loss(self) -> torch.Tensor:
        return sum(t.generator_loss() for t in self.terms.values())

    def discriminator_step(self) -> None:
        for t in self.terms.values():
            t.discriminator_step()

    def pop_stats(self) -> dict[str, float]:
        return {k: v for t in self.terms.values() for k, v in t.pop_stats().items()}

    def checkpoint_state(self) -> dict:
        return {n: t.checkpoint_state() for n, t in self.terms.items()}

    def load_checkpoint_state(self, state: dict) -> None:
        if set(state) != set(self.terms):
            raise ValueError(f"checkpoint has regularizer terms {sorted(state)}, the run {sorted(self.terms)}")
        for n, t in self.terms.items():
            t.load_checkpoint_state(state[n])

    def trained_parameters(self) -> list[nn.Parameter]:
        return [p for t in self.terms.values() for p in t.trained_parameters()]

    def distribute(self, dist) -> "Terms":
        for t in self.terms.values():
            t.distribute(dist)
        return self
