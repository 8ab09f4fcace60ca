"""CLI smoke runs on synthetic npz data, and every bad input: one line, exit 2, nothing written."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from fastreg.lab import collect, train
from fastreg.bank import KernelBank
from fastreg.lab.cli import run_main
from helpers import make_bank_file, make_npz_data, smooth_kernels

FAST = ["--width", "0.125", "--epochs", "2", "--eval-size", "50", "--batch-size", "50"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_npz_data(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    return make_bank_file(tmp_path_factory.mktemp("bank") / "bank.safetensors")


def _run(mod, argv, capsys):
    rc = run_main(mod.main, argv)
    return rc, capsys.readouterr()


def test_train_smoke(data, bank, tmp_path, capsys):
    out = tmp_path / "run"
    rc, cap = _run(train, ["--data-root", str(data), "--bank", str(bank), "--train-size", "50",
                           "--out", str(out), "--amp", *FAST], capsys)
    assert rc == 0, cap.err
    final = json.loads((out / "final.json").read_text())
    assert 0.0 <= final["test_acc"] <= 1.0 and final["steps"] == 2
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["test_n"] == 100 and "d_acc_real" in rows[-1] and "g_loss" in rows[-1]
    for f in ("config.json", "filters_conv1.png", "start_kernels.safetensors", "final_kernels.safetensors"):
        assert (out / f).stat().st_size > 0, f
    assert not (out / "checkpoint.pt").exists()            # a finished run drops its optimizer state
    # the same command again refuses to clobber the run
    rc, cap = _run(train, ["--data-root", str(data), "--bank", str(bank), "--train-size", "50",
                           "--out", str(out), "--amp", *FAST], capsys)
    assert rc == 2 and "--resume" in cap.err and "finished run" in cap.err


def test_train_baseline_and_npy_bank(data, tmp_path, capsys):
    np.save(tmp_path / "k.npy", smooth_kernels(64, 7).numpy()[:, None])
    for lam, b in (("0", str(tmp_path / "k.npy")), ("1", "none")):
        rc, cap = _run(train, ["--data-root", str(data), "--bank", b, "--lambda", lam, "--train-size", "20",
                               "--out", str(tmp_path / f"r{lam}"), *FAST], capsys)
        assert rc == 0, cap.err


def test_collect_smoke_and_skip_finished(data, tmp_path, capsys):
    out = tmp_path / "c"
    argv = ["--data-root", str(data), "--preset", "tiny", "--seeds", "0,1", "--out", str(out)]
    rc, cap = _run(collect, argv, capsys)
    assert rc == 0, cap.err
    b = KernelBank.load(out / "bank.safetensors")
    assert b.layers["conv1"].shape == (2 * 16 * 3, 7, 7)
    assert json.loads(b.meta["seeds"]) == [0, 1] and set(json.loads(b.meta["source_test_acc"])) == {"0", "1"}
    assert (out / "bank_conv1.png").stat().st_size > 0
    stamp = (out / "seed0" / "model.pt").stat().st_mtime_ns
    rc, cap = _run(collect, argv, capsys)
    assert rc == 0 and (out / "seed0" / "model.pt").stat().st_mtime_ns == stamp   # not retrained
    assert torch.equal(KernelBank.load(out / "bank.safetensors").layers["conv1"], b.layers["conv1"])


def test_collect_study_knobs_are_recorded_and_change_training(data, tmp_path, capsys):
    """``--schedule constant`` and ``--no-augment`` (recipe studies) go into recipe.json and the
    bank's metadata, train a different model, and a folder of one recipe refuses the other."""
    outs = {}
    for name, extra in (("default", []), ("knobs", ["--schedule", "constant", "--no-augment"])):
        outs[name] = tmp_path / name
        rc, cap = _run(collect, ["--data-root", str(data), "--preset", "tiny", "--seeds", "0",
                                 "--out", str(outs[name]), *extra], capsys)
        assert rc == 0, cap.err
    recipe = json.loads(KernelBank.load(outs["knobs"] / "bank.safetensors").meta["recipe"])
    assert recipe["schedule"] == "constant" and recipe["augment"] is False
    assert "schedule" not in json.loads(KernelBank.load(outs["default"] / "bank.safetensors").meta["recipe"])
    a, b = (KernelBank.load(outs[n] / "bank.safetensors").layers["conv1"] for n in ("default", "knobs"))
    assert not torch.equal(a, b)
    rc, cap = _run(collect, ["--data-root", str(data), "--preset", "tiny", "--seeds", "0,1",
                             "--out", str(outs["knobs"])], capsys)
    assert rc == 2 and "other settings" in cap.err and not (outs["knobs"] / "seed1").exists()


