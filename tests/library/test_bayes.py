"""Variational inference over conv weights (fastreg.bayes, DESIGN.md §15): the KL terms against
float64 hand computations, the log-uniform approximation against its published formula, the
local reparameterization's moments, the Deep Weight Prior's bound, and a VI run that learns."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fastreg.bayes import (C1, C2, C3, K1, K2, K3, BayesConv2d, KLTerm, TruncAlphaConv2d, entropy, kl_loguniform,
                           kl_loguniform_trunc, kl_normal, kl_vae_bound, predicting, to_bayes)
from fastreg.layers import conv_layers
from fastreg.vae import KernelVAE


def _layer(seed: int = 0) -> BayesConv2d:
    torch.manual_seed(seed)
    m = BayesConv2d(nn.Conv2d(2, 3, 3), log_sigma2=-4.0)
    with torch.no_grad():
        m.log_sigma2.uniform_(-6, 0)
    return m


def test_kl_normal_and_entropy_against_float64_by_hand():
    m = _layer()
    mu, ls2 = m.weight.detach().double().numpy(), m.log_sigma2.detach().double().numpy()
    want = sum(0.5 * (math.exp(l) + u * u - 1 - l) for u, l in zip(mu.ravel(), ls2.ravel()))
    assert kl_normal(m.weight, m.log_sigma2).item() == pytest.approx(want, rel=1e-5)
    want_h = sum(0.5 * math.log(2 * math.pi * math.e * math.exp(l)) for l in ls2.ravel())
    assert entropy(m.log_sigma2).item() == pytest.approx(want_h, rel=1e-5)


@pytest.mark.parametrize("log_alpha", [-6.0, -2.0, 0.0, 1.5, 4.0])
def test_kl_loguniform_is_the_published_approximation(log_alpha):
    """Molchanov et al. (2017), eq. 14, at a few log α: −KL ≈ k1·σ(k2 + k3 log α) − ½ log(1 + 1/α) − k1."""
    mu = torch.tensor([0.7], dtype=torch.float64)
    ls2 = torch.log(mu * mu) + log_alpha
    a = math.exp(log_alpha)
    want = -(0.63576 / (1 + math.exp(-(1.87320 + 1.48695 * log_alpha))) - 0.5 * math.log(1 + 1 / a) - 0.63576)
    assert kl_loguniform(mu, ls2).item() == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert (K1, K2, K3) == (0.63576, 1.87320, 1.48695)


def test_kl_loguniform_falls_as_the_noise_grows():
    mu = torch.full((5,), 0.5)
    kls = [float(kl_loguniform(mu, torch.log(mu * mu) + la)) for la in (-8, -4, 0, 4, 8)]
    assert all(a > b for a, b in zip(kls, kls[1:])) and kls[-1] < 0.01 * kls[0]


@pytest.mark.parametrize("alpha", [0.01, 0.12, 0.5, 0.9])
def test_kl_loguniform_trunc_is_kingmas_approximation(alpha):
    """Kingma et al. (2015), eq. 21, α ≤ 1: −KL ≈ ½ log α + c1 α + c2 α² + c3 α³; the
    Deep Weight Prior code's constants; α = sigmoid(logit), so it never reaches 1."""
    logit = torch.tensor([math.log(alpha / (1 - alpha))] * 3, dtype=torch.float64)
    want = -3 * (0.5 * math.log(alpha) + 1.16145124 * alpha - 1.50204118 * alpha ** 2 + 0.58629921 * alpha ** 3)
    assert kl_loguniform_trunc(logit).item() == pytest.approx(want, rel=1e-9)
    assert (C1, C2, C3) == (1.16145124, -1.50204118, 0.58629921)


