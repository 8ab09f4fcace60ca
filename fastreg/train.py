"""``python -m fastreg.train``: a small-data CIFAR-10 classifier with a filter prior.

λ · G-loss from a kernel discriminator (trained against a bank of good filters) is added
to the cross-entropy (DESIGN.md §2); ``--lambda 0`` is the baseline. Other priors from the
same bank: ``--init bank|cov`` (DESIGN.md §8) and ``--prior gauss``; they combine.
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import time
from pathlib import Path
from typing import Sequence

import torch
from safetensors.torch import save as safetensors_save

from . import __version__, imagefolder
from .bank import PACKAGED, KernelBank, bank_file, bank_id, bank_label, load_bank
from .cli import Parser, fraction, nonneg_float, nonneg_int, positive_float, positive_int, run_main
from .classes import parse_classes
from .data import DATASETS, data_root, target_sets
from .device import amp_precision, pick_device
from .distributed import close_process_group, exit_process, from_env
from .errors import BankError, UsageError
from .init import INITS, UNITS, init_from_bank
from .io_util import atomic_write_bytes, atomic_write_json, check_out_dir, read_json, safe_torch_load
from .loop import LoopConfig, Trainer
from .layers import conv_layers, select_layers
from .models import ARCHS, build_model
from .ops import BACKENDS
from .layers import LAYER_WEIGHTS
from .chain import L2SP, PACKAGED_SOURCES, chain_init, finetune_init, load_sources, sources_file
from .prior import GaussianPrior, Terms
from .regularizer import SHARES, AdversarialRegularizer, resolve_fake_max
from .run_summary import report_lines, summarize
from .runs import FINAL_KERNELS, START_KERNELS, method_of, weighs_layers

DESCRIPTION = ("a small-data image classifier (CIFAR-10 or your own images) whose conv filters start "
               "from a bank of good filters and are pulled toward them by a discriminator")
MAIN_D_UNIT = "slice"   # the seed's adversarial term: D judges 2-D kernels (README: the main job)


def build_parser() -> Parser:
    p = Parser(prog="python -m fastreg.train", description=DESCRIPTION)
    p.add_argument("--dataset", choices=("cifar10", "imagefolder"), default="cifar10",
                   help="cifar10 (the project's target pool), or imagefolder: your own images, --data-root "
                        "DIR with train/ and val/ (or test/) class folders")
    p.add_argument("--classes", default=None,
                   help="CIFAR-10 classes to classify (indices or names, e.g. 5,6,7,8,9 for the class-disjoint "
                        "protocol against a bank of classes 0-4), relabelled 0..K-1 (default: all ten)")
    p.add_argument("--image-size", type=positive_int, default=32,
                   help="imagefolder: images are resized to this square size")
    p.add_argument("--train-size", type=positive_int, default=None,
                   help="training images, the same number per class (default: 100 for CIFAR-10; for an "
                        "imagefolder, 100 / classes per class, fewer if its smallest class has fewer)")
    p.add_argument("--lambda", dest="lam", type=nonneg_float, default=1.0,
                   help="weight of the adversarial filter loss (0 = none), shared by the regularized layers "
                        "(see --layer-weights)")
    p.add_argument("--bank", default="auto",
                   help="bank file (.safetensors or DWP .npy), or a packaged bank by name: dwpnet_e24 "
                        "(converged DWPNets), dwpnet_e4 (the first, 4-epoch bank), resnet20; 'none' = no "
                        "discriminator at all; auto: dwpnet_e24 for dwpnet, dwpnet_e24 + resnet20 for other archs")
    p.add_argument("--arch", default="dwpnet", help=f"classifier: {', '.join(ARCHS)}")
    p.add_argument("--reg-layers", default="conv1",
                   help="conv layers to regularize / bank-initialize: full module names, globs "
                        "(layer*.*.conv1), all (every conv of 3x3 or more), k3/k5/k7; comma-separated")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="default: max(30, 30000 / train-size), i.e. >= 300 steps")
    p.add_argument("--batch-size", type=positive_int, default=100, help="images per step")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="AdamW peak learning rate (cosine decay)")
    p.add_argument("--weight-decay", type=nonneg_float, default=5e-4, help="AdamW weight decay")
    p.add_argument("--width", type=positive_float, default=1.0, help="channel multiplier of the classifier")
    p.add_argument("--seed", type=nonneg_int, default=0, help="model init, augmentation and D seed")
    p.add_argument("--data-seed", type=nonneg_int, default=None, help="which reduced set (default: --seed)")
    p.add_argument("--amp", action="store_true",
                   help="bf16 autocast for the classifier where the device has native bf16 "
                        "(CUDA; CPUs with AVX512-BF16 or AMX); fp32 elsewhere, said on stderr")
    p.add_argument("--deterministic", action="store_true",
                   help="CUDA: deterministic algorithms only (slower; CPU runs are deterministic anyway)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when there is one)")
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="discriminator-step backend (auto: triton on CUDA, eager on CPU)")
    p.add_argument("--d-hidden", default="128,128", help="discriminator hidden widths")
    p.add_argument("--d-norm", choices=("batch", "kernel"), default="batch",
                   help="discriminator input normalization: over the batch (learned scale) or per kernel")
    p.add_argument("--d-loss", choices=("ns", "hinge"), default="ns",
                   help="GAN loss: non-saturating (BCE with logits) or hinge")
    p.add_argument("--d-lr", type=positive_float, default=2e-4, help="discriminator Adam learning rate")
    p.add_argument("--lecam", type=nonneg_float, default=0.0, help="LeCam weight for D (0 = off)")
    p.add_argument("--lambda-schedule", choices=("constant", "linear"), default="constant",
                   help="linear: λ falls to 0 by the last step")
    p.add_argument("--d-unit", choices=("slice", "filter"), default=MAIN_D_UNIT,
                   help="what D judges: 2-D k×k slices, or whole C_in×k×k filters")
    p.add_argument("--d-share", choices=SHARES, default="layer",
                   help="one D per regularized layer, or one per kernel size (many layers)")
    p.add_argument("--layer-weights", choices=LAYER_WEIGHTS, default="mean",
                   help="how --lambda and --prior-weight spread over several regularized layers: mean (each "
                        "of L layers gets 1/L, so the weight means the same for 1 layer or 50) or sum (each "
                        "layer the full weight, as fastreg before 0.2 did)")
    p.add_argument("--fake-max", type=_fake_max, default="auto",
                   help="kernels (rows) of a layer D sees per step, drawn at random; auto: all while "
                        "the layers hold at most 16384 in all, else an equal share of 16384")
    p.add_argument("--bank-map", default=None,
                   help="LAYER=BANKLAYER[+BANKLAYER],...: which bank layers serve which layer "
                        "(default: the same name, else every bank layer of its kernel size)")
    p.add_argument("--init", choices=INITS, default=None,
                   help="how the regularized layers start: bank (bank filters, the prior that helps most on a "
                        "first layer; the default), cov (draws from a Gaussian fitted to the bank), chain (the "
                        "layers of one source network, channels kept coherent: see --sources), finetune (every "
                        "layer of a source network but the head) or default (the model's own random init; the "
                        "default with --bank none)")
    p.add_argument("--init-unit", choices=UNITS, default="filter",
                   help="draw whole filters (their channels kept together) or independent 2-D "
                        "slices; whole filters need the bank's filters to have the layer's inputs")
    p.add_argument("--sources", default=None,
                   help="source networks for --init chain / finetune: a collect folder (its seed*/model.pt), a "
                        "sources file, or a packaged name; run seed s starts from source s mod their number")
    p.add_argument("--chain-norms", action="store_true",
                   help="--init chain: copy the norm layer after each chain conv too (weights and statistics)")
    p.add_argument("--prior", choices=("none", "gauss", "l2sp"), default="none",
                   help="gauss: penalty = --prior-weight x the Gaussian NLL per weight of the regularized layers' "
                        "kernels (SK-reg); l2sp: --prior-weight/2 x the squared distance of the copied layers' "
                        "parameters to their start (L2-SP; with --init chain or finetune)")
    p.add_argument("--prior-weight", type=nonneg_float, default=1.0, help="weight of --prior")
    p.add_argument("--prior-unit", choices=UNITS, default="filter",
                   help="Gaussian over whole filters or over 2-D slices (--prior gauss)")
    p.add_argument("--shrink", type=fraction, default=0.1,
                   help="covariance shrinkage toward a multiple of I for --init cov and --prior gauss")
    p.add_argument("--data-root", default=None, help="data folder (default: $FASTREG_DATA or ./data)")
    p.add_argument("--eval-every", type=positive_int, default=None,
                   help="epochs between evaluations (default: a sixth of the run)")
    p.add_argument("--eval-size", type=positive_int, default=2000, help="test images per periodic evaluation")
    p.add_argument("--out", default=None, help="run directory (default: runs/train/n{size}-lam{λ}-s{seed})")
    p.add_argument("--resume", nargs="?", const="", default=None, metavar="PATH",
                   help="continue from the run directory's checkpoint (or from PATH); a finished run "
                        "prints its result")
    p.add_argument("--keep-checkpoint", action="store_true",
                   help="keep checkpoint.pt (weights and optimizer state) when the run finishes; by default "
                        "a finished run keeps its final kernels, metrics and pictures only")
    return p


def _hidden(s: str) -> tuple[int, ...]:
    try:
        h = tuple(int(v) for v in s.split(","))
    except ValueError:
        raise UsageError(f"--d-hidden must be comma-separated integers, got {s!r}") from None
    if not h or any(v < 1 for v in h):
        raise UsageError(f"--d-hidden widths must be positive, got {s!r}")
    return h


def _fake_max(s: str) -> str | int:
    if s == "auto":
        return s
    v = positive_int(s)
    if v < 2:
        raise argparse.ArgumentTypeError("expected auto or an integer >= 2 (D's batch norm needs two kernels)")
    return v


def _fake_max_used(reg) -> int | None:
    """The adversarial term's kernels per layer and step, as ``--fake-max`` resolved (None: all)."""
    adv = reg.terms.get("adv") if isinstance(reg, Terms) else reg
    return adv.fake_max if adv is not None else None


