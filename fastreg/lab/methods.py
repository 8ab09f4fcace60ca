"""The methods a sweep compares and the report names: each a set of train settings, named
back from any run's settings (``method_of``), in words for ``sweep --help`` (``describe``).
DESIGN.md §8 (priors from a bank) and §12 (priors for a whole network)."""
from __future__ import annotations

# A run's train settings that make its method (all others default); runs written before a
# setting existed read as its old behaviour (2-D slices, no prior, constant λ).
METHOD_KEYS = {"lam": 0.0, "init": "default", "init_unit": "slice", "d_unit": "slice",
               "prior": "none", "prior_weight": 1.0, "prior_unit": "filter", "lambda_schedule": "constant",
               "chain_norms": False}
GAUSS_WEIGHT = 1e4   # --prior-weight of the sweep's gauss methods: the best of 0.1 ... 1e5 in a pilot (n = 100, seeds 0-2)
L2SP_WEIGHT = 0.01   # --prior-weight of the sweep's l2sp methods: α of Li et al. (2018)
# --prior-weight of the sweep's vae methods: the Gaussian's. Both penalties are a negative log-density
# (a bound on one, for the VAE) in nats per weight of the same kernels, so one weight means the same.
VAE_WEIGHT = GAUSS_WEIGHT


def _m(**kw) -> dict:
    return {**METHOD_KEYS, **kw}


# The sweep's methods: name → settings; names are fixed (the report and the docs use them),
# and method_of(settings) gives the name back. The first six are the original comparison.
METHODS: dict[str, dict] = {
    "baseline": _m(), "adv0.1": _m(lam=0.1), "adv1": _m(lam=1.0), "adv10": _m(lam=10.0),
    "bankinit": _m(init="bank"), "bankinit+adv1": _m(init="bank", lam=1.0),
    "filterinit": _m(init="bank", init_unit="filter"),
    "covinit": _m(init="cov", init_unit="filter"), "covinit-slice": _m(init="cov"),
    "gauss": _m(prior="gauss", prior_weight=GAUSS_WEIGHT),
    "advf1": _m(lam=1.0, d_unit="filter"),
    "filterinit+adv1": _m(init="bank", init_unit="filter", lam=1.0),
    "filterinit+advf1": _m(init="bank", init_unit="filter", lam=1.0, d_unit="filter"),
    "filterinit+advf1-decay": _m(init="bank", init_unit="filter", lam=1.0, d_unit="filter",
                                 lambda_schedule="linear"),
    "covinit+advf1": _m(init="cov", init_unit="filter", lam=1.0, d_unit="filter"),
    "filterinit+gauss": _m(init="bank", init_unit="filter", prior="gauss", prior_weight=GAUSS_WEIGHT),
    # priors for a whole network (DESIGN.md §12): one source network's layers, and the transfer baselines
    "chaininit": _m(init="chain"),
    "chaininit-norms": _m(init="chain", chain_norms=True),
    "chaininit+advf1": _m(init="chain", lam=1.0, d_unit="filter"),
    "chaininit+gauss": _m(init="chain", prior="gauss", prior_weight=GAUSS_WEIGHT),
    "chaininit+l2sp": _m(init="chain", prior="l2sp", prior_weight=L2SP_WEIGHT),
    "finetune": _m(init="finetune"),
    # the Deep Weight Prior's learned prior: a VAE fitted to the bank, for init and as a penalty (§13)
    "vaeinit": _m(init="vae", init_unit="filter"),
    "vaeinit-slice": _m(init="vae"),
    "vae": _m(prior="vae", prior_weight=VAE_WEIGHT),
    "filterinit+vae": _m(init="bank", init_unit="filter", prior="vae", prior_weight=VAE_WEIGHT),
}
# Named lists of methods ``sweep --methods`` takes beside method names.
PRESETS: dict[str, tuple[str, ...]] = {
    # the README's first-layer comparison: the main job against the plain model and its init alone
    "main": ("baseline", "filterinit", "filterinit+adv1"),
    # the seed's experiment: the adversarial term at three strengths, and 2-D-slice bank init
    "seed": ("baseline", "adv0.1", "adv1", "adv10", "bankinit", "bankinit+adv1"),
    # the README's whole-network comparison (needs --sources): chain init against the transfer baselines
    "whole-network": ("baseline", "filterinit", "chaininit", "chaininit+l2sp", "finetune"),
}
DEFAULT_PRESET = "main"
SEED_METHODS = PRESETS["seed"]