def test_the_truncated_alpha_posterior_samples_alpha_mu_squared():
    """``TruncAlphaConv2d``: variance α μ² per weight (α = sigmoid(logit) starting at
    sigmoid(−2)), the outputs' moments those of the weight samples; it serves the truncated
    log-uniform prior and only it, and a mixed model is refused."""
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Conv2d(3, 3, 3))
    w0 = net[0].weight.detach().clone()
    to_bayes(net, ["0", "2"], posterior="trunc-alpha")
    m = net[0]
    assert isinstance(m, TruncAlphaConv2d) and not hasattr(m, "log_sigma2") and torch.equal(m.weight.detach(), w0)
    assert torch.allclose(m.alpha_logit, torch.full_like(w0, -2.0))
    with torch.no_grad():
        m.alpha_logit.uniform_(-3, 1)
        want = torch.sigmoid(m.alpha_logit.double()) * m.weight.double() ** 2
        assert torch.allclose(m.sigma2().double(), want, rtol=1e-6)
        x = torch.randn(1, 2, 5, 5)
        outs = torch.stack([m(x) for _ in range(4000)])
        var = F.conv2d(x * x, want.float())
    assert torch.allclose(outs.mean(0), F.conv2d(x, m.weight, m.bias), atol=4 * float(var.sqrt().max()) / math.sqrt(4000))
    assert torch.allclose(outs.var(0), var, rtol=0.15)
    term = KLTerm(net, "loguniform-trunc", n_train=40)
    want = (kl_loguniform_trunc(net[0].alpha_logit) + kl_loguniform_trunc(net[2].alpha_logit)) / 40
    assert term.generator_loss().item() == pytest.approx(want.item(), rel=1e-6)
    for prior in ("normal", "loguniform"):
        with pytest.raises(ValueError, match="truncated-α posterior and only with it"):
            KLTerm(net, prior, 40)
    gauss = nn.Sequential(nn.Conv2d(2, 3, 3))
    to_bayes(gauss, ["0"])
    with pytest.raises(ValueError, match="truncated-α posterior and only with it"):
        KLTerm(gauss, "loguniform-trunc", 40)
    with pytest.raises(ValueError, match="posterior must be"):
        to_bayes(nn.Sequential(nn.Conv2d(2, 3, 3)), ["0"], posterior="laplace")


def test_local_reparameterization_has_the_weight_samples_moments():
    """Each output is Gaussian with mean conv(x, μ) + b and variance conv(x², σ²): the moments of
    4000 passes match them (the weight-sampling distribution's, since the weights are independent)."""
    m = _layer(1)
    x = torch.randn(1, 2, 5, 5)
    with torch.no_grad():
        outs = torch.stack([m(x) for _ in range(4000)])
        mean = F.conv2d(x, m.weight, m.bias)
        var = F.conv2d(x * x, m.log_sigma2.exp())
    assert torch.allclose(outs.mean(0), mean, atol=4 * float(var.sqrt().max()) / math.sqrt(4000))
    assert torch.allclose(outs.var(0), var, rtol=0.15)
    with predicting(m.eval(), "mean"):
        assert torch.equal(m(x), mean)


def test_the_vae_bound_is_minus_entropy_minus_the_elbo_of_one_sample():
    m = _layer(2)
    torch.manual_seed(5)
    vae = KernelVAE(9, 8, 2).eval()
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    got = kl_vae_bound(m, vae, "slice", 2.0, g1)
    w = (m.weight + torch.exp(0.5 * m.log_sigma2) * torch.randn(m.weight.shape, generator=g2)).reshape(-1, 9)
    eps = torch.randn(len(w), 2, generator=g2)
    want = -entropy(m.log_sigma2) - (vae.elbo(w / 2.0, eps).sum() - w.numel() * math.log(2.0))
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    got.backward()
    assert m.weight.grad.abs().sum() > 0 and m.log_sigma2.grad.abs().sum() > 0