def _bank_map(s: str | None) -> dict[str, list[str]] | None:
    """``--bank-map conv1=layer1.0.conv1+layer1.0.conv2,conv2=k5``."""
    if not s:
        return None
    out: dict[str, list[str]] = {}
    for item in s.split(","):
        layer, eq, src = item.partition("=")
        if not eq or not layer.strip() or not src.strip() or layer.strip() in out:
            raise UsageError(f"--bank-map wants LAYER=BANKLAYER[+BANKLAYER],... with each layer once, got {s!r}")
        out[layer.strip()] = [t.strip() for t in src.split("+")]
    return out


def config_of(a) -> dict:
    """The run's settings as they go into config.json (and are checked on resume)."""
    return {k: v for k, v in vars(a).items() if k not in ("resume", "out", "device", "keep_checkpoint")}


def settings_diff(old: dict, new: dict, ignore: tuple[str, ...] = (), skip_unset: bool = False
                  ) -> list[str]:
    """Settings in which two runs differ (``skip_unset``: not those ``new`` leaves None). A bank
    counts as the same when its file holds the same bytes at another path; ``fake_max`` is
    compared as resolved (see ``fake_max_of``)."""
    old = {**UPGRADE, **old}
    diff = [k for k in old if k in new and k not in ignore and k != "fake_max" and old[k] != new[k]
            and not (skip_unset and new[k] is None)]
    if "layer_weights" in diff and not (weighs_layers(old) and weighs_layers(new)):
        diff.remove("layer_weights")
    if "bank" in diff and _same_file(bank_file(old["bank"]), bank_file(new["bank"])):
        diff.remove("bank")
    if "fake_max" in old and "fake_max" not in ignore and fake_max_of(old) != fake_max_of(new):
        diff.append("fake_max")
    return sorted(diff)


