"""Runs as Ray tasks: the engine behind ``sweep --ray`` and ``collect --ray`` (DESIGN.md §10).

Part of the command-line layer: it runs ``fastreg.train`` entry points, and only the
``sweep`` and ``collect`` commands import it.

Optional (``pip install -e ".[ray]"``); without ray installed nothing here is imported. Each
task writes its own run folder, so the sweep's ``--out`` must be on a filesystem every node
of the cluster sees (one machine, or a shared mount); the driver only gets each task's status
back, and writes the sweep log. Finished runs are skipped and interrupted ones resumed, exactly
as in the local path, because the driver plans the runs the same way.
"""
from __future__ import annotations

from typing import Callable, Iterator, Sequence

from ..errors import UsageError


def connect(address: str):
    """``ray.init`` to a running cluster (``auto``, or ``HOST:PORT``)."""
    try:
        import ray
    except ImportError:
        raise UsageError('--ray needs ray: pip install -e ".[ray]"') from None
    if not ray.is_initialized():
        try:
            ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise UsageError(f"--ray {address}: cannot connect ({str(e).splitlines()[0][:160]})") from None
    return ray


def train_task(argv: list[str]) -> tuple[str, float]:
    """One ``fastreg.train`` run in a Ray worker: (``done``, or ``failed`` when it went
    non-finite and its folder holds failed.json as in the local sweep; seconds it took)."""
    import time

    from . import train
    from ..errors import NonFiniteError
    from ..io_util import atomic_write_json
    t0 = time.time()
    try:
        rc = train.main(argv)
    except NonFiniteError as e:
        out = argv[argv.index("--out") + 1]
        atomic_write_json(f"{out}/failed.json", {"error": str(e), "argv": argv})
        return "failed", time.time() - t0
    return ("done" if rc == 0 else f"exit {rc}"), time.time() - t0


def run_tasks(ray, fn: Callable, items: Sequence, args: Callable, cpus: float, gpus: float
              ) -> Iterator[tuple[object, object]]:
    """Submit ``fn(*args(item))`` for every item; yield ``(item, result or exception)`` as they
    finish. A task is not retried: a killed one is reported, and the next run resumes it."""
    remote = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(fn)
    pending = {remote.remote(*args(item)): item for item in items}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        item = pending.pop(done[0])
        try:
            yield item, ray.get(done[0])
        except Exception as e:  # noqa: BLE001  (a task that crashed or was killed)
            yield item, e