def test_to_bayes_keeps_names_and_weights_and_klterm_is_kl_over_n():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3))
    w0 = net[2].weight.detach().clone()
    to_bayes(net, ["0", "2"], log_sigma2=-8.0, prediction_samples=7)
    assert isinstance(net[2], BayesConv2d) and torch.equal(net[2].weight.detach(), w0)
    assert list(conv_layers(net)) == ["0", "2"] and net.prediction_samples == 7
    term = KLTerm(net, "normal", n_train=50, weight=2.0)
    want = 2.0 * (kl_normal(net[0].weight, net[0].log_sigma2) + kl_normal(net[2].weight, net[2].log_sigma2)) / 50
    assert term.generator_loss().item() == pytest.approx(want.item(), rel=1e-6)
    term.generator_loss()                     # two steps' KL per weight, averaged at the log interval
    numbers = net[0].weight.numel() + net[2].weight.numel()
    kl_per_weight = want.item() * 50 / 2.0 / numbers
    with torch.no_grad():
        net[2].log_sigma2[0].fill_(-6.0)      # one filter's 36 weights of 144 moved: the median stays
        net[2].log_sigma2[1:3].fill_(-7.0)    # 72 more: half the weights at -7 or above, the median -7
    stats = term.pop_stats()
    assert set(stats) == {"kl_per_weight", "log_sigma2/0", "log_sigma2/2"}
    assert stats["kl_per_weight"] == pytest.approx(kl_per_weight, rel=1e-6)
    assert stats["log_sigma2/0"] == pytest.approx(-8.0) and stats["log_sigma2/2"] == pytest.approx(-7.0)
    with pytest.raises(ValueError, match="needs a VAE for each"):
        KLTerm(net, "vae", 50)


def test_a_vi_run_learns_a_toy_problem():
    """Bars: class 0 horizontal, class 1 vertical, in noise. A Bayesian conv net trained on the
    negative ELBO (cross-entropy + KL/N, standard normal prior) classifies held-out images with
    its predictive (10 passes averaged)."""
    g = torch.Generator().manual_seed(0)

    def data(n):
        x = 0.3 * torch.randn(n, 1, 12, 12, generator=g)
        y = torch.randint(0, 2, (n,), generator=g)
        pos = torch.randint(2, 10, (n,), generator=g)
        for i in range(n):
            if y[i]:
                x[i, 0, :, pos[i]] += 1.5
            else:
                x[i, 0, pos[i], :] += 1.5
        return x, y

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(8, 2))
    to_bayes(net, ["0"], log_sigma2=-8.0)
    xtr, ytr = data(200)
    term = KLTerm(net, "normal", n_train=200)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(150):
        loss = F.cross_entropy(net(xtr), ytr) + term.generator_loss()
        opt.zero_grad()
        loss.backward()
        opt.step()
    xte, yte = data(200)
    with torch.no_grad():
        p = torch.stack([F.softmax(net(xte), 1) for _ in range(net.prediction_samples)]).mean(0)
    assert float((p.argmax(1) == yte).float().mean()) > 0.9
    assert net[0].log_sigma2.mean().item() > -8.0       # the KL term pulled the variances up from their init



def test_a_conv_with_its_own_forward_is_refused_and_nothing_is_replaced():
    class SameConv(nn.Conv2d):            # like timm's Conv2dSame: its forward pads itself
        def forward(self, x):
            return super().forward(F.pad(x, (1, 1, 1, 1)))

    net = nn.Sequential(nn.Conv2d(1, 4, 3), SameConv(4, 4, 3))
    with pytest.raises(ValueError, match="layer 1 is a SameConv, a conv with its own forward"):
        to_bayes(net, ["0", "1"])
    assert type(net[0]) is nn.Conv2d and not hasattr(net, "prediction_samples")


