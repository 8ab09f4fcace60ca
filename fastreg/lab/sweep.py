"""``python -m fastreg.sweep``: train sizes × methods × seeds, resumably, on one device.

One run directory per point, ``<out>/n{size}/{method}/s{seed}``, trained in-process by
``fastreg.train.main``. A finished run (``final.json``) is skipped, so a sweep can grow by
rerunning it with more sizes, methods or seeds; one with a checkpoint but no ``final.json``
(interrupted) continues with ``--resume`` and is refused without it; one that went non-finite
(``failed.json``) is skipped until that file is deleted. Per-run wall time and the command go to
``<out>/sweep_log.jsonl`` (read by ``fastreg.report``). Extra train args go after ``--``.
"""
from __future__ import annotations

import json
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from tqdm.auto import tqdm

from . import train
from ..bank import DEFAULT_BANK_NAME
from .banks import load_bank
from .cli import Parser, int_list, name_list, nonneg_float, positive_float, positive_int
from ..chain import load_sources, sources_file
from .classes import keep, parse_classes, relabel
from .data import DATASETS, data_root, load_arrays, split_target_source, stratified_subset
from .device import amp_precision, pick_device
from ..errors import NonFiniteError, UsageError
from ..io_util import atomic_write_json, atomic_write_jsonl, check_out_dir, read_json
from ..layers import conv_layers, select_layers
from ..models import build_model
from .inits import INITS
from .methods import DEFAULT_PRESET, METHOD_KEYS, PRESETS, describe, method_argv, methods
from .runs import run_state
from .settings import build_parser as train_parser, config_of, resolve_defaults, settings_diff
# train options the sweep sets itself: not allowed after ``--``
CONTROLLED = ("train_size", "seed", "data_seed", "out", "resume", "reg_layers", "width", "amp", "bank",
              "data_root", "device", "epochs", "arch", "classes", "sources", "dataset", *METHOD_KEYS)


def build_parser() -> Parser:
    menu = methods()
    width = max(map(len, menu)) + 2
    p = Parser(prog="python -m fastreg.sweep", description=__doc__.splitlines()[0].split(": ", 1)[-1],
               epilog="methods (every one on the same seeds and data):\n" +
               "\n".join(f"  {m:<{width}}{describe(v)}" for m, v in menu.items()) +
               "\n\npresets (--methods NAME):\n" +
               "\n".join(f"  {n:<{width}}{','.join(ms)}" for n, ms in PRESETS.items()))
    p.add_argument("--sizes", default="100,500,1000,5000", help="comma-separated train sizes")
    p.add_argument("--methods", default=DEFAULT_PRESET,
                   help="comma-separated method names, or a preset (both listed below); main: the README's "
                        "comparison, the plain model, whole-filter bank init, and the main job")
    p.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated seeds (data seed = seed)")
    p.add_argument("--dataset", choices=("cifar10", "mnist"), default="cifar10",
                   help="the target data, as in train (mnist: with --arch fconv)")
    p.add_argument("--arch", default="dwpnet", help="classifier (see train --help)")
    p.add_argument("--reg-layers", default="conv1",
                   help="regularized / bank-initialized layers, a selector as in train "
                        "(give each variant its own --out)")
    p.add_argument("--width", type=positive_float, default=None, help="classifier channel multiplier (default: 1; dwpnet, resnetN, vgg11, fconv)")
    p.add_argument("--amp", action="store_true",
                   help="bf16 autocast where the device has native bf16, else fp32 (see train --help)")
    p.add_argument("--bank", default=None, help=f"bank file or packaged bank name, as in train (default: "
                                                f"{DEFAULT_BANK_NAME} for dwpnet, auto for other archs)")
    p.add_argument("--classes", default=None,
                   help="CIFAR-10 classes every run classifies, as in train (e.g. 5,6,7,8,9: the class-disjoint "
                        "protocol; default: all ten)")
    p.add_argument("--sources", default=None,
                   help="source networks for the chain and fine-tuning methods, as in train (default: none)")
    p.add_argument("--data-root", default=None, help="data folder (default: $FASTREG_DATA or ./data)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when there is one)")
    p.add_argument("--out", default="runs/sweep", help="sweep folder")
    p.add_argument("--epochs", type=positive_int, default=None, help="override train's per-size default")
    p.add_argument("--resume", action="store_true",
                   help="continue interrupted runs from their checkpoints (without it they are "
                        "refused); finished runs are always skipped")
    p.add_argument("--dry-run", action="store_true", help="print the plan, run and write nothing")
    p.add_argument("--ray", nargs="?", const="auto", default=None, metavar="ADDRESS",
                   help="run each training run as a task on a Ray cluster (auto, or HOST:PORT); "
                        "--out must be on a filesystem every node sees (default: off, runs one after another here)")
    p.add_argument("--cpus-per-run", type=positive_float, default=1.0, help="--ray: CPUs per run")
    p.add_argument("--gpus-per-run", type=nonneg_float, default=0.0,
                   help="--ray: GPUs per run; fractional shares a GPU between runs")
    return p