def test_loop_schedule_and_augment_switches(tmp_path, monkeypatch):
    import numpy as np
    from fastreg.lab import loop
    from fastreg.lab.data import Split
    x, y = torch.rand(8, 3, 32, 32), torch.arange(8) % 2
    split = Split(x, y, np.arange(8))
    model = lambda: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 2))  # noqa: E731
    for schedule, quarter, end in (("cosine", 0.5 * (1 + math.cos(math.pi / 4)), 0.0), ("linear", 0.75, 0.0),
                                   ("constant", 1.0, 1.0)):
        tr = loop.Trainer(model(), split, split, loop.LoopConfig(epochs=4, batch_size=4, schedule=schedule),
                          torch.device("cpu"), tmp_path / schedule)
        lam = tr.sched.lr_lambdas[0]
        assert tr.total_steps == 8
        assert lam(2) == pytest.approx(quarter) and lam(tr.total_steps) == pytest.approx(end)
    seen = []
    monkeypatch.setattr(loop, "augment", lambda xb, gen: seen.append(1) or xb)
    for augment in (True, False):
        seen.clear()
        cfg = loop.LoopConfig(epochs=1, batch_size=4, augment=augment, eval_every=1, eval_size=8)
        loop.Trainer(model(), split, split, cfg, torch.device("cpu"), tmp_path / f"a{augment}").run()
        assert len(seen) == (2 if augment else 0)


def _bad_cases(data, bank, tmp):
    corrupt = tmp / "corrupt.safetensors"
    corrupt.write_bytes(b"garbage" * 10)
    archive = tmp / "archive.npy"                   # an .npz archive under a .npy name
    with open(archive, "wb") as f:
        np.savez(f, k=smooth_kernels(20, 7).numpy())
    b5 = tmp / "b5.safetensors"
    KernelBank({"conv1": smooth_kernels(20, 5)}).save(b5)
    base = ["--data-root", str(data), "--bank", str(bank), *FAST]
    return [
        (train, ["--data-root", str(tmp / "nodata"), "--bank", str(bank)], "no cifar10 train data"),
        (train, base + ["--train-size", "55"], "not divisible"),
        (train, base + ["--train-size", "1000"], "target pool has"),
        (train, base + ["--lambda", "-1"], "--lambda"),
        (train, base + ["--lambda", "nan"], "--lambda"),
        (train, base + ["--reg-layers", "conv9"], "unknown layer"),
        (train, base + ["--reg-layers", "conv1,conv1"], "twice"),
        (train, ["--data-root", str(data), "--bank", str(archive), *FAST], "an .npz archive"),
        (train, ["--data-root", str(data), "--bank", str(b5), *FAST], "5x5"),
        (train, ["--data-root", str(data), "--bank", str(corrupt), *FAST], "not a readable"),
        (train, ["--data-root", str(data), "--bank", str(tmp / "missing.safetensors"), *FAST], "no such bank"),
        (train, base + ["--train-size", "0"], "positive integer"),
        (train, base + ["--resume"], "no checkpoint"),
        (train, base + ["--device", "cuda:7"] if not torch.cuda.is_available() else base + ["--device", "tpu"],
         "--device"),
        (collect, ["--data-root", str(data), "--dataset", "imagenet"], "unknown dataset"),
        (train, base + ["--d-hidden", "128,x"], "--d-hidden"),
        (collect, ["--data-root", str(data), "--seeds", "a,b"], "--seeds"),
        (collect, ["--data-root", str(data), "--layers", "conv1,fc9"], "unknown layer"),
    ]