def test_an_evaluation_pass_draws_one_weight_sample_for_the_batch():
    """Prediction: each pass is one network drawn from the posterior (the same weights for every
    example), the draw ``μ + σ·ε`` from the global generator."""
    m = _layer(3).eval()
    x = torch.randn(1, 2, 5, 5).expand(4, -1, -1, -1)          # one image, four times
    torch.manual_seed(11)
    with torch.no_grad():
        y = m(x)
    torch.manual_seed(11)
    w = m.weight + torch.exp(0.5 * m.log_sigma2) * torch.randn(m.weight.shape)
    assert torch.allclose(y, F.conv2d(x, w, m.bias), atol=1e-6)
    assert torch.equal(y[0], y[3]) and not torch.equal(y, m(x))   # shared in a pass, new each pass


def test_predicting_locally_or_by_the_mean_and_back():
    """``predicting(net, "local")``: every example and activation gets its own noise, with the
    local trick's moments (two copies of one image differ); ``"mean"``: one deterministic pass of
    μ; on leaving the block, weight samples and ``prediction_samples`` are back."""
    net = nn.Sequential(_layer(5)).eval()
    net.prediction_samples = 10
    m = net[0]
    x = torch.randn(1, 2, 5, 5).expand(2, -1, -1, -1)
    with torch.no_grad():
        mean, var = F.conv2d(x, m.weight, m.bias), F.conv2d(x * x, m.log_sigma2.exp())
        with predicting(net, "mean"):
            assert torch.equal(net(x), mean) and net.prediction_samples == 1
        with predicting(net, "local"):
            y = torch.stack([net(x) for _ in range(4000)])
        assert not torch.equal(y[:, 0], y[:, 1])
        assert torch.allclose(y.mean(0), mean, atol=4 * float(var.sqrt().max()) / math.sqrt(4000))
        assert torch.allclose(y.var(0), var, rtol=0.15)
        z = net(x)
    assert torch.equal(z[0], z[1]) and m.predict == "weights" and net.prediction_samples == 10
    with pytest.raises(ValueError, match="prediction must be one of"):
        with predicting(net, "median"):
            pass


@pytest.mark.cuda
def test_the_posterior_on_cuda_predicts_and_bounds_as_on_the_cpu(monkeypatch):
    """On a GPU: an evaluation pass is the same weight draw as on the CPU, and each KL term is
    the float64 value; the ELBO's gradient reaches μ and log σ² on the device."""
    import copy
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)      # float32 convs, not TF32
    m = _layer(4).eval()
    g = copy.deepcopy(m).cuda()
    x = torch.randn(3, 2, 5, 5)
    out = torch.full((3, 3, 3, 3), float("nan"), device="cuda")       # poisoned, then written
    torch.manual_seed(8)
    with torch.no_grad():
        out.copy_(g(x.cuda()))
        torch.manual_seed(8)
        ref = m.double()(x.double())
    assert torch.allclose(out.cpu().double(), ref, rtol=1e-5, atol=1e-5)
    mu, ls2 = m.weight.double(), m.log_sigma2.double()
    for kl in (kl_normal, kl_loguniform):
        assert kl(g.weight, g.log_sigma2).item() == pytest.approx(float(kl(mu, ls2)), rel=1e-5)
    logit = torch.randn(40, dtype=torch.float64)
    assert float(kl_loguniform_trunc(logit.float().cuda())) == pytest.approx(float(kl_loguniform_trunc(logit)), rel=1e-5)
    g.train()
    vae = KernelVAE(9, 8, 2).eval().cuda()
    (F.cross_entropy(g(x.cuda()).flatten(1)[:, :3], torch.tensor([0, 1, 2], device="cuda"))
     + kl_vae_bound(g, vae, "slice") / 100).backward()
    assert torch.isfinite(g.weight.grad).all() and g.log_sigma2.grad.abs().sum() > 0
    term = KLTerm(nn.Sequential(g), "normal", n_train=10)   # its running stats stay on the device
    loss = term.generator_loss()
    assert loss.device.type == "cuda" and term.pop_stats()["kl_per_weight"] == pytest.approx(
        float(kl_normal(mu, ls2)) / mu.numel(), rel=1e-5)
