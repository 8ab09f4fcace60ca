"""KernelBank: collection, safetensors round trip, .npy import, refusal of bad files."""
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from fastreg.bank import FORMAT, BankError, KernelBank
from fastreg.models import DWPNet

DWP = Path(__file__).resolve().parents[3] / "shared" / "data" / "dwp-notmnist-kernels"


def test_collect_counts_and_values():
    models = [DWPNet(width=0.125) for _ in range(2)]
    bank = KernelBank.collect(models, ["conv1", "conv2"], {"dataset": "x"})
    o1, i1 = models[0].conv1.weight.shape[:2]
    assert bank.layers["conv1"].shape == (2 * o1 * i1, 7, 7)
    assert torch.equal(bank.layers["conv1"][0], models[0].conv1.weight[0, 0].detach())
    assert torch.equal(bank.layers["conv1"][o1 * i1], models[1].conv1.weight[0, 0].detach())
    assert bank.layers["conv2"].shape[1:] == (5, 5)
    with pytest.raises(BankError):
        KernelBank.collect(models, ["conv9"])


def test_roundtrip(tmp_path):
    layers = {"conv1": torch.randn(40, 7, 7), "conv2": torch.randn(90, 5, 5)}
    KernelBank(layers, {"dataset": "cifar10", "seeds": "[0, 1]"}).save(tmp_path / "b.safetensors")
    b = KernelBank.load(tmp_path / "b.safetensors")
    assert b.meta["format"] == FORMAT and b.meta["seeds"] == "[0, 1]"
    for n, t in layers.items():
        assert torch.equal(b.layers[n], t)
    assert not list(tmp_path.glob(".*tmp"))                  # no temp files left


@pytest.mark.parametrize("shape", [(30, 1, 5, 5), (30, 5, 5)])
def test_npy_import(tmp_path, shape):
    a = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    np.save(tmp_path / "k.npy", a)
    b = KernelBank.load(tmp_path / "k.npy")
    (name,) = b.layers
    assert b.layers[name].shape == (30, 5, 5)
    assert np.array_equal(b.layers[name].numpy(), a.reshape(30, 5, 5))
    assert b.source("conv2", 5) == (name,)


@pytest.mark.skipif(not DWP.exists(), reason="shared DWP kernels not present")
def test_real_dwp_kernels():
    b = KernelBank.from_npy(DWP / "conv7x7_train.npy", layer="conv1")
    assert b.layers["conv1"].shape == (1769, 7, 7)
    assert torch.isfinite(b.layers["conv1"]).all()


def _write(tmp_path, tensors, meta):
    p = tmp_path / "bad.safetensors"
    save_file(tensors, str(p), meta)
    return p


@pytest.mark.parametrize("tensors,meta,msg", [
    ({"conv1": torch.full((4, 3, 3), float("nan"))}, {"format": FORMAT}, "NaN"),
    ({"conv1": torch.zeros((0, 3, 3))}, {"format": FORMAT}, "empty"),
    ({"conv1": torch.ones((4, 3, 3), dtype=torch.int32)}, {"format": FORMAT}, "non-float"),
    ({"conv1": torch.randn(4, 3, 3)}, {"format": "fastreg-bank/9"}, "unknown bank format"),
    ({"conv1": torch.randn(4, 3, 3)}, None, "unknown bank format"),
    ({"conv1": torch.randn(4, 3, 5)}, {"format": FORMAT}, r"\[N, k, k\]"),
])
def test_bad_banks_refused(tmp_path, tensors, meta, msg):
    with pytest.raises(BankError, match=msg):
        KernelBank.load(_write(tmp_path, tensors, meta))


def test_corrupt_and_missing(tmp_path):
    p = tmp_path / "c.safetensors"
    KernelBank({"conv1": torch.randn(10, 7, 7)}).save(p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])                    # truncated
    with pytest.raises(BankError):
        KernelBank.load(p)
    p.write_bytes(b"\x80\x04garbage pickle?")
    with pytest.raises(BankError):
        KernelBank.load(p)
    with pytest.raises(BankError, match="no such"):
        KernelBank.load(tmp_path / "missing.safetensors")


def test_load_takes_a_packaged_name_and_a_file_of_that_name_wins(tmp_path, monkeypatch):
    from fastreg.bank import PACKAGED
    by_name = KernelBank.load("dwpnet_e4")
    assert by_name.layers.keys() == KernelBank.load(PACKAGED["dwpnet_e4"]).layers.keys()
    monkeypatch.chdir(tmp_path)
    KernelBank({"only": torch.randn(10, 3, 3)}).save(tmp_path / "dwpnet_e4")
    assert list(KernelBank.load("dwpnet_e4").layers) == ["only"]
    with pytest.raises(BankError, match="did you mean dwpnet_e4"):
        KernelBank.load("dwpnet_e5")


def test_source_mismatch():
    b = KernelBank({"conv1": torch.randn(10, 7, 7)})
    with pytest.raises(BankError, match="5x5"):
        b.source("conv1", 5)
    with pytest.raises(BankError):
        b.source("conv2", 5)


def test_sample_uses_bank_rows():
    from fastreg.ops import sample_kernels
    b = KernelBank({"conv1": torch.randn(50, 7, 7)})
    k = sample_kernels(b.layers["conv1"], 20, seed=1)[0]
    assert k.shape == (20, 7, 7)
    assert all(any(torch.equal(r, q) for q in b.layers["conv1"]) for r in k)