def describe(settings: dict) -> str:
    """What a method does, in words, from its settings (``sweep --help`` lists these)."""
    c = {**METHOD_KEYS, **settings}
    parts = []
    if c["init"] == "chain":
        parts.append("start from one source network's layers, channels coherent"
                     + (", with their norms" if c["chain_norms"] else ""))
    elif c["init"] == "finetune":
        parts.append("fine-tune a source network (every layer but the head)")
    elif c["init"] != "default":
        what = {"bank": "bank kernels", "cov": "draws from a Gaussian fitted to the bank",
                "vae": "draws from a VAE fitted to the bank"}[c["init"]]
        unit = ("whole filters, a filter's channels drawn together" if c["init_unit"] == "filter"
                else "2-D kernels, each drawn on its own")
        parts.append(f"start from {what} ({unit})")
    if c["prior"] == "l2sp":
        parts.append(f"L2-SP toward the start, weight {float(c['prior_weight']):g}")
    elif c["prior"] != "none":
        parts.append(f"{'VAE (-ELBO)' if c['prior'] == 'vae' else 'Gaussian'} penalty, weight {float(c['prior_weight']):g} "
                     f"({'whole filters' if c['prior_unit'] == 'filter' else '2-D kernels'})")
    if float(c["lam"]) > 0:
        parts.append(f"adversarial term λ = {float(c['lam']):g}, D on "
                     f"{'whole filters' if c['d_unit'] == 'filter' else '2-D kernels'}"
                     + (", λ decaying to 0" if c["lambda_schedule"] == "linear" else ""))
    return "; ".join(parts) or "the model's own random init, no prior"


def method_of(cfg: dict) -> str:
    """The method name of a run's settings (inverse of METHODS): its init, prior and
    adversarial parts joined by '+', 'baseline' when it has none."""
    c = {k: cfg.get(k, v) for k, v in METHOD_KEYS.items()}
    parts = []
    if c["init"] == "chain":
        parts.append("chaininit" + ("-norms" if c["chain_norms"] else ""))
    elif c["init"] == "finetune":
        parts.append("finetune")
    elif c["init"] != "default":
        parts.append({("bank", "slice"): "bankinit", ("bank", "filter"): "filterinit",
                      ("cov", "filter"): "covinit", ("cov", "slice"): "covinit-slice",
                      ("vae", "filter"): "vaeinit", ("vae", "slice"): "vaeinit-slice"}
                     .get((c["init"], c["init_unit"]), f"{c['init']}init-{c['init_unit']}"))
    if c["prior"] == "l2sp":
        w = float(c["prior_weight"])
        parts.append("l2sp" + ("" if w == L2SP_WEIGHT else f"{w:g}"))
    elif c["prior"] != "none":
        w = float(c["prior_weight"])
        parts.append(c["prior"] + ("" if w == (VAE_WEIGHT if c["prior"] == "vae" else GAUSS_WEIGHT) else f"{w:g}")
                     + ("" if c["prior_unit"] == "filter" else "-slice"))
    lam = float(c["lam"])
    if lam > 0:
        parts.append(("advf" if c["d_unit"] == "filter" else "adv") + f"{lam:g}"
                     + ("-decay" if c["lambda_schedule"] == "linear" else ""))
    name = "+".join(parts) or "baseline"
    bank = cfg.get("bank")
    return name + (" (no D)" if bank is not None and str(bank).lower() == "none" else "")


def method_order(method: str, variant: str = "") -> tuple:
    """Sort key of a method (and a cell's variant): the METHODS order first, then the names."""
    return (list(METHODS).index(method) if method in METHODS else len(METHODS), method, variant)


def method_argv(name: str) -> list[str]:
    """train options that select a method (every METHOD_KEYS setting, spelled out)."""
    argv = []
    for k, v in METHODS[name].items():
        if isinstance(v, bool):          # a flag: given when on (train's default is off)
            argv += ["--" + k.replace("_", "-")] if v else []
            continue
        argv += ["--lambda" if k == "lam" else "--" + k.replace("_", "-"),
                 f"{v:g}" if isinstance(v, float) else str(v)]
    return argv
