"""The one table of penalties ``--prior`` offers (DESIGN.md §8, §12, §13), and the words for
the adversarial term (``--lambda``): what each needs, the function that builds it, how a run's
method name and the sweep's help speak of it, and the sweep methods it adds. ``train``, the
sweep and the report read these; adding a prior is one ``register_prior`` call and its function.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

from ..bayes import PRIORS as VI_PRIORS
from ..chain import L2SP
from ..errors import UsageError
from ..layers import conv_layers
from ..prior import GaussianPrior
from ..vae import VAEPrior, layer_scale
from .inits import Start

GAUSS_WEIGHT = 1e4   # --prior-weight of the sweep's gauss methods: the best of 0.1 ... 1e5 in a pilot (n = 100, seeds 0-2)
L2SP_WEIGHT = 0.01   # --prior-weight of the sweep's l2sp methods: α of Li et al. (2018)
# --prior-weight of the sweep's vae methods: the Gaussian's. Both penalties are a negative log-density
# (a bound on one, for the VAE) in nats per weight of the same kernels, so one weight means the same.
VAE_WEIGHT = GAUSS_WEIGHT


@dataclass(frozen=True)
class Prior:
    """One ``--prior`` choice. ``needs``: ``"bank"``, ``"copied"`` (a start copied from a source
    network: an init with ``copies``) or ``""``; ``build(start, copied)`` returns the penalty (a
    ``fastreg.terms.Regularizer``) or None; ``label``/``words``/``methods`` as for inits."""
    name: str
    needs: str
    help: str
    build: Callable[[Start, list[str]], object]
    label: Callable[[Mapping], str]
    words: Callable[[Mapping], str]
    methods: Mapping[str, Mapping] = field(default_factory=dict)


PRIORS: dict[str, Prior] = {}


def register_prior(prior: Prior) -> Prior:
    """Add a prior to the table (its name is then a ``--prior`` choice everywhere)."""
    PRIORS[prior.name] = prior
    return prior


def prior_needs(name: str | None) -> str:
    """What the prior of that name needs (``""`` for a name the table does not have)."""
    return PRIORS[name].needs if name in PRIORS else ""


def prior_of(name: str) -> Prior:
    if name not in PRIORS:
        raise UsageError(f"unknown prior {name!r}; choose from {', '.join(PRIORS)}")
    return PRIORS[name]


def _weighted(name: str, usual: float) -> Callable[[Mapping], str]:
    """``gauss``, ``gauss1e3``, ``gauss-slice``: the name, the weight where it is not the
    sweep's, the unit where it is 2-D slices."""
    def label(s: Mapping) -> str:
        w = float(s["prior_weight"])
        return name + ("" if w == usual else f"{w:g}") + ("" if s["prior_unit"] == "filter" else "-slice")
    return label


def _penalty_words(what: str) -> Callable[[Mapping], str]:
    return lambda s: (f"{what} penalty, weight {float(s['prior_weight']):g} "
                      f"({'whole filters' if s['prior_unit'] == 'filter' else '2-D kernels'})")


def _gauss(st: Start, copied: list[str]):
    s = st.settings
    return GaussianPrior(st.model, st.bank, st.layers, s.prior_weight, s.prior_unit, s.shrink, st.bank_map,
                         s.layer_weights)


def _vae(st: Start, copied: list[str]):
    s = st.settings
    vaes, units = st.vaes(s.prior_unit)
    convs = conv_layers(st.model)
    scales = {n: layer_scale(st.bank, n, convs[n].weight, st.bank_map) for n in st.layers}
    return VAEPrior(st.model, vaes, s.prior_weight, units, scales, s.layer_weights, s.seed).to(st.device)


def _l2sp_label(s: Mapping) -> str:
    w = float(s["prior_weight"])
    return "l2sp" + ("" if w == L2SP_WEIGHT else f"{w:g}")


