"""One owner per choice: an init registered in the table (``fastreg.lab.inits``) is a ``--init``
choice with its help line, a sweep method and a report label, with no other file changed; the
same for a prior (``fastreg.lab.priors``). And the walk of ``--init`` from the command line to
the code that applies it stays short."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from fastreg.lab import inits, methods, priors, settings, sweep
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
    assert "dummy (a test's own start)" in text and "{default,bank,cov,vae,chain,finetune,dummy}" in text
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


def test_the_builtin_methods_keep_their_names_and_settings():
    """The menu the docs and the committed reports use: names, order and what each sets."""
    menu = methods.methods()
    assert list(menu)[:6] == list(methods.PRESETS["seed"]) and list(menu)[-1] == "filterinit+vae"
    for name, s in menu.items():
        assert methods.method_of(s) == name, name
    assert menu["chaininit+l2sp"]["prior_weight"] == priors.L2SP_WEIGHT
    assert menu["filterinit+advf1-decay"]["lambda_schedule"] == "linear"


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
    assert _files_naming("init_of") <= {"fastreg/lab/inits.py", "fastreg/lab/train.py"}
    assert _files_naming("INITS") <= {"fastreg/lab/inits.py", "fastreg/lab/settings.py", "fastreg/lab/methods.py",
                                       "fastreg/lab/train.py", "fastreg/lab/sweep.py"}
    src = (ROOT / "fastreg/lab/train.py").read_text()
    assert "init.apply(start)" in src and '"chain"' not in src and '"cov"' not in src
    assert inits.INITS["chain"].copies and not inits.INITS["bank"].copies
