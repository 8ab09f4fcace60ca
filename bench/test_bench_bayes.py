"""What variational inference costs (DESIGN.md §15), on the Deep Weight Prior's own setting:
``FConvMNIST`` at full width, batch 256 of 1×28×28 digits, both convs Bayesian, fp32 (the
MNIST runs train without autocast).

Group ``train_step-bayes``: one training step of the point-estimate network (``plain``) and
of the variational one under each prior (``vi-normal``, ``vi-loguniform``, ``vi-trunc``,
``vi-vae``: the Deep Weight Prior's bound through a kernel VAE per conv, one weight sample a
step; ``vi-vae-conv``: the same bound through the paper's convolutional VAEs, its layer sizes:
hidden 32 and z 2 for 7×7, hidden 64 and z 4 for 5×5, the cost of ``train --vae-files``). Group ``predict-bayes``: predicting 1000 digits, one pass of the point estimate
(``plain``) against the posterior ensemble the lab reports (``vi-10``: softmax averaged over
10 weight samples). On CUDA when there is one, else on the CPU on one thread. The VAEs get a
short fit on the packaged bank's 7×7 and 5×5 slices, the convolutional ones none: the cost
per step does not depend on how well they fit. Every timed loss and prediction must be finite.
"""
from __future__ import annotations

import pytest
import torch

from fastreg.bank import DEFAULT_BANK, KernelBank
from fastreg.bayes import TRUNC, KLTerm, to_bayes
from fastreg.models import FConvMNIST
from fastreg.vae import vae_for
from fastreg.vae_conv import ConvKernelVAE
from step_helper import make_train_step

HAS_CUDA = torch.cuda.is_available()
DEV = "cuda" if HAS_CUDA else "cpu"
BATCH, N_TRAIN = 256, 1000
PRIORS = {"vi-normal": "normal", "vi-loguniform": "loguniform", "vi-trunc": TRUNC, "vi-vae": "vae",
          "vi-vae-conv": "vae"}

pytestmark = pytest.mark.usefixtures("one_cpu_thread")


def _slice_vaes(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """A kernel VAE per conv over the bank's 2-D slices that serve it (DWP's sizes), one epoch."""
    bank = KernelBank.load(DEFAULT_BANK)
    return {n: vae_for(bank, n, getattr(model, n).weight.shape, "slice", epochs=1)[0] for n in ("conv1", "conv2")}


def _model(variant: str) -> tuple[torch.nn.Module, KLTerm | None]:
    torch.manual_seed(0)
    model = FConvMNIST()
    if variant == "plain":
        return model.to(DEV), None
    prior = PRIORS[variant]
    if variant == "vi-vae-conv":          # the paper's trained VAEs' shapes (docs/scripts/import_dwp_vae.py)
        vaes = {"conv1": ConvKernelVAE(7, 32, 2), "conv2": ConvKernelVAE(5, 64, 4)}
    else:
        vaes = _slice_vaes(model) if prior == "vae" else None
    to_bayes(model, ["conv1", "conv2"], posterior="trunc-alpha" if prior == TRUNC else "gaussian")
    model.to(DEV)
    return model, KLTerm(model, prior, N_TRAIN, 1.0, vaes).to(DEV)


@pytest.mark.parametrize("variant", ["plain", *PRIORS])
def test_bayes_train_step(benchmark, variant):
    model, kl = _model(variant)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(BATCH, 1, 28, 28, device=DEV)
    y = torch.randint(0, 10, (BATCH,), device=DEV)
    step = make_train_step(model, opt, x, y, kl)
    benchmark.group = "train_step-bayes"
    benchmark.extra_info.update(impl=variant, device=DEV, threads=torch.get_num_threads())
    loss = benchmark.pedantic(lambda: float(step()), rounds=20 if HAS_CUDA else 5, warmup_rounds=2, iterations=1)
    assert torch.isfinite(torch.tensor(loss))


@pytest.mark.parametrize("variant", ["plain", "vi-10"])
def test_bayes_predict(benchmark, variant):
    model, _ = _model("plain" if variant == "plain" else "vi-normal")
    model.eval()
    samples = getattr(model, "prediction_samples", 1)
    x = torch.randn(1000, 1, 28, 28, device=DEV)

    @torch.no_grad()
    def predict() -> torch.Tensor:
        p = sum(model(x).softmax(-1) for _ in range(samples)) / samples
        if HAS_CUDA:
            torch.cuda.synchronize()
        return p

    benchmark.group = "predict-bayes"
    benchmark.extra_info.update(impl=variant, device=DEV, samples=samples, threads=torch.get_num_threads())
    p = benchmark.pedantic(predict, rounds=20 if HAS_CUDA else 5, warmup_rounds=1, iterations=1)
    assert samples == (1 if variant == "plain" else 10)
    assert torch.isfinite(p).all() and torch.allclose(p.sum(-1), torch.ones(1000, device=DEV))
