"""What each filter prior costs per training step (DWPNet at half width, batch 100, conv1).

Inits (bank, filter, cov) cost nothing per step: they run once. Group ``train_step-priors``:
``plain`` (no prior), ``adv1`` (slice D), ``advf1`` (whole-filter D), ``gauss`` (Gaussian
penalty over whole filters), ``adv1-all`` (slice D on every conv layer), ``l2sp-all`` (L2-SP on
every conv layer), ``vae`` (the kernel VAE's -ELBO over conv1's whole filters), on CUDA when
there is one, else on the CPU (one thread, fp32:
what a CPU run without native bf16 does). The last timed step's loss must be finite.
"""
from __future__ import annotations

import pytest
import torch

from fastreg.bank import DEFAULT_BANK, KernelBank
from fastreg.chain import L2SP
from fastreg.vae import VAEPrior, default_size, fit
from fastreg.models import DWPNet
from fastreg.prior import GaussianPrior
from fastreg.regularizer import AdversarialRegularizer
from step_helper import make_train_step

HAS_CUDA = torch.cuda.is_available()
DEV = "cuda" if HAS_CUDA else "cpu"


pytestmark = pytest.mark.usefixtures("one_cpu_thread")


def _step(prior: str):
    torch.manual_seed(0)
    model = DWPNet(width=0.5).to(DEV)
    bank = KernelBank.load(DEFAULT_BANK)
    reg = {"plain": None,
           "adv1": lambda: AdversarialRegularizer(model, bank, ["conv1"], 1.0).to(DEV),
           "advf1": lambda: AdversarialRegularizer(model, bank, ["conv1"], 1.0, unit="filter").to(DEV),
           "adv1-all": lambda: AdversarialRegularizer(model, bank, ["conv1", "conv2", "conv3", "conv4"],
                                                      1.0).to(DEV),
           "gauss": lambda: GaussianPrior(model, bank, ["conv1"], 1.0),
           "l2sp-all": lambda: L2SP(model, ["conv1", "conv2", "conv3", "conv4"], 0.01).to(DEV),
           "vae": lambda: _vae_prior(model, bank)}[prior]
    reg = reg() if reg else None
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(100, 3, 32, 32, device=DEV)
    y = torch.randint(0, 10, (100,), device=DEV)

    train_step = make_train_step(model, opt, x, y, reg, bf16=HAS_CUDA)
    return lambda: float(train_step())


def _vae_prior(model, bank):
    """The VAE penalty on conv1's whole filters; a short fit (the cost per step does not depend
    on how well it fits)."""
    x = bank.units("conv1", "filter").reshape(len(bank.layers["conv1"]) // 3, -1)
    vae, _ = fit(x, *default_size(x.shape[1], 7), epochs=2, seed=0)
    scale = float(model.conv1.weight.detach().std() / bank.layers["conv1"].std())
    return VAEPrior(model, {"conv1": vae}, 1.0, {"conv1": "filter"}, {"conv1": scale}).to(DEV)


@pytest.mark.parametrize("prior", ["plain", "adv1", "advf1", "gauss", "adv1-all", "l2sp-all", "vae"])
def test_prior_step(benchmark, prior):
    step = _step(prior)
    benchmark.group = "train_step-priors"
    benchmark.extra_info.update(impl=prior, device=DEV, threads=torch.get_num_threads())
    loss = benchmark.pedantic(step, rounds=20 if HAS_CUDA else 8, warmup_rounds=2, iterations=1)
    assert torch.isfinite(torch.tensor(loss))
