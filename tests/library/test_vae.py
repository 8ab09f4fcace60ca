"""The kernel VAE (the Deep Weight Prior's learned prior, DESIGN.md §13): its ELBO and gradient
against a float64 reference written here, a fit to a known Gaussian that samples back its mean
and covariance, a fit that resumes after a kill to the same numbers, init and penalty through
train, and one line for each bad input."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from fastreg import KernelBank
from fastreg.errors import BankError
from fastreg.lab import train
from fastreg.lab.cli import run_main
from fastreg.ops.tolerance import rel_err
from fastreg.vae import KernelVAE, fit, load, save, vae_for
from helpers import make_npz_data, smooth_kernels


def _reference_elbo(vae: KernelVAE, w: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """DESIGN.md §13 in float64 from the parameters alone (no call into the module)."""
    p = {k: v.detach().double() for k, v in vae.state_dict().items()}

    def mlp(x, pre):
        for i in (0, 2):
            x = F.elu(x @ p[f"{pre}.{i}.weight"].T + p[f"{pre}.{i}.bias"])
        return x @ p[f"{pre}.4.weight"].T + p[f"{pre}.4.bias"]
    x = (w - p["shift"]) / p["scale"]
    mu, logvar = mlp(x, "enc").chunk(2, dim=-1)
    logvar = logvar.clamp(-12, 8)
    z = mu + torch.exp(0.5 * logvar) * eps.double()
    m, lv = mlp(z, "dec"), p["dec_logvar"]
    log_px = -0.5 * (((x - m) ** 2) / torch.exp(lv) + lv + math.log(2 * math.pi)).sum(-1)
    kl = 0.5 * (mu ** 2 + torch.exp(logvar) - 1 - logvar).sum(-1)
    return log_px - kl - torch.log(p["scale"]).sum()


def test_elbo_and_its_gradient_match_a_float64_reference():
    torch.manual_seed(0)
    vae = KernelVAE(27, 16, 3)
    with torch.no_grad():                    # away from the defaults: nothing passes by symmetry
        for prm in vae.parameters():
            prm.add_(torch.randn_like(prm) * 0.3)
        vae.shift.copy_(torch.linspace(-0.3, 0.2, 27))
        vae.scale.copy_(torch.linspace(0.5, 1.5, 27))
    w = (torch.randn(40, 27) * 0.5 + torch.linspace(-1, 1, 27)).requires_grad_()
    eps = torch.randn(40, 3)
    got = vae.elbo(w, eps)
    w64 = w.detach().double().requires_grad_()
    ref = _reference_elbo(vae, w64, eps)
    assert rel_err(got, ref) < 1e-4
    got.sum().backward()
    ref.sum().backward()
    assert rel_err(w.grad, w64.grad) < 1e-4


def test_a_fit_to_a_known_gaussian_samples_its_mean_and_covariance():
    """4-D correlated Gaussian, 4000 draws: the VAE's samples (full draws, not decoder means)
    must have its mean within 0.05 of each std and its covariance within 10 % (Frobenius; measured
    here: 0.014 and 3.8 %)."""
    g = torch.Generator().manual_seed(0)
    a = torch.tensor([[1.0, 0, 0, 0], [0.8, 0.6, 0, 0], [0.3, -0.5, 0.7, 0], [0.0, 0.4, 0.2, 0.5]])
    mean = torch.tensor([1.0, -2.0, 0.5, 3.0])
    x = mean + torch.randn(4000, 4, generator=g) @ a.T
    vae, curve = fit(x, hidden=32, z_dim=4, epochs=200, seed=0)
    assert curve[-1] > curve[0]
    s = vae.sample(20000, torch.Generator().manual_seed(1))
    cov, got = a @ a.T, torch.cov(s.T)
    assert ((s.mean(0) - mean).abs() / cov.diagonal().sqrt()).max() < 0.05
    assert float((got - cov).norm() / cov.norm()) < 0.10


def test_the_fit_resumes_after_a_kill_to_the_same_numbers(tmp_path):
    x = smooth_kernels(300, 5).reshape(300, -1)
    whole, curve = fit(x, 16, 2, epochs=12, seed=3)

    class Killed(Exception):
        pass

    def kill_at_9(epoch, _elbo):
        if epoch == 9:
            raise Killed
    ck = tmp_path / "fit.pt"
    with pytest.raises(Killed):
        fit(x, 16, 2, epochs=12, seed=3, checkpoint=ck, every=4, progress=kill_at_9)   # last checkpoint: epoch 8
    resumed, curve2 = fit(x, 16, 2, epochs=12, seed=3, checkpoint=ck, every=4)
    assert curve2 == curve
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()))


def test_a_fit_leaves_the_callers_global_rng_as_it_was():
    """A run that fits its VAE (a cold cache) must draw the same numbers afterwards as a run
    that loads it: ``fit`` seeds its own init and leaves the global generator alone; and the
    same seed still gives the same VAE."""
    x = smooth_kernels(300, 5).reshape(300, -1)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, _ = fit(x, 16, 2, epochs=2, seed=3)
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(999)
    b, _ = fit(x, 16, 2, epochs=2, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_a_cold_vae_cache_leaves_the_global_rng_where_a_warm_one_does(tmp_path):
    """A training run that fits its VAE into an empty cache must go on drawing the numbers a run
    that finds it cached draws (a Bayesian run's noise comes from the global generator)."""
    bank = KernelBank({"conv1": smooth_kernels(300, 5)})
    after = []
    for _ in ("cold", "warm"):
        torch.manual_seed(5)
        vae_for(bank, "conv1", (4, 1, 5, 5), "slice", tmp_path, epochs=2)
        after.append(torch.rand(4))
    assert len(list(tmp_path.glob("*.safetensors"))) == 1 and torch.equal(after[0], after[1])


def test_a_vae_file_of_the_wrong_shape_or_kind_is_refused(tmp_path):
    vae = KernelVAE(49, 32, 2)
    save(vae, tmp_path / "v.safetensors", {"unit": "slice"})
    assert load(tmp_path / "v.safetensors")[0].dim == 49
    from safetensors.torch import load_file, save_file
    st = load_file(tmp_path / "v.safetensors")
    st["dec_logvar"] = torch.zeros(25)
    save_file(st, str(tmp_path / "bad.safetensors"), {"format": "fastreg-vae/1", "dim": "49", "hidden": "32", "z_dim": "2"})
    with pytest.raises(BankError, match="do not make a VAE"):
        load(tmp_path / "bad.safetensors")
    KernelBank({"conv1": smooth_kernels(100, 7)}).save(tmp_path / "bank.safetensors")
    with pytest.raises(BankError, match="not a fastreg kernel VAE"):
        load(tmp_path / "bank.safetensors")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_npz_data(tmp_path_factory.mktemp("data"))


def test_vae_init_and_penalty_through_train(data, tmp_path, capsys):
    bank = tmp_path / "bank.safetensors"
    KernelBank({"conv1": smooth_kernels(600, 7)}, {"filter_rows": json.dumps({"conv1": 3})}).save(bank)
    cache = tmp_path / "vae"
    common = ["--data-root", str(data), "--bank", str(bank), "--train-size", "20", "--width", "0.125",
              "--epochs", "2", "--eval-size", "20", "--batch-size", "10", "--vae-cache", str(cache), "--vae-epochs", "3"]
    out = tmp_path / "r"
    assert run_main(train.main, common + ["--init", "vae", "--prior", "vae", "--prior-weight", "5", "--lambda", "0",
                                          "--out", str(out)]) == 0
    files = sorted(p.name for p in cache.iterdir())
    assert len([f for f in files if f.endswith(".safetensors")]) == 1 and any(f.endswith(".png") for f in files)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["vae_nelbo/conv1"] == rows[-1]["vae_nelbo/conv1"]            # finite, logged
    from fastreg.lab.methods import method_of
    assert method_of(json.loads((out / "config.json").read_text())) == "vaeinit+vae5"
    vae, meta = load(next(cache.glob("*.safetensors")))
    assert meta["unit"] == "filter" and vae.dim == 147 and len(json.loads(meta["curve"])) == 3
    # one line for each bad input, nothing written
    small = tmp_path / "small.safetensors"
    KernelBank({"conv1": smooth_kernels(30, 7)}).save(small)
    for argv, msg in [(["--init", "vae", "--bank", str(small), "--init-unit", "slice"], "at least 64 kernels"),
                      (["--prior", "vae", "--prior-weight", "-1"], "expected a finite number >= 0")]:
        capsys.readouterr()
        try:
            rc = run_main(train.main, common + argv + ["--out", str(tmp_path / "bad")])
        except SystemExit as e:           # argparse's own refusal: the same one line and exit code
            rc = e.code
        err = capsys.readouterr().err
        assert rc == 2 and msg in err and err.count("\n") == 1 and not (tmp_path / "bad").exists(), err
    bad_cache = next(cache.glob("*.safetensors"))
    bad_cache.write_bytes(b"not a safetensors file")
    rc = run_main(train.main, common + ["--init", "vae", "--out", str(tmp_path / "bad")])
    err = capsys.readouterr().err
    assert rc == 2 and "not a readable safetensors file" in err and not (tmp_path / "bad").exists()


# ------------------------------------------------------------ the learned prior from a user's loop
def test_the_learned_prior_from_a_users_own_loop(tmp_path):
    """What a researcher writing their own MNIST loop needs: the DWP layout in ``KernelBank``
    itself, two imports of one kernel size merged, one call for a layer's VAE prior (no cache
    folder needed), draws kept as drawn, and an unknown layer named in one line."""
    import numpy as np
    from torch import nn
    from fastreg import KernelBank, init_from_bank, vae_prior
    from fastreg.errors import UsageError
    from fastreg.vae import vae_for
    from helpers import smooth_kernels
    k7 = smooth_kernels(200, 7).unsqueeze(1)                       # [N, 1, 7, 7], as DWP ships them
    assert KernelBank({"conv1": k7}).layers["conv1"].shape == (200, 7, 7)
    np.save(tmp_path / "a.npy", k7.numpy())
    np.save(tmp_path / "b.npy", smooth_kernels(100, 7, 1).unsqueeze(1).numpy())
    both = KernelBank.merge([KernelBank.load(tmp_path / "a.npy"), KernelBank.load(tmp_path / "b.npy")])
    assert sorted(both.layers) == ["a", "b"]
    net = nn.Sequential(nn.Conv2d(1, 8, 7), nn.ReLU(), nn.Conv2d(8, 4, 3))
    vae, unit, path = vae_for(both, "0", net[0].weight.shape, "filter", None, epochs=3)
    assert path is None and unit == "filter" and vae.dim == 49
    prior = vae_prior(net, both, "k7", weight=1.0, epochs=3)
    loss = prior.generator_loss()
    loss.backward()
    assert torch.isfinite(loss) and net[0].weight.grad.abs().sum() > 0
    init_from_bank(net, both, ["0"], "vae", "slice", vaes={"0": vae_for(both, "0", net[0].weight.shape, "slice",
                                                                         None, epochs=3)[0]}, rescale=False)
    g = torch.Generator().manual_seed(900)
    want = vae_for(both, "0", net[0].weight.shape, "slice", None, epochs=3)[0].sample(8, g, mean=True)
    assert torch.allclose(net[0].weight.detach().reshape(8, -1), want, atol=1e-6)     # as drawn
    with pytest.raises(UsageError, match="unknown layer 'conv1'"):
        init_from_bank(net, both, ["conv1"])