register_prior(Prior("none", "", "no penalty", build=lambda st, copied: None, label=lambda s: "",
                     words=lambda s: ""))
register_prior(Prior("gauss", "bank", "--prior-weight x the Gaussian NLL per weight of the regularized layers' "
                     "kernels (SK-reg)", build=_gauss, label=_weighted("gauss", GAUSS_WEIGHT),
                     words=_penalty_words("Gaussian"),
                     methods={"gauss": {"prior": "gauss", "prior_weight": GAUSS_WEIGHT}}))
register_prior(Prior("vae", "bank", "--prior-weight x the -ELBO per weight of those kernels under a VAE fitted "
                     "to the bank (the Deep Weight Prior's learned prior)", build=_vae, label=_weighted("vae", VAE_WEIGHT),
                     words=_penalty_words("VAE (-ELBO)"),
                     methods={"vae": {"prior": "vae", "prior_weight": VAE_WEIGHT}}))
register_prior(Prior("l2sp", "copied", "--prior-weight/2 x the squared distance of the copied layers' parameters "
                     "to their start (L2-SP; with --init chain, transfer or finetune)",
                     build=lambda st, copied: L2SP(st.model, copied, st.settings.prior_weight).to(st.device),
                     label=_l2sp_label,
                     words=lambda s: f"L2-SP toward the start, weight {float(s['prior_weight']):g}",
                     methods={"l2sp": {"prior": "l2sp", "prior_weight": L2SP_WEIGHT}}))


# ------------------------------------------------------------------ the adversarial term
def adversarial(settings: Mapping) -> bool:
    """Whether a run has the adversarial term: λ (``lam``) > 0. The one place that decides it."""
    return float(settings.get("lam") or 0.0) > 0


def adversarial_label(s: Mapping) -> str:
    """``adv1``, ``advf1`` (D on whole filters), ``adv1-decay`` (λ falling to 0); ``""`` at λ = 0."""
    if not adversarial(s):
        return ""
    return (("advf" if s["d_unit"] == "filter" else "adv") + f"{float(s['lam']):g}"
            + ("-decay" if s["lambda_schedule"] == "linear" else ""))


def adversarial_words(s: Mapping) -> str:
    if not adversarial(s):
        return ""
    return (f"adversarial term λ = {float(s['lam']):g}, D on "
            f"{'whole filters' if s['d_unit'] == 'filter' else '2-D kernels'}"
            + (", λ decaying to 0" if s["lambda_schedule"] == "linear" else ""))


# ------------------------------------------------------------------ variational inference
VI_METHODS = {  # the sweep's variational parts (DESIGN.md §15): name → settings
    f"vi-{p}": {"inference": "vi", "vi_prior": p} for p in VI_PRIORS}


def vi_label(s: Mapping) -> str:
    """``vi-`` and the prior (``vi-normal``, ``vi-vae``, ...) for a variational run; ``""`` otherwise."""
    return f"vi-{s.get('vi_prior', 'normal')}" if s.get("inference", "map") == "vi" else ""


def vi_words(s: Mapping) -> str:
    if s.get("inference", "map") != "vi":
        return ""
    return {"normal": "variational posterior, standard normal prior",
            "loguniform": "variational posterior, log-uniform prior",
            "loguniform-trunc": "variational posterior N(μ, αμ²), α < 1, log-uniform prior (the paper's code)",
            "vae": "variational posterior, the Deep Weight Prior (a VAE of the bank's kernels)"}[s.get("vi_prior", "normal")]


ADVERSARIAL_METHODS = {   # the sweep's adversarial parts: name → settings
    "adv0.1": {"lam": 0.1}, "adv1": {"lam": 1.0}, "adv10": {"lam": 10.0},
    "advf1": {"lam": 1.0, "d_unit": "filter"},
    "advf1-decay": {"lam": 1.0, "d_unit": "filter", "lambda_schedule": "linear"},
}