def expand_presets(text: str) -> str:
    """``--methods``: each preset name replaced by its methods (``methods.PRESETS``), each
    method once, in the order given; a name typed twice stays twice (and is refused)."""
    items = [m.strip() for m in text.split(",")]
    if len(set(items)) != len(items):
        return text
    return ",".join(dict.fromkeys(m for item in items for m in PRESETS.get(item, (item,))))


def _check_extra(extra: list[str]) -> None:
    """Extra train args must parse and must not set what the sweep sets per run."""
    p = train_parser()
    got, dflt = vars(p.parse_args(extra)), vars(p.parse_args([]))   # parse errors: one line, exit 2
    clash = [k for k in CONTROLLED if got[k] != dflt[k]] + \
        [t for t in extra if t.split("=")[0] in ("--seed", "--data-seed", "--out", "--resume")]
    if clash:
        raise UsageError(f"after --: {clash[0]} is set by the sweep; use the sweep's own options")


def plan(a, extra: list[str]) -> list[tuple[str, Path, list[str]]]:
    """[(state, run dir, train argv)]; state: done | failed | interrupted | new (see
    ``runs.run_state``). Validates, writes nothing."""
    sizes = int_list(a.sizes, "--sizes", 1)
    menu = methods()
    chosen = name_list(expand_presets(a.methods), "--methods", [*menu, *PRESETS])
    seeds = int_list(a.seeds, "--seeds", 0)
    _check_extra(extra)
    amp_precision(pick_device(a.device), a.amp)   # says once, up front, if --amp falls back to fp32
    bank_arg = a.bank or (DEFAULT_BANK_NAME if a.arch == "dwpnet" else "auto")   # as train's --bank auto
    bank = load_bank(bank_arg, a.arch)
    if any(INITS[menu[m]["init"]].needs == "sources" for m in chosen):
        if not a.sources:
            raise UsageError("the chain and fine-tuning methods need --sources (source networks, as in train)")
        load_sources(sources_file(a.sources))        # readable, before any run
    model = build_model(a.arch, DATASETS["cifar10"], a.width or 1.0)
    for n in select_layers(model, a.reg_layers, bank.kernel_sizes(), what="--reg-layers"):   # the bank serves them
        bank.source(n, conv_layers(model)[n].kernel_size[0])
    classes = parse_classes(a.classes, "cifar10", DATASETS["cifar10"])
    if a.dataset == "mnist":
        from .mnist import labels as mnist_labels
        labels, where = mnist_labels(data_root(a.data_root))
        pool = np.arange(len(labels))
    else:
        _, labels = load_arrays("cifar10", data_root(a.data_root), "train")
        pool, where = keep(labels, split_target_source(labels)[0], classes), "the CIFAR-10 target pool"
        labels = relabel(labels, classes)
    for n in sizes:      # every size fits (the messages of train's data loading, before any run)
        stratified_subset(pool, labels, n, len(classes or range(10)), 0, where=where)
    runs = []
    for n in sizes:
        for m in chosen:
            for s in seeds:
                d = Path(a.out) / f"n{n}" / m / f"s{s}"
                argv = [*extra, "--train-size", str(n), *method_argv(m),
                        "--seed", str(s), "--data-seed", str(s), "--reg-layers", a.reg_layers,
                        "--out", str(d), "--bank", bank_arg]
                argv += ["--width", f"{a.width:g}"] if a.width else []
                argv += ["--arch", a.arch] if a.arch != "dwpnet" else []
                argv += ["--classes", ",".join(map(str, classes))] if classes is not None else []
                argv += ["--dataset", a.dataset] if a.dataset != "cifar10" else []
                argv += ["--sources", a.sources] if a.sources and INITS[menu[m]["init"]].needs == "sources" else []
                argv += ["--epochs", str(a.epochs)] if a.epochs else []
                argv += ["--amp"] if a.amp else []
                argv += ["--data-root", a.data_root] if a.data_root else []
                argv += ["--device", a.device] if a.device else []
                state = run_state(d)
                if state != "new" and (d / "config.json").exists():
                    _check_same(d, argv)
                runs.append((state, d, argv + (["--resume"] if state == "interrupted" else [])))
    stopped = [d for state, d, _ in runs if state == "interrupted"]
    if stopped and not a.resume:
        raise UsageError(f"{len(stopped)} run(s) in {a.out} were interrupted (e.g. {stopped[0]}); "
                         f"pass --resume to continue them")
    return runs


