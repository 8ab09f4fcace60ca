"""One owner per choice: an init registered in the table (``fastreg.lab.inits``) is a ``--init``
choice with its help line, a sweep method and a report label, with no other file changed; the
same for a prior (``fastreg.lab.priors``). And the walk of ``--init`` from the command line to
the code that applies it stays short."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from fastreg.lab import inits, methods, settings, sweep
from fastreg.lab.inits import INITS, Init, register_init
from fastreg.lab.priors import PRIORS, Prior, register_prior

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def dummy_init():
    applied = []
    entry = register_init(Init("dummy", "", "a test's own start", apply=lambda st: applied.append(st) or [],
                               label=lambda s: "dummyinit", words=lambda s: "start from the test's dummy",
                               methods={"dummyinit": {"init": "dummy"}}))
    yield entry, applied
    del INITS["dummy"]


@pytest.fixture
def dummy_prior():
    entry = register_prior(Prior("dummyp", "", "a test's own penalty", build=lambda st, copied: None,
                                 label=lambda s: "dummyp", words=lambda s: "the test's dummy penalty",
                                 methods={"dummyp": {"prior": "dummyp"}}))
    yield entry
    del PRIORS["dummyp"]


def test_a_registered_init_is_everywhere(dummy_init):
    text = " ".join(settings.build_parser().format_help().split())
    assert "dummy (a test's own start)" in text and "{default,bank,cov,vae,chain,transfer,finetune,dummy}" in text
    args = settings.build_parser().parse_args(["--init", "dummy"])           # a choice of --init
    assert args.init == "dummy"
    assert "dummyinit" in methods.methods() and methods.methods()["dummyinit"]["init"] == "dummy"
    help_text = sweep.build_parser().format_help()
    assert "dummyinit" in help_text and "start from the test's dummy" in help_text
    assert methods.method_of({"init": "dummy", "lam": 1.0}) == "dummyinit+adv1"      # the report's label
    assert methods.method_argv("dummyinit")[methods.method_argv("dummyinit").index("--init") + 1] == "dummy"


def test_a_registered_prior_is_everywhere(dummy_prior):
    assert settings.build_parser().parse_args(["--prior", "dummyp"]).prior == "dummyp"
    assert "dummyp" in sweep.build_parser().format_help()
    assert methods.method_of({"prior": "dummyp", "init": "bank", "init_unit": "filter"}) == "filterinit+dummyp"


K = dict(lam=0.0, init="default", init_unit="slice", d_unit="slice", prior="none", prior_weight=1.0,
         prior_unit="filter", lambda_schedule="constant", chain_norms=False)
MENU = {   # the sweep's methods as the docs and the committed reports name them, in the report's order
    "baseline": {}, "adv0.1": dict(lam=0.1), "adv1": dict(lam=1.0), "adv10": dict(lam=10.0),
    "bankinit": dict(init="bank"), "bankinit+adv1": dict(init="bank", lam=1.0),
    "filterinit": dict(init="bank", init_unit="filter"), "covinit": dict(init="cov", init_unit="filter"),
    "covinit-slice": dict(init="cov"), "gauss": dict(prior="gauss", prior_weight=1e4),
    "advf1": dict(lam=1.0, d_unit="filter"), "filterinit+adv1": dict(init="bank", init_unit="filter", lam=1.0),
    "filterinit+advf1": dict(init="bank", init_unit="filter", lam=1.0, d_unit="filter"),
    "filterinit+advf1-decay": dict(init="bank", init_unit="filter", lam=1.0, d_unit="filter",
                                   lambda_schedule="linear"),
    "covinit+advf1": dict(init="cov", init_unit="filter", lam=1.0, d_unit="filter"),
    "filterinit+gauss": dict(init="bank", init_unit="filter", prior="gauss", prior_weight=1e4),
    "chaininit": dict(init="chain"), "chaininit-norms": dict(init="chain", chain_norms=True),
    "chaininit+advf1": dict(init="chain", lam=1.0, d_unit="filter"),
    "chaininit+gauss": dict(init="chain", prior="gauss", prior_weight=1e4),
    "chaininit+l2sp": dict(init="chain", prior="l2sp", prior_weight=0.01), "finetune": dict(init="finetune"),
    "vaeinit": dict(init="vae", init_unit="filter"), "vaeinit-slice": dict(init="vae"),
    "vae": dict(prior="vae", prior_weight=1e4),
    "filterinit+vae": dict(init="bank", init_unit="filter", prior="vae", prior_weight=1e4),
    "transferinit": dict(init="transfer"), "transferinit-norms": dict(init="transfer", chain_norms=True),
    "transferinit-norms+l2sp": dict(init="transfer", chain_norms=True, prior="l2sp", prior_weight=0.01),
    "vaeinit-slice-unscaled": dict(init="vae", init_scale="none"),
    "vae-slice": dict(prior="vae", prior_weight=1e4, prior_unit="slice"),
    **{f"vaeinit-slice-unscaled+vi-{p}": dict(init="vae", init_scale="none", inference="vi", vi_prior=p)
       for p in ("normal", "loguniform", "loguniform-trunc", "vae")},
}


def test_the_builtin_methods_keep_their_names_settings_and_order():
    """The menu the docs and the committed reports use: every name, in order, with what it sets."""
    menu = methods.methods()
    assert list(menu) == list(MENU)
    for name, s in MENU.items():
        assert menu[name] == {**K, **s}, name
        assert methods.method_of(menu[name]) == name, name


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from helpers import make_npz_data
    return make_npz_data(tmp_path_factory.mktemp("data"), per_class_train=5, per_class_test=2)


def _settings(data, **kw):
    a = settings.build_parser().parse_args(["--data-root", str(data), "--bank", "none", "--train-size", "10",
                                            "--width", "0.125", "--epochs", "1"])
    settings.resolve_defaults(a)
    return settings.Settings({**settings.config_of(a), **kw})


@pytest.mark.parametrize("copies", [False, True])
def test_prepare_applies_a_registered_init_before_or_after_the_prior_as_its_entry_says(data, copies):
    """prepare dispatches through the tables only: a drawn init runs before the prior is built,
    a copying one after it, and a prior that needs a copied start gets what the init copied."""
    from fastreg.lab.train import prepare
    calls = []
    register_init(Init("dummy", "", "a test's start", label=lambda s: "dummyinit", words=lambda s: "",
                       apply=lambda st: calls.append(("init", list(st.layers))) or ["conv1"], copies=copies))
    register_prior(Prior("dummyp", "", "a test's penalty", label=lambda s: "dummyp", words=lambda s: "",
                         build=lambda st, copied: calls.append(("prior", copied)) or None))
    register_prior(Prior("dummyc", "copied", "a test's pull", label=lambda s: "dummyc", words=lambda s: "",
                         build=lambda st, copied: calls.append(("pull", copied)) or None))
    try:
        run = prepare(_settings(data, init="dummy", prior="dummyp"))
        assert run.layers == ["conv1"] and run.reg is None
        assert calls == ([("prior", []), ("init", ["conv1"])] if copies else [("init", ["conv1"]), ("prior", ["conv1"])])
        calls.clear()
        if copies:
            prepare(_settings(data, init="dummy", prior="dummyc"))
            assert calls == [("init", ["conv1"]), ("pull", ["conv1"])]
        else:
            with pytest.raises(Exception, match="needs --init"):
                prepare(_settings(data, init="dummy", prior="dummyc"))
    finally:
        del INITS["dummy"], PRIORS["dummyp"], PRIORS["dummyc"]


def _files_naming(symbol: str) -> set[str]:
    """The package files whose code (not docstrings) names ``symbol``."""
    out = set()
    for f in (ROOT / "fastreg").rglob("*.py"):
        tree = ast.parse(f.read_text())
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | \
                {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        if symbol in names:
            out.add(str(f.relative_to(ROOT)))
    return out


def test_the_walk_of_init_enters_at_most_three_files():
    """--init is parsed in settings.py, dispatched in train.py's prepare through the table,
    and applied by the table's entry (inits.py): no other file decides what an init does."""
    assert _files_naming("init_of") == {"fastreg/lab/train.py"}         # the one dispatch
    assert _files_naming("INITS") <= {"fastreg/lab/inits.py", "fastreg/lab/settings.py", "fastreg/lab/methods.py",
                                       "fastreg/lab/train.py", "fastreg/lab/sweep.py"}
    src = (ROOT / "fastreg/lab/train.py").read_text()
    assert "init.apply(start)" in src and '"chain"' not in src and '"cov"' not in src
    assert inits.INITS["chain"].copies and not inits.INITS["bank"].copies
