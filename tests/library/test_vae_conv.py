"""The Deep Weight Prior's own convolutional kernel VAE (``fastreg.vae_conv``): its ELBO against a
float64 hand computation, the paper's state-dict layout converted key by key, saving and loading
beside fastreg's MLP VAE, and ``train --vae-files`` using it as the prior and the init."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save

from fastreg import vae as vae_mod
from fastreg.io_util import atomic_write_bytes
from fastreg.lab import train
from fastreg.lab.cli import run_main
from fastreg.vae_conv import FORMAT, ConvKernelVAE

ROOT = Path(__file__).resolve().parents[2]
# the shapes of the paper's shipped data/fconv/vae7x7 and vae5x5 state dicts, key by key
PAPER_7 = {"encoder.features.0.weight": (32, 1, 3, 3), "encoder.features.0.bias": (32,),
           "encoder.features.2.weight": (64, 32, 3, 3), "encoder.features.2.bias": (64,),
           "encoder.features.4.weight": (64, 64, 3, 3), "encoder.features.4.bias": (64,),
           "encoder.fc_mu.weight": (2, 64, 1, 1), "encoder.fc_mu.bias": (2,),
           "encoder.fc_var.weight": (2, 64, 1, 1), "encoder.fc_var.bias": (2,),
           "decoder.decoder.0.weight": (2, 64, 3, 3), "decoder.decoder.0.bias": (64,),
           "decoder.decoder.2.weight": (64, 64, 3, 3), "decoder.decoder.2.bias": (64,),
           "decoder.decoder.4.weight": (64, 32, 3, 3), "decoder.decoder.4.bias": (32,),
           "decoder.fc_mu.weight": (1, 32, 1, 1), "decoder.fc_mu.bias": (1,),
           "decoder.fc_var.weight": (1, 32, 1, 1), "decoder.fc_var.bias": (1,)}
PAPER_5 = {"encoder.features.0.weight": (64, 1, 3, 3), "encoder.features.0.bias": (64,),
           "encoder.features.2.weight": (64, 64, 3, 3), "encoder.features.2.bias": (64,),
           "encoder.features.4.weight": (128, 64, 3, 3), "encoder.features.4.bias": (128,),
           "encoder.features.6.weight": (128, 128, 3, 3), "encoder.features.6.bias": (128,),
           "encoder.fc_mu.weight": (4, 128, 1, 1), "encoder.fc_mu.bias": (4,),
           "encoder.fc_sigma.weight": (4, 128, 1, 1), "encoder.fc_sigma.bias": (4,),
           "decoder.decoder.0.weight": (128, 4, 1, 1), "decoder.decoder.0.bias": (128,),
           "decoder.decoder.2.weight": (128, 128, 3, 3), "decoder.decoder.2.bias": (128,),
           "decoder.decoder.4.weight": (128, 128, 3, 3), "decoder.decoder.4.bias": (128,),
           "decoder.decoder.6.weight": (64, 128, 1, 1), "decoder.decoder.6.bias": (64,),
           "decoder.fc_mu.0.weight": (1, 64, 1, 1), "decoder.fc_mu.0.bias": (1,),
           "decoder.fc_var.0.weight": (1, 64, 1, 1), "decoder.fc_var.0.bias": (1,)}


def _importer():
    spec = importlib.util.spec_from_file_location("import_dwp_vae", ROOT / "docs/scripts/import_dwp_vae.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _save(vae: ConvKernelVAE, path: Path) -> None:
    meta = {"format": FORMAT, **{k: str(v) for k, v in vae.describe().items()}}
    atomic_write_bytes(path, save({k: v.contiguous() for k, v in vae.state_dict().items()}, meta))


@pytest.mark.parametrize("k, hidden, z", [(7, 4, 2), (5, 3, 4)])
def test_the_elbo_is_the_reconstruction_minus_the_kl_in_float64(k, hidden, z):
    torch.manual_seed(0)
    vae = ConvKernelVAE(k, hidden, z).double()
    w, eps = torch.randn(6, k * k, dtype=torch.float64) * 0.3, torch.randn(6, z, dtype=torch.float64)
    with torch.no_grad():
        got = vae.elbo(w, eps)
        # by hand: the encoder's and decoder's heads, then the two Gaussian terms written out
        f = vae.enc(w.reshape(6, 1, k, k))
        mu, var = vae.enc_mu(f).reshape(6, z), torch.log1p(torch.exp(vae.enc_var(f).reshape(6, z)))
        g = vae.dec((mu + var.sqrt() * eps).reshape(6, z, 1, 1))
        m, v = vae.dec_mu(g).reshape(6, -1), torch.log1p(torch.exp(vae.dec_var(g).reshape(6, -1)))
        log_p = sum(-0.5 * math.log(2 * math.pi * v[i, j].item()) - (w[i, j] - m[i, j]).item() ** 2 / (2 * v[i, j].item())
                    for i in range(6) for j in range(k * k))
        kl = sum(0.5 * (mu[i, j].item() ** 2 + var[i, j].item() - 1 - math.log(var[i, j].item()))
                 for i in range(6) for j in range(z))
    assert got.shape == (6,) and float(got.sum()) == pytest.approx(log_p - kl, rel=1e-10)
    assert vae.sample(5, torch.Generator().manual_seed(0)).shape == (5, k * k)


@pytest.mark.parametrize("k, paper", [(7, PAPER_7), (5, PAPER_5)])
def test_the_papers_state_dict_converts_key_by_key(tmp_path, k, paper):
    """Every tensor of the paper's layout lands in one place of ``ConvKernelVAE`` (strict load),
    and the converted VAE computes with exactly those numbers."""
    gen = torch.Generator().manual_seed(k)
    state = {key: torch.randn(shape, generator=gen) * 0.1 for key, shape in paper.items()}
    torch.save(state, tmp_path / "vae_params.torch")
    vae, meta = _importer().convert(tmp_path / "vae_params.torch", k)
    assert meta["format"] == FORMAT and len(meta["source_sha256"]) == 64
    assert torch.equal(vae.enc[0].weight, state["encoder.features.0.weight"])
    assert torch.equal(vae.enc_var.bias, state[next(x for x in paper if x.startswith("encoder.fc_") and "mu" not in x
                                                    and x.endswith("bias"))])
    last = "decoder.fc_var.0.weight" if k == 5 else "decoder.fc_var.weight"
    assert torch.equal(vae.dec_var.weight, state[last])
    _save(vae, tmp_path / "v.safetensors")
    back, _ = vae_mod.load(tmp_path / "v.safetensors")
    x, eps = torch.randn(3, k * k) * 0.2, torch.randn(3, vae.z_dim)
    assert isinstance(back, ConvKernelVAE) and torch.equal(back.elbo(x, eps), vae.elbo(x, eps))
    with pytest.raises(ValueError, match="7x7 and 5x5"):
        ConvKernelVAE(3, 4, 2)


def test_train_takes_saved_vaes_for_the_dwp_prior_and_init(tmp_path, capsys):
    """``--vae-files``: the saved VAEs serve the VI prior and the init (the run records their
    SHA-256); a layer that is not regularized, or a VAE of another kernel size, is one line, exit 2."""
    from helpers import smooth_kernels
    from fastreg import KernelBank
    rng = np.random.default_rng(0)
    x = rng.integers(0, 40, (200, 28, 28), dtype=np.uint8)
    np.savez_compressed(tmp_path / "mnist5k.npz", images=x, labels=np.repeat(np.arange(10), 20))
    bank = tmp_path / "gray.safetensors"
    KernelBank({"conv1": smooth_kernels(100, 7), "conv2": smooth_kernels(100, 5)}).save(bank)
    torch.manual_seed(0)
    _save(ConvKernelVAE(7, 4, 2), tmp_path / "v7.safetensors")
    _save(ConvKernelVAE(5, 3, 4), tmp_path / "v5.safetensors")
    base = ["--dataset", "mnist", "--arch", "fconv", "--data-root", str(tmp_path), "--train-size", "20",
            "--epochs", "1", "--batch-size", "20", "--reg-layers", "conv1,conv2", "--weight-decay", "0",
            "--bank", str(bank), "--lambda", "0", "--inference", "vi", "--vi-prior", "vae", "--init", "vae",
            "--init-unit", "slice", "--init-scale", "none", "--vi-samples", "2"]
    out = tmp_path / "run"
    files = f"conv1={tmp_path / 'v7.safetensors'},conv2={tmp_path / 'v5.safetensors'}"
    assert run_main(train.main, [*base, "--vae-files", files, "--out", str(out)]) == 0
    rec = json.loads((out / "vae_files.json").read_text())
    assert rec["conv2"]["file"] == "v5.safetensors" and rec["conv1"]["format"] == FORMAT
    # the init is the saved VAE's decoder means: within its range, not the bank's own VAE's
    from safetensors.torch import load_file
    start = load_file(out / "start_kernels.safetensors")["conv1"]
    torch.manual_seed(0)
    means = ConvKernelVAE(7, 4, 2).sample(2000, mean=True)
    assert float(start.std()) == pytest.approx(float(means.std()), rel=0.2)
    capsys.readouterr()
    assert run_main(train.main, [*base[:-14], "--lambda", "0", "--init", "default", "--vae-files", files,
                                 "--out", str(tmp_path / "bad")]) == 2
    assert "uses none of them" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    for bad, msg in ((f"fc={tmp_path / 'v7.safetensors'}", "not a regularized layer"),
                     (f"conv1={tmp_path / 'v5.safetensors'}", "7x7 kernels"),
                     (f"conv1={tmp_path / 'nothing.safetensors'}", "no such VAE file")):
        assert run_main(train.main, [*base, "--vae-files", bad, "--out", str(tmp_path / "bad")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and msg in err and not (tmp_path / "bad").exists(), err


@pytest.mark.cuda
def test_the_conv_vae_bounds_on_cuda_as_the_float64_reference(monkeypatch):
    """On a GPU (the paper's own VAE is too slow for a CPU run): the ELBO of fresh kernels is the
    float64 CPU value, and the DWP bound's gradient reaches the posterior on the device."""
    import copy
    import torch.nn.functional as F
    from fastreg.bayes import BayesConv2d, kl_vae_bound
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    torch.manual_seed(3)
    vae = ConvKernelVAE(5, 8, 4).eval()
    w, eps = torch.randn(64, 25) * 0.1, torch.randn(64, 4)
    out = torch.full((64,), float("nan"), device="cuda")             # poisoned, then written
    with torch.no_grad():
        out.copy_(copy.deepcopy(vae).cuda().elbo(w.cuda(), eps.cuda()))
        ref = vae.double().elbo(w.double(), eps.double())
    assert torch.allclose(out.cpu().double(), ref, rtol=1e-4, atol=1e-4)
    layer = BayesConv2d(torch.nn.Conv2d(4, 6, 5)).cuda()
    x = torch.randn(3, 4, 9, 9, device="cuda")
    (F.cross_entropy(layer(x).mean((2, 3)), torch.tensor([0, 1, 2], device="cuda"))
     + kl_vae_bound(layer, vae.float().cuda(), "slice") / 100).backward()
    assert torch.isfinite(layer.weight.grad).all() and layer.log_sigma2.grad.abs().sum() > 0