def _check_same(d: Path, argv: list[str]) -> None:
    """A run dir from an earlier sweep must hold the same settings (paths aside)."""
    a = train_parser().parse_args(argv)
    resolve_defaults(a)                          # as train records them (classes parsed, epochs set)
    new = config_of(a)
    old = read_json(d / "config.json")
    diff = settings_diff(old, new, ignore=("bank", "sources", "data_root", "backend"), skip_unset=True)
    if diff:
        raise UsageError(f"{d} holds a run with other settings ({', '.join(sorted(diff))}); "
                         f"use another --out")


def _device_name(device: str | None) -> str:
    import torch
    dev = pick_device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    a = build_parser().parse_args(own)
    check_out_dir(a.out)
    runs = plan(a, extra)
    cmd = "python -m fastreg.sweep " + shlex.join(argv)
    todo = [r for r in runs if r[0] in ("new", "interrupted")]
    if a.dry_run:
        for state, d, targv in runs:
            print(f"{state:11s} {d}  python -m fastreg.train {shlex.join(targv)}")
        print(f"{len(runs)} runs: {len(todo)} to run, {sum(r[0] == 'done' for r in runs)} done, "
              f"{sum(r[0] == 'failed' for r in runs)} failed")
        return 0
    out = Path(a.out)
    log_path = out / "sweep_log.jsonl"
    dev, dev_name = str(pick_device(a.device)), _device_name(a.device)
    if a.ray is not None:
        dev, dev_name = "ray", f"Ray cluster at {a.ray} ({a.cpus_per_run:g} CPU, {a.gpus_per_run:g} GPU per run)"
    failed = errors = 0
    bar = tqdm(total=len(runs), desc="sweep", unit="run", dynamic_ncols=True)
    bar.update(len(runs) - len(todo))
    for (state, d, targv), status, secs in _results(a, todo):
        rel = d.relative_to(out).as_posix()
        if isinstance(status, BaseException):
            errors += 1
            tqdm.write(f"{rel}: did not finish ({type(status).__name__}: {str(status).splitlines()[0][:120]})")
            bar.update(1)
            continue
        status = "resumed" if status == "done" and state == "interrupted" else status
        failed += status == "failed"
        row = {"run": rel, "status": status, "seconds": round(secs, 2), "device": dev,
               "device_name": dev_name, "cmd": cmd, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
        if status in ("done", "resumed"):
            row["test_acc"] = read_json(d / "final.json")["test_acc"]
        rows = [json.loads(l) for l in log_path.read_text().splitlines() if l.strip()] \
            if log_path.exists() else []
        atomic_write_jsonl(log_path, rows + [row])
        bar.update(1)
        acc = f"test acc {row['test_acc']:.4f}" if "test_acc" in row else "FAILED (non-finite)"
        tqdm.write(f"{rel}: {status}, {acc}, {secs:.0f}s")
    bar.close()
    if errors:
        sys.stderr.write(f"error: {errors} run(s) did not finish; rerun with --resume to continue them\n")
        return 1
    if failed:
        sys.stderr.write(f"error: {failed} run(s) went non-finite (failed.json in their folders)\n")
        return 3
    return 0


def _results(a, todo: list) -> Iterator[tuple[tuple, object, float]]:
    """(run, status or the exception that stopped it, seconds), in the order runs finish:
    one after another in this process, or as Ray tasks."""
    if a.ray is not None:
        from .ray_runner import connect, run_tasks, train_task
        ray = connect(a.ray)
        for run, res in run_tasks(ray, train_task, todo, lambda r: (r[2],), a.cpus_per_run, a.gpus_per_run):
            yield (run, res, 0.0) if isinstance(res, BaseException) else (run, *res)
        return
    for run in todo:
        t0 = time.time()
        try:
            train.main(run[2])
            status = "done"
        except NonFiniteError as e:
            atomic_write_json(run[1] / "failed.json", {"error": str(e), "argv": run[2]})
            status = "failed"
        yield run, status, time.time() - t0
