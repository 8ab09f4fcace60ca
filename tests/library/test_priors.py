"""Filter priors from a bank (DESIGN.md §8): whole filters, covariance init, the Gaussian
penalty, λ decay, and the method names the sweep and the report use."""
from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from fastreg.lab import train
from fastreg.bank import KernelBank
from fastreg.lab.cli import run_main
from fastreg.errors import BankError
from fastreg.gaussian import fit_gaussian
from fastreg.init import init_from_bank
from fastreg.models import DWPNet
from fastreg.prior import GaussianPrior
from fastreg.terms import Regularizer, Terms
from fastreg.regularizer import AdversarialRegularizer
from fastreg.lab.methods import method_of, methods
from helpers import make_npz_data, smooth_kernels


def _filter_bank(n_filters: int = 200, seed: int = 0) -> KernelBank:
    """conv1 (3x7x7) and conv2 (4x5x5) filters with structure across their channels: the
    G and B slices are the R slice plus a little noise, so whole filters differ from
    filters stitched from unrelated slices."""
    g = torch.Generator().manual_seed(seed)
    r = smooth_kernels(n_filters, 7, seed)
    c1 = torch.stack([r, 0.8 * r + 0.1 * torch.randn(r.shape, generator=g),
                      -0.5 * r + 0.1 * torch.randn(r.shape, generator=g)], 1)
    c2 = smooth_kernels(n_filters * 4, 5, seed + 1).view(n_filters, 4, 5, 5)
    return KernelBank({"conv1": c1.reshape(-1, 7, 7), "conv2": c2.reshape(-1, 5, 5)},
                      {"filter_rows": '{"conv1": 3, "conv2": 4}'})


# ----------------------------------------------------------------------------- the Gaussian
def test_fit_gaussian_matches_float64_statistics_and_shrinks():
    x = torch.randn(500, 6, generator=torch.Generator().manual_seed(0)) @ torch.randn(6, 6)
    g = fit_gaussian(x, 0.0)
    xd = x.double()
    cov = (xd - xd.mean(0)).T @ (xd - xd.mean(0)) / 499
    assert torch.allclose(g.mean, xd.mean(0)) and torch.allclose(g.cov, cov)
    s = fit_gaussian(x, 0.25)
    assert torch.allclose(s.cov, 0.75 * cov + 0.25 * torch.trace(cov) / 6 * torch.eye(6, dtype=torch.float64))
    assert torch.allclose(s.chol @ s.chol.T, s.cov)


def test_singular_covariance_refused_without_shrinkage():
    few = torch.randn(10, 20)                  # 10 points in 20 dimensions: rank 9
    with pytest.raises(BankError, match="singular"):
        fit_gaussian(few, 0.0)
    assert fit_gaussian(few, 0.1).dim == 20
    with pytest.raises(BankError):
        fit_gaussian(few, 1.5)


def test_nll_value_and_gradient_against_float64_reference():
    g = fit_gaussian(torch.randn(300, 5) * torch.tensor([1.0, 2, 3, 0.5, 0.1]), 0.05)
    x = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    ref = -torch.distributions.MultivariateNormal(g.mean, covariance_matrix=g.cov).log_prob(x)
    got = g.nll(x)
    assert torch.allclose(got, ref, rtol=1e-10)
    (gr,) = torch.autograd.grad(ref.sum(), x)
    (gg,) = torch.autograd.grad(g.nll(x).sum(), x)
    assert torch.allclose(gg, gr, rtol=1e-10)


def test_samples_follow_the_fitted_gaussian():
    bank = _filter_bank()
    law = bank.gaussian("conv1", "filter", 0.1)
    z = law.sample(40_000, torch.Generator().manual_seed(1))
    assert z.shape == (40_000, 147)
    assert (z.mean(0) - law.mean).abs().max() < 0.05 * law.cov.diagonal().sqrt().max()
    emp = torch.cov(z.T)
    assert float((emp - law.cov).norm() / law.cov.norm()) < 0.05
    assert bank.gaussian("conv1", "filter", 0.1) is law           # fitted once, kept with the bank


