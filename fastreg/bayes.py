"""Variational inference over conv weights (DESIGN.md §15), as the Deep Weight Prior trains
its Bayesian CNNs: a fully factorized Gaussian posterior ``q(w) = N(μ, σ²)`` per conv weight,
sampled by the local reparameterization trick, and the ELBO's KL term under one of three priors.

- ``BayesConv2d``: an ``nn.Conv2d`` whose ``weight`` is the posterior mean μ and whose
  ``log_sigma2`` is log σ² (the bias stays a point estimate, as in the paper's code). In
  training every forward pass samples the pre-activations, ``conv(x, μ) + sqrt(conv(x², σ²))
  · ε`` (lower-variance gradients); in evaluation mode a pass draws one weight sample ``μ + σ·ε``
  for the whole batch: an exact posterior sample of the network (the local trick treats a
  conv's output positions as independent, which they are not), at the cost of one conv and no
  noise per activation. ``predicting(model, how)`` evaluates it another way: ``"local"``, the
  training pass's per-activation noise (how the paper's code predicts), or ``"mean"``, μ alone.
- ``kl_normal``: ``KL(q ‖ N(0, 1))``, closed form.
- ``kl_loguniform``: the log-uniform prior's KL as sparse variational dropout approximates it
  (Molchanov, Ashukha & Vetrov, ICML 2017, eq. 14), with ``α = σ² / μ²``.
- ``TruncAlphaConv2d`` and ``kl_loguniform_trunc``: the posterior the Deep Weight Prior's code
  pairs with the log-uniform prior, ``N(μ, α μ²)`` with ``α = sigmoid(a) < 1``, and the KL of
  variational dropout (Kingma, Salimans & Welling, NeurIPS 2015) that holds for ``α ≤ 1``.
- ``kl_vae_bound``: the Deep Weight Prior's bound through a kernel VAE: ``KL(q ‖ p) ≤ −H(q) −
  Σ_kernels ELBO(w_kernel)``, ``w ~ q`` one sample, the VAE's ELBO a lower bound on log p.
- ``KLTerm``: ``weight · Σ_layers KL / N`` added to the mean cross-entropy (the negative ELBO
  per training example), a ``fastreg.terms.Regularizer``.

Prediction averages the softmax over ``prediction_samples`` stochastic passes (``to_bayes``
sets it on the model; the lab's evaluation reads it).
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layers import conv_layers, unwrap

# Molchanov et al. (2017), eq. 14: −KL ≈ k1·σ(k2 + k3·log α) − ½·log(1 + 1/α) − k1
K1, K2, K3 = 0.63576, 1.87320, 1.48695
# Kingma et al. (2015), eq. 21, for α ≤ 1: −KL ≈ ½·log α + c1·α + c2·α² + c3·α³ (constant dropped)
C1, C2, C3 = 1.16145124, -1.50204118, 0.58629921
PRIORS = ("normal", "loguniform", "loguniform-trunc", "vae")
TRUNC = "loguniform-trunc"        # the one prior served by the truncated-α posterior, and only by it
PREDICTIONS = ("weights", "local", "mean")   # how an evaluation pass treats the posterior
OTHER_PREDICTIONS = PREDICTIONS[1:]   # recorded beside the protocol's own ("weights")


class BayesConv2d(nn.Conv2d):
    """A conv with a factorized Gaussian posterior over its weights: mean ``weight``, log-variance
    ``log_sigma2``; a training pass samples its output (local reparameterization), an
    evaluation pass its weights (one sample for the batch)."""

    def __init__(self, conv: nn.Conv2d, log_sigma2: float = -10.0) -> None:
        super().__init__(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                         conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode,
                         device=conv.weight.device, dtype=conv.weight.dtype)
        with torch.no_grad():
            self.weight.copy_(conv.weight)
            if conv.bias is not None:
                self.bias.copy_(conv.bias)
        self.log_sigma2 = nn.Parameter(torch.full_like(self.weight, float(log_sigma2)))
        self.predict = "weights"   # an evaluation pass: one weight sample for the batch (PREDICTIONS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training and self.predict == "mean":
            return self._conv_forward(x, self.weight, self.bias)
        if not self.training and self.predict == "weights":   # one posterior sample, shared by the batch
            return self._conv_forward(x, self.sample_weight(), self.bias)
        mu = self._conv_forward(x, self.weight, self.bias)
        var = self._conv_forward(x * x, self.sigma2(), None)
        return mu + var.clamp_min(1e-16).sqrt() * torch.randn_like(mu)

    def sample_weight(self, gen: torch.Generator | None = None) -> torch.Tensor:
        """One weight sample ``μ + σ·ε`` (differentiable in μ and σ)."""
        eps = torch.randn(self.weight.shape, generator=gen).to(self.weight)
        return self.weight + self.sigma() * eps

    def sigma2(self) -> torch.Tensor:
        return self.log_sigma2.exp()

    def sigma(self) -> torch.Tensor:
        return torch.exp(0.5 * self.log_sigma2)


class TruncAlphaConv2d(BayesConv2d):
    """The posterior ``N(μ, α μ²)``, ``α = sigmoid(alpha_logit)`` per weight (so ``α < 1``), as the
    Deep Weight Prior's code trains its log-uniform rows; ``alpha_logit`` starts at −2 there
    (``α ≈ 0.12``). Sampled like ``BayesConv2d``; it has no ``log_sigma2``."""

    def __init__(self, conv: nn.Conv2d, alpha_logit: float = -2.0) -> None:
        super().__init__(conv)
        del self.log_sigma2
        self.alpha_logit = nn.Parameter(torch.full_like(self.weight, float(alpha_logit)))

    def sigma2(self) -> torch.Tensor:
        return torch.sigmoid(self.alpha_logit) * self.weight * self.weight

    def sigma(self) -> torch.Tensor:
        return (self.sigma2() + 1e-12).sqrt()


def to_bayes(model: nn.Module, layers: Sequence[str], log_sigma2: float = -10.0,
             prediction_samples: int = 10, posterior: str = "gaussian", alpha_logit: float = -2.0) -> list[str]:
    """Replace ``layers`` (conv names) by ``BayesConv2d`` (``posterior="gaussian"``, σ² free,
    starting at ``exp(log_sigma2)``) or ``TruncAlphaConv2d`` (``"trunc-alpha"``, σ² = α μ²,
    starting at ``α = sigmoid(alpha_logit)``) with their current weights as the posterior means;
    the model then predicts by averaging ``prediction_samples`` passes."""
    if posterior not in ("gaussian", "trunc-alpha"):
        raise ValueError(f"posterior must be 'gaussian' or 'trunc-alpha', got {posterior!r}")
    net = unwrap(model)
    convs = conv_layers(net)
    for name in layers:
        if name not in convs:
            raise ValueError(f"unknown conv layer {name!r}")
        if type(convs[name]) is not nn.Conv2d:    # a subclass's own forward (same padding, ...) would be lost
            raise ValueError(f"layer {name} is a {type(convs[name]).__name__}, a conv with its own forward: "
                             f"variational inference serves plain nn.Conv2d layers")
    for name in layers:
        parent = net.get_submodule(name.rpartition(".")[0]) if "." in name else net
        setattr(parent, name.rpartition(".")[2], BayesConv2d(convs[name], log_sigma2) if posterior == "gaussian"
                else TruncAlphaConv2d(convs[name], alpha_logit))
    net.prediction_samples = int(prediction_samples)
    return list(layers)


@contextmanager
def predicting(model: nn.Module, how: str) -> Iterator[nn.Module]:
    """Within the block the Bayesian convs of ``model`` predict ``how`` (``PREDICTIONS``):
    ``"weights"`` (the default: exact weight samples), ``"local"`` (independent noise per
    activation, as in training and in the Deep Weight Prior's code) or ``"mean"`` (the posterior
    mean, one deterministic pass: ``prediction_samples`` is 1 meanwhile)."""
    if how not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {how!r}")
    net = unwrap(model)
    mods = [m for m in net.modules() if isinstance(m, BayesConv2d)]
    old = [m.predict for m in mods]
    samples = getattr(net, "prediction_samples", None)
    for m in mods:
        m.predict = how
    if how == "mean" and samples is not None:
        net.prediction_samples = 1
    try:
        yield net
    finally:
        for m, o in zip(mods, old):
            m.predict = o
        if samples is not None:
            net.prediction_samples = samples


def kl_normal(mu: torch.Tensor, log_sigma2: torch.Tensor) -> torch.Tensor:
    """``KL(N(μ, σ²) ‖ N(0, 1))`` summed over the weights."""
    return 0.5 * (log_sigma2.exp() + mu * mu - 1.0 - log_sigma2).sum()


def kl_loguniform(mu: torch.Tensor, log_sigma2: torch.Tensor) -> torch.Tensor:
    """``KL(q ‖ log-uniform)`` summed over the weights, Molchanov et al.'s approximation at
    ``log α = log σ² − log μ²`` (up to the prior's infinite constant, which it drops)."""
    log_alpha = log_sigma2 - torch.log(mu * mu + 1e-16)
    neg_kl = K1 * torch.sigmoid(K2 + K3 * log_alpha) - 0.5 * F.softplus(-log_alpha) - K1
    return -neg_kl.sum()


def kl_loguniform_trunc(alpha_logit: torch.Tensor) -> torch.Tensor:
    """``KL(q ‖ log-uniform)`` summed over the weights for ``q = N(μ, α μ²)``, ``α =
    sigmoid(alpha_logit)``: Kingma et al.'s approximation for ``α ≤ 1`` (it depends on α only)."""
    log_alpha = -F.softplus(-alpha_logit)
    a = log_alpha.exp()
    return -(0.5 * log_alpha + C1 * a + C2 * a * a + C3 * a * a * a).sum()


def entropy(log_sigma2: torch.Tensor) -> torch.Tensor:
    """The entropy of the factorized Gaussian, summed over the weights."""
    return 0.5 * (log_sigma2 + 1.0 + math.log(2 * math.pi)).sum()


def kl_vae_bound(layer: BayesConv2d, vae, unit: str = "slice", scale: float = 1.0,
                 gen: torch.Generator | None = None) -> torch.Tensor:
    """An upper bound on ``KL(q ‖ p)`` for the prior the kernel VAE ``vae`` defines over the
    layer's 2-D kernels (``unit="slice"``, the Deep Weight Prior's) or whole filters:
    ``−H(q) − Σ ELBO(w/scale) + (numbers)·log scale``, one weight sample ``w ~ q``."""
    w = layer.sample_weight(gen)
    rows = w.reshape(w.shape[0], -1) if unit == "filter" else w.reshape(-1, w.shape[-2] * w.shape[-1])
    eps = torch.randn(len(rows), vae.z_dim, generator=gen).to(rows)
    log_p = vae.elbo(rows.float() / scale, eps).sum() - rows.numel() * math.log(scale)
    return -entropy(layer.log_sigma2) - log_p


class KLTerm(nn.Module):
    """``weight · Σ_layers KL(q ‖ prior) / n_train`` over the model's ``BayesConv2d`` layers: with
    the mean cross-entropy, the negative ELBO per training example. ``prior``: ``normal``,
    ``loguniform``, ``loguniform-trunc`` (on ``TruncAlphaConv2d`` layers), or ``vae`` (``vaes``:
    layer → ``KernelVAE``, ``units``, ``scales``)."""

    def __init__(self, model: nn.Module, prior: str, n_train: int, weight: float = 1.0,
                 vaes: Mapping[str, nn.Module] | None = None, units: Mapping[str, str] | None = None,
                 scales: Mapping[str, float] | None = None, seed: int = 0) -> None:
        super().__init__()
        if prior not in PRIORS:
            raise ValueError(f"prior must be one of {PRIORS}, got {prior!r}")
        if n_train < 1 or not weight >= 0:
            raise ValueError(f"need n_train >= 1 and weight >= 0, got {n_train} and {weight}")
        self.layers = {n: m for n, m in unwrap(model).named_modules() if isinstance(m, BayesConv2d)}
        if not self.layers:
            raise ValueError("the model has no BayesConv2d layer (fastreg.bayes.to_bayes)")
        trunc = sorted(n for n, m in self.layers.items() if isinstance(m, TruncAlphaConv2d))
        if (prior == TRUNC) != bool(trunc) or (prior == TRUNC and len(trunc) != len(self.layers)):
            raise ValueError(f"prior {TRUNC!r} goes with the truncated-α posterior and only with it "
                             f"(to_bayes(..., posterior='trunc-alpha')); layers with it: {trunc or 'none'}")
        if prior == "vae" and set(vaes or {}) != set(self.layers):
            raise ValueError(f"prior 'vae' needs a VAE for each Bayesian layer: {sorted(self.layers)}")
        self.prior, self.n_train, self.weight = prior, int(n_train), float(weight)
        self.vaes = nn.ModuleDict({k.replace(".", "__"): v for k, v in (vaes or {}).items()})
        for p in self.vaes.parameters():
            p.requires_grad_(False)
        self.units, self.scales = dict(units or {}), dict(scales or {})
        self.gen = torch.Generator().manual_seed(seed)
        self._stats = torch.zeros(2)

    def kl(self) -> torch.Tensor:
        """Σ over the layers of their KL (or its bound), in nats."""
        total = 0.0
        for name, m in self.layers.items():
            if self.prior == "normal":
                total = total + kl_normal(m.weight, m.log_sigma2)
            elif self.prior == "loguniform":
                total = total + kl_loguniform(m.weight, m.log_sigma2)
            elif self.prior == TRUNC:
                total = total + kl_loguniform_trunc(m.alpha_logit)
            else:
                vae = self.vaes[name.replace(".", "__")].to(m.weight.device)
                total = total + kl_vae_bound(m, vae, self.units.get(name, "slice"), self.scales.get(name, 1.0),
                                             self.gen)
        return total

    def generator_loss(self) -> torch.Tensor:
        kl = self.kl()
        numbers = sum(m.weight.numel() for m in self.layers.values())
        # kept on the KL's device: no host sync a step (read once a log interval, by pop_stats)
        one = torch.ones((), device=kl.device)
        self._stats = self._stats.to(kl.device) + torch.stack([kl.detach().float() / numbers, one])
        return self.weight * kl / self.n_train

    def discriminator_step(self) -> None:
        """Nothing to train beside the classifier: the posterior's parameters are the model's."""

    def pop_stats(self) -> dict[str, float]:
        n = float(self._stats[1])
        out = {"kl_per_weight": float(self._stats[0]) / n} if n else {}
        self._stats = torch.zeros(2)
        with torch.no_grad():   # how far the posterior has moved from a point (log σ² starts at -10)
            out.update({f"log_sigma2/{k}": float(m.sigma2().clamp_min(1e-30).log().median())
                        for k, m in self.layers.items()})
        return out

    def trained_parameters(self) -> list[nn.Parameter]:
        return []

    def distribute(self, dist) -> "KLTerm":
        return self

    def checkpoint_state(self) -> dict:
        return {"gen": self.gen.get_state()}

    def load_checkpoint_state(self, state: dict) -> None:
        self.gen.set_state(state["gen"])
