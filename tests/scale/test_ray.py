"""``sweep --ray`` and ``collect --ray`` against a real local Ray cluster started on loopback
(DESIGN.md §10): the same run folders as the local path, and a task killed mid-run that the
next sweep resumes."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

ray = pytest.importorskip("ray", reason='ray is the optional extra: pip install -e ".[ray]"')

from helpers import make_bank_file, make_npz_data  # noqa: E402

# RAY_AUTH_MODE: the test's cluster and clients alike without token auth, whatever a token
# file in ~/.ray left by an earlier local ray.init() says (it made the clients' token mismatch)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "FASTREG_OFFLINE": "1", "TQDM_DISABLE": "1",
       "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head node with 2 CPUs on 127.0.0.1, stopped afterwards."""
    port = _free_port()
    temp = f"/tmp/fr-ray-{os.getpid()}"            # Ray's socket paths must stay short
    r = subprocess.run(["ray", "start", "--head", "--port", str(port), "--num-cpus", "2",
                        "--node-ip-address", "127.0.0.1", "--include-dashboard", "false",
                        "--disable-usage-stats", "--temp-dir", temp], env=ENV, capture_output=True, text=True,
                       timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    yield f"127.0.0.1:{port}"
    subprocess.run(["ray", "stop", "--force"], env=ENV, capture_output=True, timeout=120)
    shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray")
    return make_npz_data(root / "data", per_class_train=10, per_class_test=5), make_bank_file(root / "bank.safetensors")


def _sweep(setup, out, *extra, epochs: int = 2, wait: bool = True):
    data, bank = setup
    cmd = [sys.executable, "-m", "fastreg.sweep", "--data-root", str(data), "--bank", str(bank), "--width", "0.125",
           "--sizes", "20", "--methods", "baseline,adv1", "--seeds", "0", "--epochs", str(epochs),
           "--out", str(out), *extra, "--", "--eval-size", "50", "--batch-size", "10"]
    if not wait:
        return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)


def _finals(out) -> dict:
    return {p.parent.relative_to(out).as_posix(): json.loads(p.read_text()) for p in sorted(out.rglob("final.json"))}


def test_ray_sweep_gives_the_run_folders_of_the_local_path(cluster, setup, tmp_path):
    local, remote = tmp_path / "local", tmp_path / "ray"
    assert _sweep(setup, local).returncode == 0
    r = _sweep(setup, remote, "--ray", cluster)
    assert r.returncode == 0, r.stderr[-2000:]
    assert _finals(remote) == _finals(local) and len(_finals(local)) == 2        # same numbers, bit for bit
    log = [json.loads(line) for line in (remote / "sweep_log.jsonl").read_text().splitlines()]
    assert sorted(row["run"] for row in log) == sorted(_finals(local)) and {row["device"] for row in log} == {"ray"}
    r = _sweep(setup, remote, "--ray", cluster)                                   # all finished: nothing to run
    assert r.returncode == 0 and len((remote / "sweep_log.jsonl").read_text().splitlines()) == 2


def test_a_task_killed_mid_run_is_resumed_by_the_next_sweep(cluster, setup, tmp_path):
    out = tmp_path / "kill"
    p = _sweep(setup, out, "--ray", cluster, "--methods", "adv1", "--seeds", "0,1", epochs=20, wait=False)
    deadline = time.time() + 300
    while time.time() < deadline and not list(out.rglob("checkpoint.pt")):
        time.sleep(0.05)
    subprocess.run(["pkill", "-9", "-f", "ray::train_task"], capture_output=True)
    _, err = p.communicate(timeout=600)
    assert p.returncode == 1 and "rerun with --resume" in err, err[-2000:]
    assert len(_finals(out)) < 2
    r = _sweep(setup, out, "--ray", cluster, "--methods", "adv1", "--seeds", "0,1", "--resume", epochs=20)
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(_finals(out)) == 2 and "resumed" in (out / "sweep_log.jsonl").read_text()


def test_collect_spreads_its_seeds_over_the_cluster(cluster, setup, tmp_path):
    data, _ = setup
    args = ["--data-root", str(data), "--preset", "tiny", "--seeds", "0,1", "--layers", "conv1"]
    local = subprocess.run([sys.executable, "-m", "fastreg.collect", *args, "--out", str(tmp_path / "l")],
                           env=ENV, capture_output=True, text=True, timeout=600)
    remote = subprocess.run([sys.executable, "-m", "fastreg.collect", *args, "--out", str(tmp_path / "r"),
                             "--ray", cluster], env=ENV, capture_output=True, text=True, timeout=600)
    assert local.returncode == 0 and remote.returncode == 0, remote.stderr[-2000:]
    from fastreg.bank import KernelBank
    a, b = (KernelBank.load(tmp_path / d / "bank.safetensors") for d in ("l", "r"))
    assert a.layers["conv1"].equal(b.layers["conv1"]) and a.meta["source_test_acc"] == b.meta["source_test_acc"]