def test_bad_input_one_line_exit_2_nothing_written(data, bank, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FASTREG_OFFLINE", "1")
    for i, (mod, argv, msg) in enumerate(_bad_cases(data, bank, tmp_path)):
        out = tmp_path / f"out{i}"
        with pytest.raises(SystemExit) if msg in ("--lambda", "positive integer") else _nullctx() as e:
            rc, cap = _run(mod, argv + ["--out", str(out)], capsys)
        if msg in ("--lambda", "positive integer"):
            assert e.value.code == 2
            cap = capsys.readouterr()
        else:
            assert rc == 2, (argv, cap.err)
        lines = cap.err.strip().splitlines()
        assert len(lines) == 1 and msg in lines[0], (argv, cap.err)
        assert "Traceback" not in cap.err
        assert not out.exists(), f"{argv}: wrote {out}"


class _nullctx:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def test_out_below_a_file_refused_before_any_work(data, bank, tmp_path, capsys):
    from fastreg import pack, report, sweep
    (tmp_path / "afile").write_text("x")
    (tmp_path / "runs").mkdir()
    out = tmp_path / "afile" / "sub"
    cases = [(train, ["--data-root", str(data), "--bank", str(bank), *FAST, "--out", str(out)]),
             (collect, ["--data-root", str(data), "--preset", "tiny", "--out", str(out)]),
             (sweep, ["--data-root", str(data), "--sizes", "20", "--out", str(out)]),
             (pack, ["--data-root", str(data), "--sizes", "20", "--out", str(out)]),
             (report, [str(tmp_path / "runs"), "--out", str(out / "r.md")])]
    for mod, argv in cases:
        rc, cap = _run(mod, argv, capsys)
        lines = cap.err.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and "is a file" in lines[0], (mod.__name__, cap.err)
    assert (tmp_path / "afile").read_text() == "x"


def test_subprocess_bad_input_has_no_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "fastreg.train", "--data-root", str(tmp_path),
                        "--out", str(tmp_path / "o")], capture_output=True, text=True,
                       env={**__import__("os").environ, "FASTREG_OFFLINE": "1"}, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_triton_backend_on_cpu_refused(data, bank, tmp_path, capsys, monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("CPU-only refusal")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    out = tmp_path / "t"
    rc, cap = _run(train, ["--data-root", str(data), "--bank", str(bank), "--backend", "triton",
                           "--out", str(out), *FAST], capsys)
    assert rc == 2 and "needs a CUDA device" in cap.err and not out.exists()


def test_collect_cifar100_layout(tmp_path, capsys):
    """The DWP protocol's source (CIFAR-100) goes through the same code path as CIFAR-10."""
    root = make_npz_data(tmp_path / "d", per_class_train=3, per_class_test=1, classes=100)
    for split in ("train", "test"):
        (root / f"cifar10_{split}.npz").rename(root / f"cifar100_{split}.npz")
    out = tmp_path / "c100"
    rc, cap = _run(collect, ["--data-root", str(root), "--dataset", "cifar100", "--preset", "tiny",
                             "--seeds", "0", "--layers", "conv1", "--out", str(out)], capsys)
    assert rc == 0, cap.err
    b = KernelBank.load(out / "bank.safetensors")
    assert b.meta["dataset"] == "cifar100" and b.meta["source_split"] == "cifar100 train"
    model = torch.load(out / "seed0" / "model.pt", weights_only=True)
    assert model["fc2.weight"].shape[0] == 100
