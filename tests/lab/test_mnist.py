"""MNIST as a dataset (the Deep Weight Prior's target): the offline 5000-digit pool split into n
stratified training digits and the rest as test set, the paper's network (``fconv``), no
augmentation, and a bank from ``.npy`` kernels in one command with its provenance."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from fastreg import KernelBank
from fastreg.lab import collect, report, train
from fastreg.lab.cli import run_main
from fastreg.lab.mnist import mnist_sets
from fastreg.models import build_model


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """A stand-in for mnist5k.npz: 30 digits a class, each class a bright bar at its own row."""
    root = tmp_path_factory.mktemp("mnist")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 40, (300, 28, 28), dtype=np.uint8)
    y = np.repeat(np.arange(10), 30)
    for i, c in enumerate(y):
        x[i, 2 + 2 * c: 4 + 2 * c, 4:24] = 255
    np.savez_compressed(root / "mnist5k.npz", images=x, labels=y)
    return root


def test_the_training_digits_are_drawn_per_seed_and_the_rest_is_the_test_set(digits):
    tr, te, k = mnist_sets(digits, 50, 3, "cpu")
    assert k == 10 and tr.x.shape == (50, 1, 28, 28) and te.x.shape == (250, 1, 28, 28)
    assert set(tr.index.tolist()).isdisjoint(te.index.tolist()) and len(set(tr.index) | set(te.index)) == 300
    assert np.bincount(tr.y.numpy(), minlength=10).tolist() == [5] * 10
    assert float(tr.x.min()) >= 0 and float(tr.x.max()) == 1.0           # pixels in [0, 1], not normalized
    assert not torch.equal(tr.x, mnist_sets(digits, 50, 4, "cpu")[0].x)   # another data seed, other digits
    assert te.split == "rest" and tr.classes == tuple("0123456789")


def test_fconv_is_the_papers_network():
    m = build_model("fconv", 10)
    shapes = {n: tuple(p.shape) for n, p in m.named_parameters()}
    assert shapes == {"conv1.weight": (32, 1, 7, 7), "conv1.bias": (32,), "conv2.weight": (128, 32, 5, 5),
                      "conv2.bias": (128,), "fc.weight": (10, 1152), "fc.bias": (10,)}
    assert m(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_train_on_mnist_records_its_protocol_and_trains_without_augmentation(digits, tmp_path, capsys):
    out = tmp_path / "r"
    argv = ["--dataset", "mnist", "--arch", "fconv", "--data-root", str(digits), "--bank", "none",
            "--train-size", "20", "--epochs", "2", "--batch-size", "20", "--out", str(out)]
    assert run_main(train.main, argv) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["protocol"] == {"dataset": "mnist", "classes": list("0123456789"), "image_size": 28,
                               "eval_split": "rest", "eval_images": 280}
    assert cfg["loop"]["augment"] is False
    capsys.readouterr()
    for bad in (["--dataset", "mnist", "--arch", "dwpnet"], ["--arch", "fconv"]):
        assert run_main(train.main, ["--data-root", str(digits), "--bank", "none", *bad,
                                     "--out", str(tmp_path / "bad")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--dataset mnist takes --arch fconv" in err and not (tmp_path / "bad").exists()


def test_a_bank_from_npy_kernels_in_one_command_with_provenance(tmp_path, capsys):
    k7 = np.random.default_rng(0).normal(size=(120, 1, 7, 7)).astype(np.float32)
    k5 = np.random.default_rng(1).normal(size=(300, 5, 5)).astype(np.float32)
    np.save(tmp_path / "conv7x7_train.npy", k7)
    np.save(tmp_path / "conv5x5_test.npy", k5)
    out = tmp_path / "bank"
    assert run_main(collect.main, ["--from-npy", f"conv1={tmp_path / 'conv7x7_train.npy'}",
                                   "--from-npy", f"conv2={tmp_path / 'conv5x5_test.npy'}", "--out", str(out)]) == 0
    bank = KernelBank.load(out / "bank.safetensors")
    assert torch.equal(bank.layers["conv1"], torch.from_numpy(k7[:, 0])) and bank.layers["conv2"].shape == (300, 5, 5)
    files = json.loads(bank.meta["files"])
    assert files["conv1"] == {"file": "conv7x7_train.npy",
                              "sha256": hashlib.sha256((tmp_path / "conv7x7_train.npy").read_bytes()).hexdigest()}
    capsys.readouterr()
    for bad in (["--from-npy", "conv1"], ["--from-npy", f"conv1={tmp_path / 'missing.npy'}"]):
        assert run_main(collect.main, [*bad, "--out", str(tmp_path / "b2")]) == 2
        assert capsys.readouterr().err.count("\n") == 1 and not (tmp_path / "b2").exists()


def test_vi_runs_record_their_method_and_refuse_what_they_cannot_serve(digits, tmp_path, capsys):
    """--inference vi makes the regularized convs Bayesian (the KL term in the metrics, the method
    named by its prior); an adversarial term or a penalty beside it, the VAE prior without a
    bank, and an RGB bank for a grayscale first layer are each one line, exit 2."""
    from fastreg.lab.methods import method_of
    base = ["--dataset", "mnist", "--arch", "fconv", "--data-root", str(digits), "--train-size", "20",
            "--epochs", "2", "--batch-size", "20", "--reg-layers", "conv1,conv2", "--weight-decay", "0"]
    for prior in ("loguniform", "loguniform-trunc"):
        out = tmp_path / prior
        assert run_main(train.main, [*base, "--bank", "none", "--lambda", "0", "--inference", "vi",
                                     "--vi-prior", prior, "--out", str(out)]) == 0
        cfg = json.loads((out / "config.json").read_text())
        assert method_of(cfg) == f"vi-{prior} (no D)" and cfg["vi_samples"] == 10
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        assert rows[-1]["kl_per_weight"] > 0 and 0 <= rows[-1]["test_acc"] <= 1
        final = json.loads((out / "final.json").read_text())   # the two other ways to predict, beside it
        assert all(0 <= final[f"test_acc_{how}"] <= 1 for how in ("local", "mean"))
    assert run_main(report.main, [str(tmp_path), "--out", str(tmp_path / "r.md")]) == 0   # and in its rows
    rows = json.loads((tmp_path / "r.json").read_text())["runs"]
    assert len(rows) == 2 and all(set(r) >= {"test_acc_local", "test_acc_mean"} for r in rows)
    capsys.readouterr()
    for bad, msg in ((["--bank", "none", "--inference", "vi", "--lambda", "1"], "--lambda 0 and no --prior"),
                     (["--bank", "none", "--lambda", "0", "--inference", "vi", "--vi-prior", "vae"], "needs a bank"),
                     (["--bank", "dwpnet_e24"], "takes one input channel")):
        assert run_main(train.main, [*base, *bad, "--out", str(tmp_path / "bad")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and msg in err and not (tmp_path / "bad").exists(), err


def test_the_sweep_plans_the_dwp_preset_on_mnist(digits, tmp_path, capsys):
    """``sweep --dataset mnist --methods dwp``: the protocol's nine rows (DESIGN.md §15), each
    run told its dataset; a size the pool cannot hold is refused before any run."""
    from fastreg.lab import sweep
    from fastreg.lab.methods import PRESETS
    from helpers import smooth_kernels
    bank = tmp_path / "gray.safetensors"
    KernelBank({"conv1": smooth_kernels(200, 7), "conv2": smooth_kernels(400, 5)}).save(bank)
    base = ["--dataset", "mnist", "--arch", "fconv", "--data-root", str(digits), "--bank", str(bank),
            "--reg-layers", "conv1,conv2", "--methods", "dwp", "--seeds", "0", "--dry-run"]
    assert run_main(sweep.main, [*base, "--sizes", "50", "--out", "x", "--", "--steps", "20"]) == 0
    plan = capsys.readouterr().out
    assert plan.count("--dataset mnist") == len(PRESETS["dwp"]) == 9 and "--inference vi --vi-prior vae" in plan
    assert "--vi-prior loguniform-trunc" in plan
    assert run_main(sweep.main, [*base, "--sizes", "400", "--out", "x"]) == 2
    assert "needs 40 images per class" in capsys.readouterr().err


def test_a_vi_runs_judge_follows_the_bayesian_convs_and_leaves_training_alone(digits, tmp_path, monkeypatch):
    """λ = 0 VI with a bank: the judge sees the Bayesian convs ``to_bayes`` swapped in
    (``relink``); without it, it judges the replaced convs. The classifier trains bit-identically
    either way (the judge draws from its own generators and gives no gradient at λ = 0)."""
    from helpers import smooth_kernels
    from fastreg.regularizer import AdversarialRegularizer
    bank = tmp_path / "bank"
    bank.mkdir()
    KernelBank({"conv1": smooth_kernels(120, 7), "conv2": smooth_kernels(300, 5, 1)}).save(bank / "bank.safetensors")
    argv = ["--dataset", "mnist", "--arch", "fconv", "--data-root", str(digits), "--train-size", "20", "--epochs",
            "3", "--batch-size", "20", "--reg-layers", "conv1,conv2", "--weight-decay", "0", "--lambda", "0",
            "--inference", "vi", "--vi-prior", "normal", "--bank", str(bank / "bank.safetensors")]
    assert run_main(train.main, [*argv, "--out", str(tmp_path / "live")]) == 0
    monkeypatch.setattr(AdversarialRegularizer, "relink", lambda self, model: None)
    assert run_main(train.main, [*argv, "--out", str(tmp_path / "stale")]) == 0
    live, stale = ((tmp_path / r / "final_kernels.safetensors").read_bytes() for r in ("live", "stale"))
    assert live == stale
    judged = [json.loads((tmp_path / r / "final.json").read_text())["g_loss"] for r in ("live", "stale")]
    assert judged[0] != judged[1]