# settings a config.json written before they existed had, as those runs behaved
UPGRADE = {"layer_weights": "sum", "classes": None}


def _same_file(a: str | Path, b: str | Path) -> bool:
    pa, pb = Path(a), Path(b)
    return pa.is_file() and pb.is_file() and pa.stat().st_size == pb.stat().st_size \
        and pa.read_bytes() == pb.read_bytes()


def fake_max_of(cfg: dict) -> int | None:
    """Kernels per layer and step the adversarial term saw (None: all): recorded by newer runs;
    ``None`` in runs from before ``--fake-max auto`` meant all; ``auto`` resolved on the model.
    Without the adversarial term (λ = 0) nothing is drawn: None."""
    if not cfg.get("lam"):
        return None
    if "fake_max_used" in cfg:
        return cfg["fake_max_used"]
    if cfg.get("fake_max") != "auto":
        return cfg.get("fake_max")
    model = build_model(cfg.get("arch", "dwpnet"), 10, cfg.get("width") or 1.0)
    return resolve_fake_max(model, select_layers(model, cfg["reg_layers"]), cfg.get("d_unit", "slice"),
                            "auto")


def _settings_of(ckpt: dict, out: Path, ckpt_path: Path) -> dict:
    """The settings a checkpoint was trained with: saved in it, else (older checkpoints) the
    run folder's config.json; a resume that cannot be checked is refused."""
    if isinstance(ckpt.get("run_config"), dict):
        return ckpt["run_config"]
    for p in (out / "config.json", ckpt_path.parent / "config.json"):
        if p.exists():
            return read_json(p)
    raise UsageError(f"{ckpt_path}: the checkpoint carries no settings and no config.json is beside it; "
                     f"cannot check that --resume continues the same run")


