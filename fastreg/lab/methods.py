"""The methods a sweep compares and the report names: each a set of train settings, named
back from any run's settings (``method_of``), in words for ``sweep --help`` (``describe``).
Every part of a name comes from the tables of inits (``inits.INITS``) and priors
(``priors.PRIORS``, and the adversarial term); DESIGN.md §8 and §12.
"""
from __future__ import annotations

from .inits import INITS
from .priors import (ADVERSARIAL_METHODS, PRIORS, VI_METHODS, adversarial_label, adversarial_words, vi_label,
                     vi_words)

# A run's train settings that make its method (all others default); runs written before a
# setting existed read as its old behaviour (2-D slices, no prior, constant λ).
METHOD_KEYS = {"lam": 0.0, "init": "default", "init_unit": "slice", "d_unit": "slice",
               "prior": "none", "prior_weight": 1.0, "prior_unit": "filter", "lambda_schedule": "constant",
               "chain_norms": False}

# The sweep's menu, in the order the report lists methods: single parts and their combinations
# ("+"); a method an init or prior of the tables adds that is not here follows, in table order.
MENU = ("baseline", "adv0.1", "adv1", "adv10", "bankinit", "bankinit+adv1", "filterinit", "covinit",
        "covinit-slice", "gauss", "advf1", "filterinit+adv1", "filterinit+advf1", "filterinit+advf1-decay",
        "covinit+advf1", "filterinit+gauss", "chaininit", "chaininit-norms", "chaininit+advf1",
        "chaininit+gauss", "chaininit+l2sp", "finetune", "vaeinit", "vaeinit-slice", "vae", "filterinit+vae",
        "transferinit", "transferinit-norms", "transferinit-norms+l2sp",
        # the Deep Weight Prior's experiment (DESIGN.md §15): its init, its penalty, its Bayesian CNNs
        "vaeinit-slice-unscaled", "vae-slice", "vaeinit-slice-unscaled+vi-normal",
        "vaeinit-slice-unscaled+vi-loguniform", "vaeinit-slice-unscaled+vi-loguniform-trunc",
        "vaeinit-slice-unscaled+vi-vae")

PARTS_ONLY = ("l2sp", "advf1-decay", *VI_METHODS)   # parts of the menu's combinations, not methods of their own

# Named lists of methods ``sweep --methods`` takes beside method names.
PRESETS: dict[str, tuple[str, ...]] = {
    # the README's first-layer comparison: the main job against the plain model and its init alone
    "main": ("baseline", "filterinit", "filterinit+adv1"),
    # the seed's experiment: the adversarial term at three strengths, and 2-D-slice bank init
    "seed": ("baseline", "adv0.1", "adv1", "adv10", "bankinit", "bankinit+adv1"),
    # the README's whole-network comparison (needs --sources): chain init against the transfer baselines
    "whole-network": ("baseline", "filterinit", "chaininit", "chaininit+l2sp", "finetune"),
    # the Deep Weight Prior's MNIST experiment (DESIGN.md §15): four Bayesian CNNs, five cheap priors
    "dwp": ("baseline", "bankinit", "vaeinit-slice-unscaled", "vae-slice", "adv1", "vaeinit-slice-unscaled+vi-normal",
            "vaeinit-slice-unscaled+vi-loguniform", "vaeinit-slice-unscaled+vi-vae",
            # added after the first runs (DESIGN.md §15): the paper's own log-uniform posterior
            "vaeinit-slice-unscaled+vi-loguniform-trunc"),
}
DEFAULT_PRESET = "main"
SEED_METHODS = PRESETS["seed"]


def parts() -> dict[str, dict]:
    """Every single-part method of the tables: name → the settings it sets."""
    out: dict[str, dict] = {"baseline": {}}
    for table in (INITS, PRIORS):
        for entry in table.values():
            out.update({n: dict(v) for n, v in entry.methods.items()})
    out.update({n: dict(v) for n, v in ADVERSARIAL_METHODS.items()})
    out.update({n: dict(v) for n, v in VI_METHODS.items()})
    out["vae-slice"] = {**out["vae"], "prior_unit": "slice"}      # the penalty over 2-D kernels, as DWP's prior
    return out


def methods() -> dict[str, dict]:
    """The sweep's methods, name → every METHOD_KEYS setting: the menu, then any single part
    of the tables the menu lacks; a combination's settings are its parts' together."""
    single = parts()
    names = list(MENU) + [n for n in single if n not in MENU and n not in PARTS_ONLY]
    return {n: {**METHOD_KEYS, **{k: v for p in n.split("+") for k, v in single[p].items()}} for n in names}


def describe(settings: dict) -> str:
    """What a method does, in words, from its settings (``sweep --help`` lists these)."""
    c = {**METHOD_KEYS, **settings}
    words = [_entry(INITS, c["init"]).words(c), _entry(PRIORS, c["prior"]).words(c), adversarial_words(c), vi_words(c)]
    return "; ".join(w for w in words if w) or "the model's own random init, no prior"


def method_of(cfg: dict) -> str:
    """The method name of a run's settings (inverse of ``methods``): its init, prior and
    adversarial parts joined by '+', 'baseline' when it has none."""
    c = {**cfg, **{k: cfg.get(k, v) for k, v in METHOD_KEYS.items()}}
    labels = [_label(INITS, c["init"], c, "init"), _label(PRIORS, c["prior"], c, ""), adversarial_label(c),
              vi_label(c)]
    name = "+".join(x for x in labels if x) or "baseline"
    bank = cfg.get("bank")
    return name + (" (no D)" if bank is not None and str(bank).lower() == "none" else "")


def _entry(table: dict, name: str):
    if name not in table:
        raise KeyError(f"{name!r} is not in the table ({', '.join(table)})")
    return table[name]


def _label(table: dict, name: str, c: dict, suffix: str) -> str:
    """A part's label; a name the table no longer has (a run made with an init registered
    elsewhere) is named by itself."""
    return table[name].label(c) if name in table else f"{name}{suffix}"


def method_order(method: str, variant: str = "") -> tuple:
    """Sort key of a method (and a cell's variant): the menu's order first, then the names."""
    order = list(methods())
    return (order.index(method) if method in order else len(order), method, variant)


def method_argv(name: str) -> list[str]:
    """train options that select a method (every METHOD_KEYS setting, spelled out)."""
    argv = []
    for k, v in methods()[name].items():
        if isinstance(v, bool):          # a flag: given when on (train's default is off)
            argv += ["--" + k.replace("_", "-")] if v else []
            continue
        argv += ["--lambda" if k == "lam" else "--" + k.replace("_", "-"),
                 f"{v:g}" if isinstance(v, float) else str(v)]
    return argv
