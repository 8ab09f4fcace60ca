"""``python -m fastreg.collect``: train source CNNs on plenty of data and bank their kernels,
or, with ``--from-checkpoint FILE``, bank the kernels of a pretrained network on disk.

Each seed trains in its own folder and checkpoints every epoch. A finished seed
(``result.json`` present) is never retrained; an interrupted one continues from its
checkpoint with ``--resume`` and is refused without it.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm

from .. import __version__
from ..bank import KernelBank
from .cli import Parser, int_list, nonneg_float, positive_float, positive_int
from ..chain import save_sources
from .classes import describe, parse_classes
from .data import DATASETS, Split, data_root, source_sets
from .device import amp_precision, pick_device
from ..distributed import Dist, barrier, close_process_group, from_env, wrap
from ..errors import UsageError
from ..io_util import atomic_torch_save, atomic_write_json, check_out_dir, read_json, safe_torch_load
from .loop import LoopConfig, Trainer
from ..layers import conv_layers, select_layers
from ..models import ARCHS, build_model
from ..viz import save_filter_grid

# recipe settings recorded only when they differ from these, so older recipes stay comparable
RECIPE_DEFAULTS = {"schedule": "cosine", "augment": True}
PRESETS = {
    # 5 seeds within an hour on a 2-core CPU (bf16 autocast, half width, 4 epochs)
    "cpu": dict(width=0.5, epochs=4, batch_size=128, lr=0.05, amp=True),   # amp: where bf16 is native
    # the default bank's recipe: converged half-width models, 82-83 % test accuracy;
    # (its models' training times are recorded in the bank; docs/banks/dwpnet_e24.json)
    "converged": dict(width=0.5, epochs=24, batch_size=128, lr=0.05, amp=True),
    # the full-width DWP classifier, for a GPU
    "full": dict(width=1.0, epochs=30, batch_size=256, lr=0.1, amp=True),
    # seconds; for tests and smoke runs
    "tiny": dict(width=0.125, epochs=1, batch_size=64, lr=0.05, amp=False),
}


DESCRIPTION = ("train source CNNs on plenty of data and bank their kernels, or (--from-checkpoint) bank the "
               "kernels of a pretrained network on disk")


def parse_args(argv: Sequence[str] | None):
    return build_parser().parse_args(argv)


def build_parser() -> Parser:
    p = Parser(prog="python -m fastreg.collect", description=DESCRIPTION)
    p.add_argument("--dataset", default="cifar10",
                   help="source data: cifar10 (its source split, disjoint from the target pool) or "
                        "cifar100 (the DWP protocol; needs torchvision files or network)")
    p.add_argument("--classes", default=None,
                   help="train the source models on these classes only (indices or CIFAR-10 names, e.g. "
                        "0,1,2,3,4): a bank for the class-disjoint protocol (default: all)")
    p.add_argument("--data-root", default=None, help="folder with the data (default: $FASTREG_DATA or ./data)")
    p.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated source-model seeds (default: 0-4)")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="recipe: cpu (half width, 4 epochs: under 1 h for 5 seeds on 2 cores), converged "
                        "(half width, 24 epochs: the default bank's recipe, about 2 h on 2 cores), full "
                        "(GPU), tiny (smoke). Default: full on CUDA, cpu otherwise")
    p.add_argument("--width", type=positive_float, default=None, help="channel multiplier (default: the preset's)")
    p.add_argument("--epochs", type=positive_int, default=None, help="epochs per seed (default: the preset's)")
    p.add_argument("--lr", type=positive_float, default=None, help="peak SGD learning rate (default: the preset's)")
    p.add_argument("--weight-decay", type=nonneg_float, default=None, help="SGD weight decay (default: 5e-4)")
    p.add_argument("--batch-size", type=positive_int, default=None, help="batch size (default: the preset's)")
    p.add_argument("--schedule", choices=("cosine", "constant"), default="cosine",
                   help="learning rate after the warm-up: cosine decay to 0 (default) or constant")
    p.add_argument("--no-augment", action="store_true",
                   help="train without the random crop + flip augmentation (for recipe studies)")
    p.add_argument("--arch", default="dwpnet", help=f"source model: {', '.join(ARCHS)}")
    p.add_argument("--layers", default="all",
                   help="conv layers to bank: names, globs, all (every conv of 3x3 or more), k3/k5/k7")
    p.add_argument("--from-checkpoint", default=None, metavar="FILE",
                   help="bank a pretrained network's conv kernels instead of training (a state_dict: "
                        ".safetensors, or .pt/.pth loaded weights-only; default: none, source models are trained)")
    p.add_argument("--from-npy", action="append", default=[], metavar="LAYER=FILE",
                   help="bank these .npy kernels ([N, 1, k, k] or [N, k, k], the Deep Weight Prior's layout) as bank "
                        "layer LAYER instead of training; repeatable, e.g. conv1=conv7x7_train.npy conv2=conv5x5_test.npy "
                        "(default: none)")
    p.add_argument("--max-kernels", type=positive_int, default=None,
                   help="at most this many kernels per bank layer, as whole filters evenly spaced (default: all)")
    p.add_argument("--prefix", default="",
                   help="put this before every bank layer name (e.g. resnet20.): no model's layer then "
                        "matches one by name, so each draws from all bank layers of its kernel size "
                        "(default: none)")
    p.add_argument("--out", default=None, help="output folder (default: runs/collect-DATASET)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda if available)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted seed from its checkpoint (without it, refused); "
                        "finished seeds are always loaded, never retrained")
    p.add_argument("--ray", nargs="?", const="auto", default=None, metavar="ADDRESS",
                   help="train each seed as a task on a Ray cluster (auto, or HOST:PORT); --out must "
                        "be on a filesystem every node sees (default: off, seeds train here one after another)")
    p.add_argument("--cpus-per-run", type=positive_float, default=1.0, help="--ray: CPUs per seed")
    p.add_argument("--gpus-per-run", type=nonneg_float, default=0.0, help="--ray: GPUs per seed (may be fractional)")
    p.add_argument("--limit-train", type=positive_int, default=None, help=argparse.SUPPRESS)  # smoke runs
    return p


def train_seed(seed: int, recipe: dict, sets, num_classes: int, device,
               folder: Path, dist: Dist = Dist()) -> tuple[torch.nn.Module, dict]:
    """Train (or resume, or load) one source model; returns it and its result record.
    Under torchrun every rank trains its shard of each batch (DDP) and rank 0 writes."""
    if dist.is_main:
        folder.mkdir(parents=True, exist_ok=True)
    barrier(dist)
    torch.manual_seed(seed)
    model = build_model(recipe["arch"], num_classes, recipe["width"]).to(device)
    if (folder / "result.json").exists() and (folder / "model.pt").exists():
        model.load_state_dict(safe_torch_load(folder / "model.pt", device))
        return model, read_json(folder / "result.json")
    train, test = sets
    cfg = LoopConfig(epochs=recipe["epochs"], batch_size=recipe["batch_size"], lr=recipe["lr"],
                     optimizer="sgd", weight_decay=recipe["weight_decay"], amp=recipe["precision"] == "bf16",
                     eval_every=recipe["epochs"],
                     ckpt_every=1, eval_size=len(test), seed=seed, label_smoothing=0.1,
                     schedule=recipe.get("schedule", RECIPE_DEFAULTS["schedule"]),
                     augment=recipe.get("augment", RECIPE_DEFAULTS["augment"]))
    net = wrap(model, dist, device)
    tr = Trainer(net, train, test, cfg, device, folder, desc=f"seed {seed}", dist=dist)
    if (folder / "checkpoint.pt").exists():
        tr.load_state(safe_torch_load(folder / "checkpoint.pt", device))
    last = tr.run()
    res = {"seed": seed, "test_acc": last["test_acc"], "test_loss": last["test_loss"],
           "epochs": recipe["epochs"], "width": recipe["width"], "precision": recipe["precision"],
           "train_time_s": round(tr.wall_time(), 1)}   # across resumes
    if dist.is_main:
        atomic_torch_save(folder / "model.pt", model.state_dict())
        atomic_write_json(folder / "result.json", res)
        (folder / "checkpoint.pt").unlink(missing_ok=True)
    barrier(dist)
    return model, res


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    finally:
        close_process_group()


def _main(argv: Sequence[str] | None) -> int:
    a = parse_args(argv)
    if a.dataset not in DATASETS:
        raise UsageError(f"unknown dataset {a.dataset!r}; choose one of {', '.join(DATASETS)}")
    if a.from_checkpoint:
        return from_checkpoint(a)
    if a.from_npy:
        return from_npy(a)
    seeds, dist, device, recipe, layers, out, plan = _plan(a)
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "recipe.json", plan)
    if a.ray is not None:      # every seed a Ray task; the loop below then loads the finished ones
        if not _seeds_on_ray(a, argv, seeds):
            return 1
    train, test, num_classes = source_sets(a.dataset, data_root(a.data_root), device, recipe.get("classes"))
    if a.limit_train:
        sel = torch.linspace(0, train.x.shape[0] - 1, min(a.limit_train, train.x.shape[0])).long()
        train = Split(train.x[sel.to(device)], train.y[sel.to(device)], train.index[sel.numpy()])
    models, results = [], []
    for seed in tqdm(seeds, desc="source models", unit="seed", **({} if dist.is_main else {"disable": True})):
        m, r = train_seed(seed, recipe, (train, test), num_classes, device, out / f"seed{seed}", dist)
        if dist.is_main:
            tqdm.write(f"seed {seed}: test accuracy {r['test_acc']:.4f}")
        models.append(m)
        results.append(r)
    meta = {"dataset": a.dataset, "source_split": ("cifar10 train minus the target pool"
            if a.dataset == "cifar10" else "cifar100 train") + (f", {describe(recipe['classes'], a.dataset)}"
                                                                 if "classes" in recipe else ""),
            "architecture": (f"DWPNet(width={recipe['width']})" if a.arch == "dwpnet" else
                             f"{a.arch}(width={recipe['width']})"), "seeds": json.dumps(seeds),
            "source_test_acc": json.dumps({r["seed"]: r["test_acc"] for r in results}),
            "source_train_time_s": json.dumps({r["seed"]: r.get("train_time_s") for r in results}),
            "recipe": json.dumps(recipe), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "version": __version__, **({"classes": json.dumps(recipe["classes"])} if "classes" in recipe else {})}
    if not dist.is_main:
        return 0
    bank = KernelBank.collect(models, layers, meta).subsample(a.max_kernels).prefixed(a.prefix)
    _write_bank(bank, out)
    # the whole source networks too, for chain init and fine-tuning (fastreg.chain, DESIGN.md §12)
    save_sources({f"seed{s}": m.state_dict() for s, m in zip(seeds, models)}, out / "sources.safetensors",
                 {k: v for k, v in meta.items() if k != "filter_rows"})
    first = next(iter(conv_layers(models[0]).values()))
    save_filter_grid(first.weight, out / "source_seed0_conv1_rgb.png", "source model's first conv (RGB)")
    print("source test accuracy: " + ", ".join(f"seed {r['seed']}: {r['test_acc']:.4f}" for r in results))
    return 0


def _plan(a):
    """Seeds, data-parallel setup, device, recipe, layers and folder of a collection; refuses
    (one line, nothing written) a folder holding other settings or an interrupted seed."""
    seeds = int_list(a.seeds, "--seeds", 0)
    dist, a.device = from_env(a.device)          # torchrun: each seed trains data-parallel
    device = pick_device(a.device)
    recipe = dict(PRESETS[a.preset or ("full" if device.type == "cuda" else "cpu")], arch=a.arch,
                  weight_decay=5e-4)
    knobs = {"schedule": a.schedule, "augment": not a.no_augment}
    if knobs != RECIPE_DEFAULTS:
        recipe.update(knobs)
    recipe.update({k: v for k, v in (("width", a.width), ("epochs", a.epochs), ("lr", a.lr),
                                     ("weight_decay", a.weight_decay), ("batch_size", a.batch_size))
                   if v is not None})
    if a.arch != "dwpnet" and a.width is None:
        recipe["width"] = 1.0
    classes = parse_classes(a.classes, a.dataset, DATASETS[a.dataset])
    if classes is not None:          # recorded only when set, so earlier recipes stay comparable
        recipe["classes"] = classes
    if recipe["batch_size"] % dist.world:
        raise UsageError(f"batch size {recipe['batch_size']} (the global batch) does not split over "
                         f"{dist.world} ranks")
    layers = select_layers(build_model(a.arch, len(classes or range(DATASETS[a.dataset])), recipe["width"]),
                           a.layers)
    recipe["precision"] = amp_precision(device, recipe["amp"])
    out = Path(a.out or f"runs/collect-{a.dataset}")
    check_out_dir(out)
    plan = {"dataset": a.dataset, **recipe, "limit_train": a.limit_train}
    if (out / "recipe.json").exists():
        old = read_json(out / "recipe.json")
        old.setdefault("precision", "bf16" if old.get("amp") else "fp32")  # written before these were
        old.setdefault("arch", "dwpnet")                                    # recorded
        old.setdefault("weight_decay", 5e-4)
        old, new = {**RECIPE_DEFAULTS, **old}, {**RECIPE_DEFAULTS, **plan}
        diff = sorted(k for k in new if old.get(k) != new[k])
        if diff:
            raise UsageError(f"{out} holds source models trained with other settings ({', '.join(diff)}); "
                             f"choose another --out")
    stopped = [s for s in seeds if (out / f"seed{s}" / "checkpoint.pt").exists()
               and not (out / f"seed{s}" / "result.json").exists()]
    if stopped and not a.resume:
        raise UsageError(f"seed {stopped[0]} in {out} was interrupted; pass --resume to continue it")
    return seeds, dist, device, recipe, layers, out, plan


def seed_task(argv: list[str], seed: int) -> float:
    """One source model of a collection, in a Ray worker (``collect --ray``): its test accuracy."""
    a = parse_args([*argv, "--seeds", str(seed), "--resume"])
    _, dist, device, recipe, _, out, _ = _plan(a)
    train, test, num_classes = source_sets(a.dataset, data_root(a.data_root), device, recipe.get("classes"))
    return train_seed(seed, recipe, (train, test), num_classes, device, out / f"seed{seed}", dist)[1]["test_acc"]


def _without(argv: list[str], opt: str, optional: bool = False) -> list[str]:
    """``argv`` without option ``opt`` and its value (``optional``: a value only if one follows)."""
    out, skip = [], False
    for i, t in enumerate(argv):
        if skip:
            skip = False
        elif t == opt:
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            skip = nxt is not None and not (optional and nxt.startswith("-"))
        elif not t.startswith(opt + "="):
            out.append(t)
    return out


def _seeds_on_ray(a, argv: Sequence[str] | None, seeds: list[int]) -> bool:
    """Train the unfinished seeds as Ray tasks; False (after one line each) if any did not finish."""
    from .ray_runner import connect, run_tasks
    ray = connect(a.ray)
    own = _without(_without(list(sys.argv[1:] if argv is None else argv), "--ray", optional=True), "--seeds")
    out = Path(a.out or f"runs/collect-{a.dataset}")
    todo = [s for s in seeds if not (out / f"seed{s}" / "result.json").exists()]
    ok = True
    for seed, res in run_tasks(ray, seed_task, todo, lambda s: (own, s), a.cpus_per_run, a.gpus_per_run):
        if isinstance(res, BaseException):
            ok = False
            sys.stderr.write(f"error: seed {seed} did not finish ({type(res).__name__}); rerun with --resume\n")
        else:
            tqdm.write(f"seed {seed}: test accuracy {res:.4f} (Ray task)")
    return ok


def _write_bank(bank: KernelBank, out: Path) -> None:
    """bank.safetensors and a picture of each layer (the first 8 layers)."""
    bank.save(out / "bank.safetensors")
    for n in list(bank.layers)[:8]:
        save_filter_grid(bank.layers[n], out / f"bank_{n}.png", f"bank {n}: {len(bank.layers[n])} kernels")
    print(f"bank written to {out / 'bank.safetensors'}: " +
          ", ".join(f"{n} {tuple(t.shape)}" for n, t in bank.layers.items()))


def from_npy(a) -> int:
    """``--from-npy LAYER=FILE …``: one bank of ``.npy`` kernel files, a layer each, with each
    file's name and SHA-256 recorded (the Deep Weight Prior's notMNIST kernels for fconv)."""
    import hashlib
    import json
    layers, files = {}, {}
    for item in a.from_npy:
        name, eq, path = item.partition("=")
        if not eq or not name or not path or name in layers:
            raise UsageError(f"--from-npy wants LAYER=FILE with each layer once, got {item!r}")
        layers[name] = KernelBank.from_npy(path, name).layers[name]
        files[name] = {"file": Path(path).name, "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest()}
    out = Path(a.out or "runs/bank-npy")
    check_out_dir(out)
    bank = KernelBank(layers, {"source": "imported .npy kernels", "files": json.dumps(files, sort_keys=True),
                               "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "fastreg_version": __version__})
    bank = bank.subsample(a.max_kernels).prefixed(a.prefix)
    out.mkdir(parents=True, exist_ok=True)
    _write_bank(bank, out)
    return 0


def from_checkpoint(a) -> int:
    """``--from-checkpoint FILE``: the bank of a pretrained network's conv layers."""
    from ..checkpoint_bank import bank_from_checkpoint
    path = Path(a.from_checkpoint)
    out = Path(a.out or f"runs/bank-{path.stem}")
    check_out_dir(out)
    bank = bank_from_checkpoint(path, a.layers, a.max_kernels).prefixed(a.prefix)   # checks before writes
    out.mkdir(parents=True, exist_ok=True)
    _write_bank(bank, out)
    return 0