def _check_same_bank(out: Path, ckpt_path: Path, bank: KernelBank | None) -> None:
    """A resumed run must draw from the bank it started with: ``--bank auto`` or a packaged
    name can point at another bank after an upgrade (the default bank changed once)."""
    for p in (out / "config.json", ckpt_path.parent / "config.json"):
        if p.exists():
            cfg = read_json(p)
            if "bank_meta" in cfg and bank_id(cfg["bank_meta"]) != bank_id(bank.meta if bank else None):
                was = bank_label(cfg["bank_meta"]) if cfg["bank_meta"] else "none"
                now = bank_label(bank.meta) if bank else "none"
                raise UsageError(f"--resume: the run started with bank {was}, this call gives {now}; "
                                 f"pass the run's bank with --bank (packaged: {', '.join(PACKAGED)})")
            return


def set_deterministic() -> None:
    """Deterministic kernels on CUDA: no cuDNN autotuning, deterministic cuBLAS workspace;
    costs speed (cuDNN picks slower, deterministic convolution algorithms)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=False)


def prepare(a):
    """Validate everything and build the pieces, before anything is written."""
    hidden = _hidden(a.d_hidden)
    bank_map = _bank_map(a.bank_map)
    device = pick_device(a.device)
    if a.backend == "triton" and device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise UsageError("--backend triton needs a CUDA device (or TRITON_INTERPRET=1 on the CPU, slow)")
    bank = None
    if a.bank.lower() != "none":
        bank = load_bank(a.bank, a.arch)
    elif a.init in ("bank", "cov") or a.prior == "gauss":
        raise UsageError(f"--{'init ' + a.init if a.init in ('bank', 'cov') else 'prior ' + a.prior} needs a bank")
    sources = None
    if a.init in ("chain", "finetune"):
        if not a.sources:
            raise UsageError(f"--init {a.init} needs --sources: source networks of the same architecture (a "
                             f"collect folder, a sources file, or a packaged name: {', '.join(PACKAGED_SOURCES)})")
        sources, about = load_sources(sources_file(a.sources))
        if a.init == "finetune" and about.get("partial"):
            raise UsageError("--init finetune needs whole source networks (a collect folder or a sources file), "
                             "not a bank")
    elif a.prior == "l2sp":
        raise UsageError("--prior l2sp pulls toward a network's start: it needs --init chain or finetune")
    if a.arch == "dwpnet" and a.image_size != 32:
        raise UsageError("--arch dwpnet takes 32x32 images: use --image-size 32 or another --arch")
    train, test, num_classes = target_sets(data_root(a.data_root), a.train_size, a.data_seed, device,
                                           a.dataset, a.image_size, a.classes)
    torch.manual_seed(a.seed)
    model = build_model(a.arch, num_classes, a.width).to(device)
    layers = select_layers(model, a.reg_layers)
    adv, terms = None, {}
    if bank is not None:
        steps = a.epochs * math.ceil(a.train_size / a.batch_size)
        try:
            adv = AdversarialRegularizer(model, bank, layers, a.lam, hidden, a.d_norm, a.d_loss,
                                         lr=a.d_lr, backend=a.backend, lecam=a.lecam, seed=a.seed,
                                         unit=a.d_unit, share=a.d_share, fake_max=a.fake_max,
                                         bank_map=bank_map, layer_weights=a.layer_weights,
                                         lam_decay_steps=steps if a.lambda_schedule == "linear" else None)
        except BankError as e:
            raise UsageError(str(e)) from None
        torch.manual_seed(a.seed + 1)   # D init must not shift the classifier's RNG stream
        adv.to(device)
        if a.init in ("bank", "cov"):
            init_from_bank(model, bank.to(device), layers, a.init, a.init_unit, a.seed, a.shrink, bank_map)
        if a.prior == "gauss":
            terms["prior"] = GaussianPrior(model, bank, layers, a.prior_weight, a.prior_unit, a.shrink, bank_map,
                                           a.layer_weights)
    if a.init == "chain":
        got = chain_init(model, sources, layers, a.seed, a.chain_norms, partial=bool(about.get("partial")))
        copied = got["convs"] + got["norms"]
    elif a.init == "finetune":
        copied = finetune_init(model, sources, a.seed)["modules"]
    if a.prior == "l2sp":
        terms["prior"] = L2SP(model, copied, a.prior_weight).to(device)
    reg = Terms({"adv": adv, **terms} if adv is not None else terms) if terms else adv
    return device, bank, train, test, model, reg, layers


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    finally:
        close_process_group()


def resolve_defaults(a) -> None:
    """Settings whose default depends on others, resolved before they are recorded."""
    if a.init is None:
        a.init = "default" if a.bank.lower() == "none" else "bank"
    if isinstance(a.classes, str):
        a.classes = parse_classes(a.classes, "cifar10", DATASETS["cifar10"])
    if a.train_size is None:
        a.train_size = 100 if a.dataset == "cifar10" else imagefolder.default_train_size(data_root(a.data_root))
    if a.data_seed is None:
        a.data_seed = a.seed
    if a.epochs is None:
        a.epochs = max(30, round(30000 / a.train_size))
    if a.eval_every is None:
        a.eval_every = max(1, a.epochs // 6)


def _main(argv: Sequence[str] | None) -> int:
    a = build_parser().parse_args(argv)
    dist, a.device = from_env(a.device)          # torchrun: one rank of N, its device
    if a.batch_size % dist.world:
        raise UsageError(f"--batch-size {a.batch_size} (the global batch) does not split over {dist.world} ranks")
    resolve_defaults(a)
    out = Path(a.out or f"runs/train/n{a.train_size}-lam{a.lam:g}-s{a.seed}")
    check_out_dir(out)
    if (out / "final.json").exists():
        if a.resume is None:
            raise UsageError(f"{out} already holds a finished run; choose another --out (or --resume "
                             f"to see its result)")
        if not a.resume:
            return _finished(a, out)
    if a.resume is None and (out / "checkpoint.pt").exists():
        raise UsageError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    if a.resume is not None and not a.resume and not (out / "checkpoint.pt").exists():
        raise UsageError(f"--resume: no checkpoint in {out}")
    settings = config_of(a)
    ckpt_path = Path(a.resume or out / "checkpoint.pt")
    ckpt = safe_torch_load(ckpt_path) if a.resume is not None else None
    if ckpt is not None:
        old = _settings_of(ckpt, out, ckpt_path)
        diff = settings_diff(old, settings)
        if diff:
            raise UsageError(f"--resume with different settings than the checkpoint: {', '.join(diff)}")

    if a.deterministic:
        set_deterministic()
    device, bank, train, test, model, reg, layers = prepare(a)
    if ckpt is not None:
        _check_same_bank(out, ckpt_path, bank)
    net = model
    if dist.active:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
        adv = reg.terms.get("adv") if isinstance(reg, Terms) else reg
        if adv is not None:
            adv.distribute(dist)
    precision = amp_precision(device, a.amp)
    cfg = LoopConfig(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, weight_decay=a.weight_decay,
                     amp=precision == "bf16", eval_every=a.eval_every, eval_size=a.eval_size, seed=a.seed)
    fresh = not out.exists()
    try:
        if dist.is_main:
            out.mkdir(parents=True, exist_ok=True)
        trainer = Trainer(net, train, test, cfg, device, out, reg, desc=f"train n={a.train_size} λ={a.lam:g}",
                          run_config=settings, dist=dist)
        if ckpt is not None:
            try:
                trainer.load_state(ckpt)
            except (KeyError, ValueError, RuntimeError) as e:
                raise UsageError(f"checkpoint does not match this run ({str(e).splitlines()[0][:160]})") from None
        if dist.is_main and (ckpt is None or not (out / "config.json").exists()):   # fresh, or into a new --out
            atomic_write_json(out / "config.json", {**settings, "device": str(device),
                                                    "precision": precision, "version": __version__,
                                                    "fake_max_used": _fake_max_used(reg),
                                                    "bank_meta": bank.meta if bank else None})
        if ckpt is None and dist.is_main:    # the filters as training starts (after any bank init)
            atomic_write_bytes(out / START_KERNELS, safetensors_save(_kernels(model, layers),
                                                                     metadata={"format": "fastreg-kernels/1"}))
    except BaseException:
        if fresh and dist.is_main:   # this call made the folder: leave nothing half-written
            shutil.rmtree(out, ignore_errors=True)
        raise
    t0 = time.time()
    last = trainer.run()
    if not dist.is_main:
        return 0
    kept = _kernels(model, layers)
    start = _read_kernels(out / START_KERNELS)
    judged = summarize(out, {n: start[n] for n in layers if n in start}, kept, bank, a.seed,
                       f"{method_of(settings)}, n={a.train_size}, seed {a.seed}", bank_map=_bank_map(a.bank_map))
    final = {"test_acc": last["test_acc"], "test_loss": last["test_loss"], "train_acc": last["train_acc"],
             "train_ce": last["train_ce"], "train_size": a.train_size, "lambda": a.lam, "seed": a.seed,
             "data_seed": a.data_seed, "init": a.init, "reg_layers": layers, "steps": trainer.step,
             "epochs": a.epochs, "device": str(device),
             **{k: last[k] for k in ("g_loss", "d_loss", "d_acc_real", "d_acc_fake") if k in last},
             "judge_auc": {n: v for n, v in judged.items() if v["judge_auc_end"] is not None}}
    # Small copy of the kernels the report measures (conv1 + the regularized layers), so
    # finished runs can be shipped and reported without their checkpoints; before
    # final.json, which marks the run finished.
    atomic_write_bytes(out / FINAL_KERNELS, safetensors_save(kept, metadata={"format": "fastreg-kernels/1"}))
    atomic_write_json(out / "timing.json", {"wall_time_s": round(trainer.wall_time(), 2),
                                            "device": str(device)})
    atomic_write_json(out / "final.json", final)
    (out / "failed.json").unlink(missing_ok=True)   # left by an earlier attempt the sweep gave up on
    if not a.keep_checkpoint:    # weights + optimizer state: 70 MB for the default job, not needed now
        (out / "checkpoint.pt").unlink(missing_ok=True)
    print(f"test accuracy {final['test_acc']:.4f} (n={a.train_size}, λ={a.lam:g}, seed {a.seed}) "
          f"in {time.time() - t0:.0f}s → {out}")
    for line in report_lines(judged, out):
        print(line)
    return 0


def _finished(a, out: Path) -> int:
    """``--resume`` of a finished run: the same checks as any resume (settings, bank), then its
    result; nothing is trained or written."""
    old = read_json(out / "config.json") if (out / "config.json").exists() else {}
    diff = settings_diff(old, config_of(a))
    if diff:
        raise UsageError(f"--resume with different settings than the finished run in {out}: {', '.join(diff)}")
    _check_same_bank(out, out / "checkpoint.pt", load_bank(a.bank, a.arch) if a.bank.lower() != "none" else None)
    final = read_json(out / "final.json")
    print(f"{out} is finished: test accuracy {final['test_acc']:.4f} (n={final['train_size']}, "
          f"λ={final['lambda']:g}, seed {final['seed']})")
    return 0


def _kernels(model: torch.nn.Module, layers: Sequence[str]) -> dict[str, torch.Tensor]:
    """conv1's and the regularized layers' weights, float32 on the CPU (what the report reads)."""
    convs = conv_layers(model)
    return {n: convs[n].weight.detach().float().cpu().contiguous()
            for n in dict.fromkeys(["conv1", *layers]) if n in convs}


def _read_kernels(path: Path) -> dict[str, torch.Tensor]:
    """A run's saved kernels (``{}`` when the file is missing: a run started before they were kept)."""
    from safetensors.torch import load_file
    return load_file(str(path)) if path.exists() else {}


if __name__ == "__main__":
    exit_process(run_main(main))