# ------------------------------------------------------------------------ initialization
def _scale_back(w: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return w * (ref.std() / w.std())


@pytest.mark.parametrize("unit", ["filter", "slice"])
def test_bank_init_draws_whole_filters_or_slices(unit):
    bank = _filter_bank()
    torch.manual_seed(0)
    model = DWPNet(width=0.25)
    std0 = model.conv1.weight.std().item()
    assert init_from_bank(model, bank, ["conv1"], "bank", unit, seed=3) == {"conv1": unit}
    w = model.conv1.weight.detach()
    assert w.std().item() == pytest.approx(std0, rel=1e-5)         # the default init's scale
    filt = bank.filters("conv1").reshape(200, -1).double()
    got = _scale_back(w.reshape(len(w), -1).double(), filt)
    # every drawn filter is a bank filter (up to the one common scale) only for unit=filter
    d = torch.cdist(got / got.norm(dim=1, keepdim=True), filt / filt.norm(dim=1, keepdim=True))
    whole = (d.min(1).values < 1e-4).float().mean().item()
    assert whole == 1.0 if unit == "filter" else whole < 0.2


@pytest.mark.parametrize("unit", ["filter", "slice"])
def test_cov_init_keeps_the_channel_structure_only_for_whole_filters(unit):
    bank = _filter_bank()
    torch.manual_seed(0)
    model = DWPNet(width=4.0)                                      # 512 conv1 filters: good statistics
    std0 = model.conv1.weight.std().item()
    init_from_bank(model, bank, ["conv1"], "cov", unit, seed=1)
    w = model.conv1.weight.detach()
    assert w.shape == (512, 3, 7, 7) and w.std().item() == pytest.approx(std0, rel=1e-5)
    # R-G correlation of a filter's slices: strong in the bank (G = 0.8 R + noise)
    corr = lambda f: torch.corrcoef(torch.stack([f[:, 0].flatten(), f[:, 1].flatten()]))[0, 1].item()  # noqa: E731
    assert corr(bank.filters("conv1")) > 0.9
    assert corr(w) > 0.8 if unit == "filter" else abs(corr(w)) < 0.1


def test_filter_init_falls_back_to_slices_where_channels_differ(capsys):
    bank = _filter_bank()
    model = DWPNet(width=0.25)                                     # conv2 has 32 inputs, the bank's filters 4
    assert init_from_bank(model, bank, ["conv2"], "bank", "filter", seed=0) == {"conv2": "slice"}
    assert "drawing 2-D slices" in capsys.readouterr().err


def test_pooled_filter_init_draws_from_the_bank_layers_with_the_layers_channels(capsys):
    """A layer served by a pool of bank layers of its kernel size takes whole filters from
    those whose filters have its input channels (not slices from the whole pool)."""
    g = torch.Generator().manual_seed(0)
    bank = KernelBank({"a.stem": torch.randn(5 * 3, 3, 3, generator=g),
                       "a.block": torch.randn(7 * 4, 3, 3, generator=g)},          # 4-channel filters
                      {"filter_rows": json.dumps({"a.stem": 3, "a.block": 4})})
    conv = nn.Sequential(nn.Conv2d(4, 6, 3))
    assert init_from_bank(conv, bank, "all", seed=0) == {"0": "filter"}
    assert "slices" not in capsys.readouterr().err
    unit = lambda t: t / t.norm(dim=1, keepdim=True)            # noqa: E731  (one common rescale)
    w = unit(conv[0].weight.detach().double().reshape(6, -1))
    ref = unit(bank.filters("a.block").double().reshape(7, -1))
    assert torch.cdist(w, ref).min(1).values.max() < 1e-6       # every filter is an a.block filter
    # the whole-filter D and the Gaussian penalty take the same bank layers
    reg = AdversarialRegularizer(conv, bank, "all", unit="filter")
    assert torch.equal(reg.bank_0, bank.units("a.block", "filter"))
    assert torch.isfinite(reg.generator_loss())
    prior = GaussianPrior(conv, bank, "all", weight=1.0, unit="filter")
    assert prior.units["0"] == "filter" and torch.isfinite(prior.generator_loss())


# ----------------------------------------------------------------------------- the penalty
@pytest.mark.parametrize("unit", ["filter", "slice"])
def test_gaussian_penalty_value_and_gradient_against_float64(unit):
    """α · mean NLL per weight, the bank scaled to the layer's init std, against a float64
    reference built here from the bank (mean, shrunk covariance, MultivariateNormal)."""
    bank, alpha, shrink = _filter_bank(), 0.7, 0.1
    torch.manual_seed(0)
    model = DWPNet(width=0.25)
    w = model.conv1.weight
    prior = GaussianPrior(model, bank, ["conv1"], alpha, unit, shrink)
    rows = bank.layers["conv1"].double()
    x = (bank.filters("conv1").reshape(200, -1) if unit == "filter" else rows.reshape(-1, 49)).double()
    x = x * (w.detach().double().std() / rows.std())
    d = x.shape[1]
    cov = torch.cov(x.T)
    cov = (1 - shrink) * cov + shrink * torch.trace(cov) / d * torch.eye(d, dtype=torch.float64)
    law = torch.distributions.MultivariateNormal(x.mean(0), covariance_matrix=cov)
    wd = w.detach().double().requires_grad_()
    ref = alpha * -law.log_prob(wd.reshape(len(wd), -1) if unit == "filter" else wd.reshape(-1, 49)).mean() / d
    (ref_grad,) = torch.autograd.grad(ref, wd)
    w.grad = None
    got = prior.generator_loss()
    got.backward()
    assert abs(got.item() - ref.item()) <= 1e-4 * abs(ref.item())
    assert float((w.grad.double() - ref_grad).norm() / ref_grad.norm()) < 1e-4
    assert prior.pop_stats()["prior_nll/conv1"] == pytest.approx(got.item() / alpha, rel=1e-6)


def test_terms_sum_the_penalty_and_the_adversarial_term():
    bank = _filter_bank()
    torch.manual_seed(0)
    model = DWPNet(width=0.25)
    adv = AdversarialRegularizer(model, bank, ["conv1"], lam=1.0)
    prior = GaussianPrior(model, bank, ["conv1"], 0.5)
    terms = Terms({"adv": adv, "prior": prior})
    total = terms.generator_loss()
    assert torch.allclose(total, adv._pending["conv1"][1].g_loss + prior.generator_loss())
    terms.discriminator_step()
    assert int(adv.step) == 1 and set(terms.pop_stats()) >= {"g_loss", "prior_nll/conv1"}
    with pytest.raises(ValueError, match="terms"):
        terms.load_checkpoint_state({"adv": adv.checkpoint_state()})
    assert all(isinstance(t, Regularizer) for t in (adv, prior, terms))           # the loop's interface
    assert terms.trained_parameters() == list(adv.discs.parameters())             # D only: the prior trains nothing
    assert terms.distribute(adv.dist) is terms


# ----------------------------------------------------------------- whole-filter D, λ decay
def test_whole_filter_discriminator_sees_whole_bank_filters(monkeypatch):
    from fastreg import regularizer as R
    bank = _filter_bank()
    drawn = []
    real_sample = R.sample_kernels

    def spy(b, n, seed, offset=0):
        out = real_sample(b, n, seed, offset)
        drawn.append(out)
        return out
    monkeypatch.setattr(R, "sample_kernels", spy)
    model = DWPNet(width=0.25)
    reg = AdversarialRegularizer(model, bank, ["conv1"], lam=1.0, unit="filter")
    assert reg.discs["conv1"].dim == 147 and reg.discs["conv1"].channels == 3
    reg.generator_loss()
    assert reg._pending["conv1"][0].shape == (32, 147)              # one row per output filter
    reg.discriminator_step()
    kernels, idx = drawn[0]
    assert kernels.shape == (32, 3, 49) and torch.equal(kernels, bank.filters("conv1")[idx].reshape(32, 3, 49))
    reg2 = AdversarialRegularizer(model, bank, ["conv2"], unit="filter")   # 32 inputs vs 4-channel filters
    assert reg2.units == {"conv2": "slice"} and reg2.discs["conv2"].dim == 25   # falls back to 2-D slices


def test_lambda_decays_linearly_to_zero():
    torch.manual_seed(0)
    model = DWPNet(width=0.125)
    reg = AdversarialRegularizer(model, _filter_bank(), ["conv1"], lam=2.0, lam_decay_steps=4)
    lams = []
    for _ in range(6):
        lams.append(reg.current_lam())
        model.zero_grad()
        (reg.generator_loss() + 0 * model.conv1.weight.sum()).backward()
        reg.discriminator_step()
    assert lams == [2.0, 1.5, 1.0, 0.5, 0.0, 0.0]
    assert torch.count_nonzero(model.conv1.weight.grad) == 0        # no pull once λ reached 0


# ------------------------------------------------------------------------- names and CLI
def test_method_names_round_trip_and_old_runs_keep_theirs():
    for name, settings in methods().items():
        assert method_of(settings) == name
    assert method_of({"lam": 1.0, "init": "bank"}) == "bankinit+adv1"   # run made before init_unit
    assert method_of({"lam": 0.0, "init": "default", "bank": "none"}) == "baseline (no D)"
    assert method_of({"lam": 10.0, "prior": "gauss", "prior_weight": 0.1, "prior_unit": "slice"}) \
        == "gauss0.1-slice+adv10"


def test_sweep_spells_each_method_out_for_train():
    from fastreg.lab.sweep import method_argv
    p = train.build_parser()
    for name in methods():
        cfg = train.config_of(p.parse_args(method_argv(name)))
        assert method_of(cfg) == name


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_npz_data(tmp_path_factory.mktemp("data"), per_class_train=25, per_class_test=5)


@pytest.fixture(scope="module")
def bank_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("bank") / "bank.safetensors"
    _filter_bank().save(path)
    return path


@pytest.fixture(scope="module")
def few_filters(tmp_path_factory):
    """100 whole conv1 filters of 147 numbers: their covariance is singular."""
    path = tmp_path_factory.mktemp("bank") / "few.safetensors"
    _filter_bank(100).save(path)
    return path


FAST = ["--width", "0.125", "--epochs", "2", "--eval-size", "50", "--batch-size", "50", "--train-size", "50"]


def test_train_with_every_prior_at_once(data, bank_file, tmp_path):
    import json
    out = tmp_path / "run"
    assert run_main(train.main, ["--data-root", str(data), "--bank", str(bank_file), "--out", str(out),
                                 *FAST, "--init", "cov", "--prior", "gauss", "--prior-weight", "0.5",
                                 "--d-unit", "filter", "--lambda-schedule", "linear"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert method_of(cfg) == "covinit+gauss0.5+advf1-decay"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert "prior_nll/conv1" in rows[-1] and "g_loss/conv1" in rows[-1]
    assert math.isfinite(json.loads((out / "final.json").read_text())["test_acc"])


@pytest.mark.parametrize("extra,msg", [
    (["--prior", "gauss", "--prior-weight", "-1"], "expected a finite number >= 0"),
    (["--init", "cov", "--shrink", "0", "--bank", "FEW"], "singular"),
    (["--shrink", "1.5"], "in [0, 1]"),
    (["--prior", "gauss", "--bank", "none"], "needs a bank"),
])
def test_bad_prior_settings_one_line_exit_2_nothing_written(data, bank_file, few_filters, tmp_path, capsys,
                                                           extra, msg):
    out = tmp_path / "run"
    extra = [str(few_filters) if e == "FEW" else e for e in extra]
    argv = ["--data-root", str(data), "--bank", str(bank_file), "--out", str(out), *FAST, *extra]
    try:
        rc = run_main(train.main, argv)
    except SystemExit as e:                                        # argparse's own refusal
        rc = e.code
    assert rc == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1 and not out.exists()


def test_bank_accessors_leave_torch_rng_alone():
    """Rows per filter come from the layer plan, not from building a model: a hidden draw from
    torch's RNG before D's init would change every D (and so every λ > 0 run)."""
    from fastreg.bank import bank_file
    bank = KernelBank.load(bank_file("dwpnet_e4"))  # no filter_rows metadata: read from its architecture
    assert "filter_rows" not in bank.meta
    torch.manual_seed(0)
    want = torch.rand(3)
    torch.manual_seed(0)
    assert (bank.filter_rows("conv1"), bank.filter_rows("conv2"), bank.rows_of(("conv2",))) == (3, 64, 64)
    bank.units("conv2", "filter")
    bank.source("conv3", 5)
    assert torch.equal(torch.rand(3), want)
