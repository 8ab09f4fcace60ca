"""Data-parallel training under torchrun (DESIGN.md §10), on the CPU with gloo and 2 processes:
ranks stay in sync, the loss curve matches one process, a killed worker's run resumes, and bad
combinations are refused."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import torch.multiprocessing as mp

from fastreg.distributed import Dist, check_in_sync
from helpers import make_bank_file, make_npz_data

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "FASTREG_OFFLINE": "1", "TQDM_DISABLE": "1"}
ARGS = ["--width", "0.125", "--train-size", "40", "--batch-size", "20", "--eval-size", "40", "--eval-every", "1",
        "--device", "cpu"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    return make_npz_data(root / "data", per_class_train=20, per_class_test=10), make_bank_file(root / "bank.safetensors")


def _train(setup, out, *extra, nproc: int = 2, epochs: int = 6, wait: bool = True):
    data, bank = setup
    head = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port",
            str(29500 + os.getpid() % 400)] if nproc > 1 else [sys.executable]
    cmd = [*head, "-m", "fastreg.train", "--data-root", str(data), "--bank", str(bank), "--out", str(out),
           "--epochs", str(epochs), *ARGS, *extra]
    if not wait:
        return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)


def _why(p) -> str:
    """A failed torchrun's cause: the error lines of its ranks (the launcher's own summary
    at the end of stderr names only the exit code), then the tail."""
    lines = p.stderr.splitlines()
    hits = [l for l in lines if any(w in l for w in ("Error", "terminate", "what()", "Exception", "Timeout"))]
    return "\n".join(hits[:20]) + "\n...\n" + p.stderr[-1000:]


def _rows(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_two_ranks_match_one_process_and_stay_in_sync(setup, tmp_path):
    """The checkpoint at every epoch checks that both ranks hold bitwise the same classifier
    and D (the run fails otherwise). The 2-rank loss curve matches one process with the same
    global batch (40, 20 per rank): each rank sees the same augmented global batch, but batch
    norm normalizes its half with that half's statistics (SyncBatchNorm is GPU-only), and each
    rank draws its own real kernels for D. Measured here: the curves differ by at most 0.023
    nats over 6 steps, while a gradient summed instead of averaged over the ranks (twice the
    learning rate, measured the same way) moves them by 0.15 by step 6. 0.05 lies between."""
    one, two = tmp_path / "one", tmp_path / "two"
    p1 = _train(setup, one, "--batch-size", "40", nproc=1)
    p2 = _train(setup, two, "--batch-size", "40", "--keep-checkpoint")
    assert p1.returncode == 0 and p2.returncode == 0, _why(p2)
    a, b = _rows(one), _rows(two)
    assert [r["step"] for r in a] == [r["step"] for r in b]
    diffs = [abs(x["train_ce"] - y["train_ce"]) for x, y in zip(a, b)]
    assert diffs[0] < 1e-2 and max(diffs) < 0.05, diffs
    assert json.loads((two / "config.json").read_text())["device"] == "cpu"
    ck = torch.load(two / "checkpoint.pt", weights_only=True)
    assert ck["world"] == 2 and "conv1.weight" in ck["model"]             # unwrapped from DDP


@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices (nccl: one rank per GPU)")
def test_two_ranks_on_two_gpus_match_one_gpu(setup, tmp_path):
    """The nccl path: each rank on cuda:LOCAL_RANK. Same tolerance and reason as on the CPU."""
    one, two = tmp_path / "one", tmp_path / "two"
    p1 = _train(setup, one, "--batch-size", "40", "--device", "cuda", nproc=1)   # the last --device wins
    p2 = _train(setup, two, "--batch-size", "40", "--device", "cuda", "--keep-checkpoint")
    assert p1.returncode == 0 and p2.returncode == 0, _why(p2)
    diffs = [abs(x["train_ce"] - y["train_ce"]) for x, y in zip(_rows(one), _rows(two))]
    assert len(diffs) == 6 and max(diffs) < 0.05, diffs
    assert torch.load(two / "checkpoint.pt", weights_only=True)["world"] == 2


def _check_worker(rank: int, world: int, init: str, perturb: bool, out) -> None:
    import torch.distributed as td
    td.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    t = [torch.arange(6.0)]
    if perturb and rank == 1:
        t[0][3] += 1e-6
    try:
        check_in_sync(t, Dist(rank, world), "test tensors")
        out.put((rank, "ok"))
    except RuntimeError as e:
        out.put((rank, str(e)))
    finally:
        td.destroy_process_group()


@pytest.mark.parametrize("perturb", [False, True])
def test_consistency_check_catches_a_rank_that_drifted(tmp_path, perturb):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    init = f"file://{tmp_path / 'pg'}"
    ps = [ctx.Process(target=_check_worker, args=(r, 2, init, perturb, q)) for r in range(2)]
    for p in ps:
        p.start()
    got = dict(q.get(timeout=120) for _ in ps)
    for p in ps:
        p.join(60)
    if perturb:
        assert all("differ between ranks" in v for v in got.values()), got
    else:
        assert got == {0: "ok", 1: "ok"}


def test_sigkill_of_one_worker_then_resume_finishes_the_same_run(setup, tmp_path):
    ref, run = tmp_path / "ref", tmp_path / "run"
    r = _train(setup, ref, epochs=40)
    assert r.returncode == 0, _why(r)
    p = _train(setup, run, epochs=40, wait=False)
    deadline = time.time() + 300
    while time.time() < deadline and (not (run / "metrics.jsonl").exists() or len(_rows(run)) < 2):
        time.sleep(0.01)
    workers = [int(w) for w in subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True,
                                              text=True).stdout.split()]      # torchrun's workers
    assert workers, "no worker processes found"
    os.kill(workers[-1], signal.SIGKILL)                              # one worker dies mid-run
    p.communicate(timeout=300)
    assert p.returncode != 0 and not (run / "final.json").exists()
    r = _train(setup, run, "--resume", epochs=40)
    assert r.returncode == 0, _why(r)
    strip = lambda d: {k: v for k, v in json.loads((d / "final.json").read_text()).items()}  # noqa: E731
    assert strip(run) == strip(ref)                                   # same numbers as uninterrupted


def test_bad_combinations_refused_with_one_line(setup, tmp_path):
    r = _train(setup, tmp_path / "a", "--batch-size", "21")
    assert r.returncode != 0 and r.stderr.count("does not split over 2 ranks") == 2, r.stderr[-1500:]
    assert "fastreg/" not in r.stderr                               # no traceback of ours
    r = _train(setup, tmp_path / "b", "--device", "cuda:3")
    assert r.returncode != 0 and "under torchrun" in r.stderr and not (tmp_path / "b").exists()
    one = tmp_path / "c"
    assert _train(setup, one, "--keep-checkpoint", nproc=1, epochs=3).returncode == 0
    (one / "final.json").unlink()                                   # as if killed before it was written
    r = _train(setup, one, "--resume", epochs=3)                    # 1-rank checkpoint, 2 ranks
    assert r.returncode != 0 and "written by 1 rank(s), this run has 2" in r.stderr


def test_collect_under_torchrun_matches_its_own_bank_format(setup, tmp_path):
    """collect trains each source model data-parallel; rank 0 writes one bank."""
    data, _ = setup
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(29900 + os.getpid() % 90), "-m", "fastreg.collect", "--data-root", str(data), "--preset", "tiny",
           "--seeds", "0", "--epochs", "2", "--layers", "conv1", "--device", "cpu", "--out", str(tmp_path / "c")]
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, _why(r)
    from fastreg.bank import KernelBank
    bank = KernelBank.load(tmp_path / "c" / "bank.safetensors")
    assert bank.layers["conv1"].shape[1:] == (7, 7) and bank.filter_rows("conv1") == 3
    assert r.stdout.count("bank written") == 1


@pytest.mark.parametrize("joined", [False, True])
def test_exit_process_keeps_exit_code_and_output(tmp_path, joined):
    """A worker that left a process group ends through os._exit (DESIGN.md §10): its exit
    code and its buffered output must survive that; a process that never joined one exits
    normally, through SystemExit."""
    code = f"""
import atexit, sys, torch.distributed as td
from fastreg.distributed import close_process_group, exit_process
if {joined}:
    td.init_process_group("gloo", init_method="file://{tmp_path / 'pg'}", rank=0, world_size=1)
close_process_group()
atexit.register(lambda: print("teardown ran"))
print("written before exit", end="")        # still in the buffer: stdout is a pipe
sys.stderr.write("error: one line")
exit_process(3)
"""
    p = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=120)
    assert p.returncode == 3, p.stderr[-2000:]
    assert p.stdout.startswith("written before exit") and "error: one line" in p.stderr
    assert ("teardown ran" in p.stdout) == (not joined)      # os._exit skips the interpreter's teardown
