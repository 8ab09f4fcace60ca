"""No lost work, no silent garbage, no code from untrusted files."""
import json
import os
import pickle
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from fastreg.lab import settings, train
from fastreg.lab.cli import run_main
from fastreg.io_util import UnsafeCheckpoint, atomic_write_json, safe_torch_load
from helpers import make_bank_file, make_npz_data

def args(epochs: int = 6) -> list[str]:
    return ["--width", "0.125", "--epochs", str(epochs), "--eval-every", "1", "--eval-size", "50",
            "--batch-size", "10", "--train-size", "20"]


ARGS = args()
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "FASTREG_OFFLINE": "1"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("rel")
    return make_npz_data(root / "data"), make_bank_file(root / "bank.safetensors")


def _cmd(data, bank, out, *extra, epochs=6):
    return [sys.executable, "-m", "fastreg.train", "--data-root", str(data), "--bank", str(bank),
            "--out", str(out), *args(epochs), *extra]


def _final(out):
    return json.loads((out / "final.json").read_text())


KILL_SEED = int(os.environ.get("FASTREG_KILL_SEED", "0"))   # replay a failure: same seed, same kill steps


def _sigkill_until_done(launch, progress, done, targets: list[int], max_delay: float) -> int:
    """Rerun ``launch()`` until ``done()``. Launch i (for each of the increasing ``targets``)
    is SIGKILLed once ``progress()`` (epochs finished) reaches ``targets[i]``, after a delay
    of up to ``max_delay`` s drawn from ``KILL_SEED``; then relaunched. Returns the kills."""
    rng = random.Random(KILL_SEED)
    kills = 0
    for _ in range(20):
        if done():
            break
        p = launch()
        if kills < len(targets):
            deadline = time.time() + 200
            while p.poll() is None and time.time() < deadline and progress() < targets[kills]:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, max_delay))
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                kills += 1
        _, err = p.communicate(timeout=300)
        assert p.returncode in (0, -signal.SIGKILL), err
    return kills


def _rows(path) -> int:
    try:
        return len(path.read_text().splitlines())
    except OSError:
        return 0


def test_deterministic_and_sigkill_resume(setup, tmp_path):
    data, bank = setup
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for out in (a, b):
        subprocess.run(_cmd(data, bank, out, epochs=20), env=ENV, check=True, capture_output=True,
                       timeout=300)
    assert (a / "final.json").read_bytes() == (b / "final.json").read_bytes()   # same seeds, same bits
    # SIGKILL after epochs drawn from KILL_SEED (one metrics row per epoch), resuming each time
    targets = sorted(random.Random(KILL_SEED).sample(range(2, 17), 3))
    ck = c / "checkpoint.pt"

    def launch():
        extra = ("--resume",) if ck.exists() else ()
        return subprocess.Popen(_cmd(data, bank, c, *extra, epochs=20), env=ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    kills = _sigkill_until_done(launch, lambda: _rows(c / "metrics.jsonl"),
                                lambda: (c / "final.json").exists(), targets, max_delay=0.05)
    why = f"KILL_SEED={KILL_SEED}, kills after epochs {targets}"
    assert kills == len(targets), f"a run finished before its kill ({why})"
    assert _final(c) == _final(a), f"resumed run differs ({why})"
    rows_a = [json.loads(l) for l in (a / "metrics.jsonl").read_text().splitlines()]
    rows_c = [json.loads(l) for l in (c / "metrics.jsonl").read_text().splitlines()]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "time"} for r in rows]  # noqa: E731
    assert strip(rows_c) == strip(rows_a), why


def test_resume_rewrites_a_metrics_log_the_kill_left_short(setup, tmp_path):
    """A SIGKILL after the final checkpoint but before metrics.jsonl (its second write)
    leaves the log one row short; the resumed run has no epoch left to train and must still
    write the log whole."""
    data, bank = setup
    out = tmp_path / "r"
    common = ["--data-root", str(data), "--bank", str(bank), "--out", str(out), *args(3)]
    assert run_main(train.main, common + ["--keep-checkpoint"]) == 0
    log = out / "metrics.jsonl"
    full = log.read_text()
    rows = full.splitlines()
    assert len(rows) == 3
    log.write_text("\n".join(rows[:-1]) + "\n")      # the state such a kill leaves
    (out / "final.json").unlink()
    ck = safe_torch_load(out / "checkpoint.pt")
    assert ck["cpu_elapsed"] > 0
    torch.save({**ck, "cpu_elapsed": 1e6}, out / "checkpoint.pt")    # a mark the resumed record must carry
    assert run_main(train.main, common + ["--resume"]) == 0
    assert log.read_text() == full
    assert 1e6 <= json.loads((out / "timing.json").read_text())["cpu_time_s"] < 1e6 + 600
    (out / "final.json").unlink()                  # a checkpoint from before CPU time was kept:
    torch.save({k: v for k, v in ck.items() if k != "cpu_elapsed"}, out / "checkpoint.pt")
    assert run_main(train.main, common + ["--resume"]) == 0
    assert json.loads((out / "timing.json").read_text())["cpu_time_s"] is None   # unknown, not undercounted



