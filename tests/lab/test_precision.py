"""``--amp`` uses bf16 autocast only where the hardware has native bf16; elsewhere it says so
once and trains in fp32 (emulated bf16 is ~20x slower), and config.json records which."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from fastreg.lab import device as dev_mod
from fastreg.lab import train
from fastreg.lab.cli import run_main
from helpers import make_bank_file, make_npz_data

FAST = ["--width", "0.125", "--epochs", "2", "--eval-size", "50", "--batch-size", "50",
        "--train-size", "50"]


@pytest.fixture
def native(monkeypatch):
    """Pretend the CPU has (True) or lacks (False) native bf16; the warn-once memory is reset."""
    monkeypatch.setattr(dev_mod, "_WARNED", set())

    def set_(value: bool) -> None:
        monkeypatch.setattr(dev_mod, "cpu_has_native_bf16", lambda: value)
    return set_


def test_fallback_says_so_once(native, capsys):
    native(False)
    cpu = torch.device("cpu")
    assert dev_mod.amp_precision(cpu, True) == dev_mod.amp_precision(cpu, True) == "fp32"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no native bf16" in err and "fp32" in err
    assert dev_mod.amp_precision(cpu, False) == "fp32" and capsys.readouterr().err == ""
    native(True)
    assert dev_mod.amp_precision(cpu, True) == "bf16" and capsys.readouterr().err == ""


def test_an_avx2_cap_counts_as_no_native_bf16():
    """The real check, not a stub: oneDNN capped at AVX2 cannot use AVX512-BF16 or AMX."""
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    out = subprocess.run([sys.executable, "-c", "from fastreg.lab.device import cpu_has_native_bf16 as f; "
                          "print(f())"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr


def _train(tmp_path, data, bank, name, *extra):
    out = tmp_path / name
    assert run_main(train.main, ["--data-root", str(data), "--bank", str(bank), "--out", str(out),
                                 *FAST, *extra]) == 0
    return (json.loads((out / "config.json").read_text()), json.loads((out / "final.json").read_text()),
            load_file(out / "final_kernels.safetensors")["conv1"])


def test_train_amp_without_native_bf16_is_the_fp32_run(native, tmp_path, capsys):
    data = make_npz_data(tmp_path / "data", per_class_train=25, per_class_test=5)
    bank = make_bank_file(tmp_path / "bank.safetensors")
    native(False)
    cfg_a, fin_a, k_a = _train(tmp_path, data, bank, "amp", "--amp")
    assert "no native bf16" in capsys.readouterr().err
    cfg_f, fin_f, k_f = _train(tmp_path, data, bank, "fp32")
    assert cfg_a["precision"] == cfg_f["precision"] == "fp32" and cfg_a["amp"] is True
    assert fin_a["test_acc"] == fin_f["test_acc"] and torch.equal(k_a, k_f)   # bit for bit
    native(True)
    cfg_b, _, k_b = _train(tmp_path, data, bank, "bf16", "--amp")
    assert cfg_b["precision"] == "bf16" and not torch.equal(k_b, k_f)