def test_resume_by_run_folder_alone_continues_a_killed_run(setup, tmp_path, capsys):
    """``--resume RUN_FOLDER`` with no other flag continues a SIGKILLed run with the settings it
    recorded (here several off their defaults: --amp, --lambda, --seed, --d-unit) and ends
    bit-identical to an uninterrupted run; ``--out RUN --resume`` likewise; only a setting typed
    differently is refused, by name."""
    data, bank = setup
    a, c = tmp_path / "a", tmp_path / "c"
    own = ["--amp", "--lambda", "0.5", "--seed", "1", "--d-unit", "filter", "--keep-checkpoint"]
    subprocess.run(_cmd(data, bank, a, *own, epochs=8), env=ENV, check=True, capture_output=True, timeout=300)
    p = subprocess.Popen(_cmd(data, bank, c, *own, epochs=8), env=ENV, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    deadline = time.time() + 200
    while p.poll() is None and time.time() < deadline and _rows(c / "metrics.jsonl") < 3:
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.communicate(timeout=60)
    assert p.returncode == -signal.SIGKILL and not (c / "final.json").exists()
    assert (c / "checkpoint.pt").exists()
    capsys.readouterr()
    assert run_main(train.main, ["--resume", str(c), "--lambda", "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "different settings" in err and err.rstrip().endswith(": lam")
    assert run_main(train.main, ["--resume", str(c), "--out", str(tmp_path / "elsewhere")]) == 2
    assert "leave out --out" in capsys.readouterr().err
    r = subprocess.run([sys.executable, "-m", "fastreg.train", "--resume", str(c)], env=ENV, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert _final(c) == _final(a)
    cfg = json.loads((c / "config.json").read_text())
    assert cfg["amp"] is True and cfg["lam"] == 0.5 and cfg["d_unit"] == "filter"
    assert (c / "checkpoint.pt").exists()                                    # --keep-checkpoint, as recorded
    assert run_main(train.main, ["--out", str(c), "--resume"]) == 0          # finished: its result
    assert "is finished" in capsys.readouterr().out
    final = json.loads((c / "final.json").read_text())
    final["lambda"] = final.pop("lam")                                       # a final.json naming it "lambda"
    (c / "final.json").write_text(json.dumps(final))
    assert run_main(train.main, ["--resume", str(c)]) == 0
    assert "λ=0.5, seed 1" in capsys.readouterr().out


def test_resume_of_a_checkpoint_file_continues_in_its_own_folder(setup, tmp_path, capsys, monkeypatch):
    """``--resume RUN/checkpoint.pt`` with no --out continues in RUN, never in the folder the
    default settings would name; into a folder holding a finished run it is refused; a
    mistyped path is one line."""
    data, bank = setup
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "mine"
    argv = ["--data-root", str(data), "--bank", str(bank), "--out", str(run), "--seed", "5", "--lambda", "0.5",
            *args(2), "--keep-checkpoint"]
    assert run_main(train.main, argv) == 0
    done = _final(run)
    (run / "final.json").unlink()                                        # as a kill after the last epoch
    capsys.readouterr()
    assert run_main(train.main, ["--resume", str(run / "checkpoint.pt")]) == 0
    assert _final(run) == done and not (tmp_path / "runs").exists()
    assert run_main(train.main, ["--resume", str(run / "checkpoint.pt")]) == 2    # finished there now
    assert "already holds a finished run" in capsys.readouterr().err
    assert run_main(train.main, ["--resume", str(tmp_path / "mnie")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such run folder or checkpoint file" in err

class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")  # the crafted pickle's protocol
def test_malicious_checkpoint_refused(setup, tmp_path, capsys):
    data, bank = setup
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"model": _Evil(str(marker))}, evil)
    assert not marker.exists()
    with pytest.raises(UnsafeCheckpoint):
        safe_torch_load(evil)
    out = tmp_path / "run"
    rc = run_main(train.main, ["--data-root", str(data), "--bank", str(bank), "--out", str(out),
                               *ARGS, "--resume", str(evil)])
    err = capsys.readouterr().err
    assert rc == 2 and "refused" in err and len(err.strip().splitlines()) == 1
    assert not marker.exists() and not out.exists()
    # a plain pickle file (not a torch zip) is refused too
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(_Evil(str(marker))))
    with pytest.raises(UnsafeCheckpoint):
        safe_torch_load(raw)
    assert not marker.exists()


def test_truncated_checkpoint_refused(setup, tmp_path, capsys):
    data, bank = setup
    out = tmp_path / "r"
    assert run_main(train.main, ["--data-root", str(data), "--bank", str(bank), "--out", str(out),
                                 *args(1), "--keep-checkpoint"]) == 0
    (out / "final.json").unlink()                      # interrupted after its last checkpoint
    ck = out / "checkpoint.pt"
    ck.write_bytes(ck.read_bytes()[:1000])
    capsys.readouterr()
    rc = run_main(train.main, ["--data-root", str(data), "--bank", str(bank), "--out", str(out),
                               *args(1), "--resume"])
    assert rc == 2 and "cannot read checkpoint" in capsys.readouterr().err


def test_nonfinite_stops_keeps_last_good_checkpoint(setup, tmp_path, capsys, monkeypatch):
    data, bank = setup
    from fastreg.lab import loop
    orig = loop.Trainer._train_step

    def poisoned(self, xb, yb):
        if self.step == 5:           # epoch 3 (2 steps per epoch): after 2 good checkpoints
            with torch.no_grad():
                self.model.conv1.weight[0, 0, 0, 0] = float("nan")
        return orig(self, xb, yb)

    monkeypatch.setattr(loop.Trainer, "_train_step", poisoned)
    out = tmp_path / "nan"
    rc = run_main(train.main, ["--data-root", str(data), "--bank", str(bank), "--out", str(out), *ARGS])
    err = capsys.readouterr().err
    assert rc == 3 and "non-finite" in err
    assert not (out / "final.json").exists()
    text = (out / "metrics.jsonl").read_text()
    assert "NaN" not in text and "Infinity" not in text
    st = safe_torch_load(out / "checkpoint.pt")
    assert st["epoch"] == 2 and all(torch.isfinite(v).all() for v in st["model"].values()
                                    if v.is_floating_point())


def test_atomic_write_leaves_old_file_on_crash(tmp_path, monkeypatch):
    p = tmp_path / "x.json"
    atomic_write_json(p, {"a": 1})

    def boom(*a, **k):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_json(p, {"a": 2})
    assert json.loads(p.read_text()) == {"a": 1}
    assert [f.name for f in tmp_path.iterdir()] == ["x.json"]
    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "n.json", {"acc": float("nan")})
    assert not (tmp_path / "n.json").exists()


def test_resume_with_other_settings_refused(setup, tmp_path, capsys):
    data, bank = setup
    out = tmp_path / "s"
    base = ["--data-root", str(data), "--bank", str(bank), "--out", str(out), *args(1)]
    assert run_main(train.main, base) == 0
    capsys.readouterr()
    assert run_main(train.main, base + ["--resume", "--lambda", "3"]) == 2
    assert "different settings" in capsys.readouterr().err


def test_resume_refuses_a_bank_that_changed_under_the_same_name(setup, tmp_path, capsys):
    """``--bank auto`` or a packaged name can mean another bank after an upgrade (the default
    bank changed once): the run's recorded bank metadata is checked, not only the argument."""
    import shutil
    from fastreg.bank import KernelBank
    data, bank = setup
    mine = tmp_path / "bank.safetensors"
    shutil.copy(bank, mine)
    out = tmp_path / "s"
    base = ["--data-root", str(data), "--bank", str(mine), "--out", str(out), *args(1)]
    assert run_main(train.main, base) == 0
    other = KernelBank.load(mine)
    other.meta["recipe"] = '{"arch": "dwpnet", "epochs": 24}'
    other.save(mine)                                      # same path, another bank
    capsys.readouterr()
    assert run_main(train.main, base + ["--resume"]) == 2
    err = capsys.readouterr().err
    assert "started with bank" in err and "dwpnet-24ep" in err and err.count("\n") == 1
    shutil.copy(bank, mine)                               # the run's own bank again
    assert run_main(train.main, base + ["--resume"]) == 0


def test_resume_into_another_out_checks_the_checkpoint_settings(setup, tmp_path, capsys):
    """``--resume PATH --out NEW``: the settings saved in the checkpoint are checked too,
    nothing is left behind when refused, and the continued run gets its own config.json."""
    data, bank = setup
    a_dir, b_dir, c_dir = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    common = ["--data-root", str(data), "--bank", str(bank), *args(1)]
    assert run_main(train.main, common + ["--out", str(a_dir), "--keep-checkpoint"]) == 0
    ck = a_dir / "checkpoint.pt"
    capsys.readouterr()
    assert run_main(train.main, common + ["--out", str(b_dir), "--resume", str(ck), "--lambda", "5"]) == 2
    assert "different settings" in capsys.readouterr().err and not b_dir.exists()
    assert run_main(train.main, common + ["--out", str(b_dir), "--resume", str(ck)]) == 0
    assert json.loads((b_dir / "config.json").read_text())["lam"] == 1.0
    assert _final(b_dir)["test_acc"] == _final(a_dir)["test_acc"]
    # an older checkpoint without saved settings, away from its config.json: refused
    legacy = torch.load(ck, weights_only=True)
    del legacy["run_config"]
    (tmp_path / "moved").mkdir()
    torch.save(legacy, tmp_path / "moved" / "checkpoint.pt")
    capsys.readouterr()
    assert run_main(train.main, common + ["--out", str(c_dir), "--resume",
                                          str(tmp_path / "moved" / "checkpoint.pt")]) == 2
    assert "carries no settings" in capsys.readouterr().err and not c_dir.exists()


def test_collect_sigkill_resume_same_bank(setup, tmp_path):
    data, _ = setup
    base = [sys.executable, "-m", "fastreg.collect", "--data-root", str(data), "--preset", "tiny", "--resume",
            "--seeds", "0,1", "--epochs", "4", "--layers", "conv1"]
    a, c = tmp_path / "a", tmp_path / "c"
    subprocess.run(base + ["--out", str(a)], env=ENV, check=True, capture_output=True, timeout=300)

    def epochs_done() -> int:       # over both seeds: 4 for a finished one, else its checkpoint's
        n = 0
        for s in (0, 1):
            d = c / f"seed{s}"
            if (d / "result.json").exists():
                n += 4
            elif (d / "checkpoint.pt").exists():
                try:
                    n += int(safe_torch_load(d / "checkpoint.pt")["epoch"])
                except UnsafeCheckpoint:    # being replaced right now
                    pass
        return n
    targets = sorted(random.Random(KILL_SEED).sample(range(1, 7), 2))
    kills = _sigkill_until_done(
        lambda: subprocess.Popen(base + ["--out", str(c)], env=ENV, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE),
        epochs_done, lambda: (c / "bank.safetensors").exists(), targets, max_delay=0.05)
    assert kills == len(targets), f"KILL_SEED={KILL_SEED}, kills after epochs {targets}"
    from fastreg.bank import KernelBank
    ba, bc = KernelBank.load(a / "bank.safetensors"), KernelBank.load(c / "bank.safetensors")
    assert torch.equal(ba.layers["conv1"], bc.layers["conv1"])
    assert ba.meta["source_test_acc"] == bc.meta["source_test_acc"]


def test_settings_diff_reads_old_runs_with_their_behaviour(tmp_path):
    """Runs from before ``--fake-max auto`` recorded ``fake_max: null`` (every kernel): the same
    setting as ``auto`` where auto keeps every kernel, not where it caps them; a bank copied to
    another path with the same bytes is the same bank, one with other bytes is not."""
    a, b, c = tmp_path / "a.safetensors", tmp_path / "b.safetensors", tmp_path / "c.safetensors"
    a.write_bytes(b"bank-1"), b.write_bytes(b"bank-1"), c.write_bytes(b"bank-2")
    cfg = {"lam": 1.0, "arch": "dwpnet", "width": 0.5, "d_unit": "slice", "bank": str(a)}
    old = {**cfg, "reg_layers": "conv1", "fake_max": None}
    assert settings.settings_diff(old, {**old, "fake_max": "auto", "bank": str(b)}) == []
    assert settings.settings_diff(old, {**old, "bank": str(c)}) == ["bank"]
    assert settings.settings_diff(old, {**old, "fake_max": 64}) == ["fake_max"]
    every = {**cfg, "reg_layers": "all", "fake_max": None}   # half-width DWPNet: > 16384 slices
    assert settings.fake_max_of({**every, "fake_max": "auto"}) is not None
    assert settings.settings_diff(every, {**every, "fake_max": "auto"}) == ["fake_max"]
    assert settings.settings_diff({**every, "lam": 0.0}, {**every, "lam": 0.0, "fake_max": "auto"}) == []
    assert settings.settings_diff({**old, "fake_max_used": 100}, {**old, "fake_max": 100}) == []
