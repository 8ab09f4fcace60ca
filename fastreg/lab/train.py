"""``python -m fastreg.train``: one small-data classifier run with its filter priors.

By default conv1 starts from whole bank filters and λ · G-loss from a kernel discriminator
(trained against the bank) is added to the cross-entropy (DESIGN.md §2, §8); priors for a
whole network come from source networks (``--init chain|finetune``, §12). The settings, their
defaults and their record live in ``fastreg.lab.settings``; the run folder is DESIGN.md §11.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
import shutil
import time
from pathlib import Path
from typing import Sequence

import torch
from safetensors.torch import save as safetensors_save

from .. import __version__
from ..bank import PACKAGED, KernelBank
from ..chain import PACKAGED_SOURCES, load_sources, sources_file
from ..distributed import close_process_group, from_env, wrap
from ..errors import BankError, UsageError
from ..io_util import atomic_write_bytes, atomic_write_json, check_out_dir, read_json, safe_torch_load
from ..layers import conv_layers, select_layers
from ..models import GRAYSCALE, build_model
from ..bayes import OTHER_PREDICTIONS, TRUNC, BayesConv2d, KLTerm, predicting, to_bayes
from ..terms import Terms
from ..regularizer import AdversarialRegularizer
from .banks import bank_id, bank_label, load_bank
from .data import data_root, target_sets
from .mnist import mnist_sets
from .protocol import protocol
from .device import amp_precision, pick_device
from .inits import INITS, Start, init_of
from .loop import LoopConfig, Trainer
from .methods import method_of
from .priors import prior_of
from .run_summary import report_lines, summarize
from .runs import FINAL_KERNELS, START_KERNELS
from .settings import (Settings, build_parser, config_of, given, inherit, parse_bank_map, parse_hidden,
                       resolve_defaults, settings_diff)

__all__ = ["build_parser", "config_of", "main", "prepare", "settings_diff"]


def _recorded(out: Path, ckpt_path: Path) -> tuple[dict | None, dict]:
    """(the checkpoint, the settings the run was started with) of a run folder's ``--resume``:
    a finished run has no checkpoint, only its config.json."""
    if (out / "final.json").exists() and not ckpt_path.exists():
        return None, read_json(out / "config.json") if (out / "config.json").exists() else {}
    if not ckpt_path.exists():
        raise UsageError(f"--resume: no checkpoint in {out}")
    ckpt = safe_torch_load(ckpt_path)
    return ckpt, _settings_of(ckpt, out, ckpt_path)


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


@dataclass
class Prepared:
    """A run's pieces, built and checked before anything is written."""
    device: torch.device
    bank: KernelBank | None
    train: object
    test: object
    model: torch.nn.Module
    reg: object
    layers: list[str]
    fake_max_used: int | None     # kernels per layer and step D saw (recorded, not a setting)
    record: dict                  # what the run folder keeps of the start (the transfer map)


def prepare(s: Settings, device: str | None = None, vae_cache: str = "runs/vae") -> Prepared:
    """Validate the settings and build the pieces of a run (DESIGN.md §2, §8, §12): the bank, the
    source networks, the data, the model, the adversarial term, the init and the prior, the
    last two from their tables (``inits.INITS``, ``priors.PRIORS``)."""
    hidden = parse_hidden(s.d_hidden)
    bank_map = parse_bank_map(s.bank_map)
    dev = pick_device(device)
    if s.backend == "triton" and dev.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise UsageError("--backend triton needs a CUDA device (or TRITON_INTERPRET=1 on the CPU, slow)")
    init, prior = init_of(s.init), prior_of(s.prior)
    bank = None
    if s.bank.lower() != "none":
        bank = load_bank(s.bank, s.arch)
    elif "bank" in (init.needs, prior.needs):
        raise UsageError(f"--{'init ' + s.init if init.needs == 'bank' else 'prior ' + s.prior} needs a bank")
    sources, partial = None, False
    if init.needs == "sources":
        if not s.sources:
            raise UsageError(f"--init {s.init} needs --sources: source networks of the same architecture (a "
                             f"collect folder, a sources file, or a packaged name: {', '.join(PACKAGED_SOURCES)})")
        sources, about = load_sources(sources_file(s.sources))
        partial = bool(about.get("partial"))
        if init.whole_sources and partial:
            raise UsageError(f"--init {s.init} needs whole source networks (a collect folder or a sources file), "
                             "not a bank")
    if prior.needs == "copied" and not init.copies:
        raise UsageError(f"--prior {s.prior} pulls toward a network's start: it needs --init "
                         f"{' or '.join(n for n, i in INITS.items() if i.copies)}")
    vi = getattr(s, "inference", "map") == "vi"
    if vi and (s.lam or s.prior != "none"):
        raise UsageError("--inference vi takes its prior from --vi-prior: give --lambda 0 and no --prior")
    if vi and s.vi_prior == "vae" and bank is None:
        raise UsageError("--vi-prior vae needs a bank (the VAE is fitted to its 2-D kernels)")
    if getattr(s, "vae_files", None) and "vae" not in (s.init, s.prior, vi and s.vi_prior):
        raise UsageError("--vae-files serves --init vae, --prior vae or --vi-prior vae; this run uses none of them")
    if s.arch == "dwpnet" and s.image_size != 32:
        raise UsageError("--arch dwpnet takes 32x32 images: use --image-size 32 or another --arch")
    if (s.dataset == "mnist") != (s.arch in GRAYSCALE):
        raise UsageError(f"--dataset mnist takes --arch {' or '.join(GRAYSCALE)} (1-channel 28x28 digits), and "
                         f"--arch {' or '.join(GRAYSCALE)} takes --dataset mnist; got {s.dataset} and {s.arch}")
    if s.dataset == "mnist":
        train, test, num_classes = mnist_sets(data_root(s.data_root), s.train_size, s.data_seed, dev, s.classes)
    else:
        train, test, num_classes = target_sets(data_root(s.data_root), s.train_size, s.data_seed, dev,
                                               s.dataset, s.image_size, s.classes)
    torch.manual_seed(s.seed)
    model = build_model(s.arch, num_classes, s.width).to(dev)
    layers = (select_layers(model, s.reg_layers) if bank is None else   # patterns: the convs the bank serves
              select_layers(model, s.reg_layers, bank.kernel_sizes(), bank_map or {}, "--reg-layers"))
    if bank is not None:
        _gray_bank(model, layers, bank, bank_map)
    adv = None
    if bank is not None:
        steps = s.epochs * math.ceil(s.train_size / s.batch_size)
        try:
            adv = AdversarialRegularizer(model, bank, layers, s.lam, hidden, s.d_norm, s.d_loss,
                                         lr=s.d_lr, backend=s.backend, lecam=s.lecam, seed=s.seed,
                                         unit=s.d_unit, share=s.d_share, fake_max=s.fake_max,
                                         bank_map=bank_map, layer_weights=s.layer_weights,
                                         lam_decay_steps=steps if s.lambda_schedule == "linear" else None)
        except BankError as e:
            raise UsageError(str(e)) from None
        torch.manual_seed(s.seed + 1)   # D init must not shift the classifier's RNG stream
        adv.to(dev)
    start = Start(s, model, layers, bank, sources, partial, dev, bank_map, vae_cache)
    copied: list[str] = []
    if not init.copies:                 # drawn starts keep each layer's std: priors are fitted after them
        copied = init.apply(start)
    term = prior.build(start, copied) if prior.needs != "copied" else None
    if init.copies:                     # a copied start changes the scale: after the priors are fitted
        copied = init.apply(start)
    if prior.needs == "copied":
        term = prior.build(start, copied)
    terms = {"prior": term} if term is not None else {}
    if vi:                              # the regularized convs become Bayesian, their KL joins the loss
        terms["kl"] = _kl_term(start, len(train))
        if adv is not None:             # the judge (λ = 0 here) follows the swapped-in convs
            adv.relink(model)
    reg = Terms({"adv": adv, **terms} if adv is not None else terms) if terms else adv
    return Prepared(dev, bank, train, test, model, reg, layers, adv.fake_max if adv is not None else None,
                    start.record)


def _gray_bank(model, layers: list[str], bank: KernelBank, bank_map) -> None:
    """A conv over one input channel (a grayscale image's first layer, not a depthwise conv) takes
    grayscale kernels: a bank whose filters serving it are RGB is refused in one line."""
    convs = conv_layers(model)
    for n in layers:
        c = convs[n]
        if c.in_channels == 1 and c.groups == 1:
            src = bank.plan(n, c.weight.shape, "slice", bank_map).src
            rgb = [b for b in src if bank.filter_rows(b) > 1]
            if rgb:
                raise UsageError(f"{n} takes one input channel, and the bank's {rgb[0]} holds filters of "
                                 f"{bank.filter_rows(rgb[0])} channels: give a bank of grayscale kernels "
                                 f"(collect --from-npy)")


def _other_predictions(trainer: Trainer, model: torch.nn.Module) -> dict:
    """A Bayesian net's test accuracy predicted the two other ways (``bayes.predicting``): with
    per-activation noise, as the Deep Weight Prior's code predicts, and by the posterior mean.
    Recorded beside ``test_acc`` (exact weight samples, the protocol's), after it, never instead."""
    out: dict = {}
    if not any(isinstance(m, BayesConv2d) for m in model.modules()):
        return out
    for how in OTHER_PREDICTIONS:       # the protocol's own is measured already
        with predicting(model, how):
            r = trainer.evaluate()
        out[f"test_acc_{how}"], out[f"test_loss_{how}"] = r["test_acc"], r["test_loss"]
    return out


def _kl_term(st: Start, n_train: int) -> KLTerm:
    """The ELBO's KL term over the regularized convs, made Bayesian (DESIGN.md §15)."""
    s = st.settings
    vaes = units = None
    if s.vi_prior == "vae":            # the Deep Weight Prior: a VAE of the bank's 2-D kernels, unscaled
        vaes, units = st.vaes("slice")
    try:
        to_bayes(st.model, st.layers, s.vi_log_sigma2, s.vi_samples,
                 "trunc-alpha" if s.vi_prior == TRUNC else "gaussian")
    except ValueError as e:
        raise UsageError(f"--inference vi: {e}") from None
    return KLTerm(st.model, s.vi_prior, n_train, s.kl_weight, vaes, units, None, s.seed).to(st.device)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    finally:
        close_process_group()


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    typed = given(parser, argv)
    dist, a.device = from_env(a.device)          # torchrun: one rank of N, its device
    if a.resume:
        where = Path(a.resume)
        if not where.exists():
            raise UsageError(f"--resume {a.resume}: no such run folder or checkpoint file")
        if where.is_dir():                       # --resume RUN_FOLDER: continue in that folder
            if a.out and Path(a.out).resolve() != where.resolve():
                raise UsageError(f"--resume {a.resume} is a run folder and continues there; leave out --out {a.out}")
            a.out, a.resume = a.resume, ""
        elif a.out is None and (where.parent / "config.json").exists():
            a.out = str(where.parent)            # a run's checkpoint continues in its own folder
    ckpt = old = None
    if a.resume:                                 # a checkpoint file: its settings name the default folder
        ckpt_path = Path(a.resume)
        ckpt = safe_torch_load(ckpt_path)
        old = _settings_of(ckpt, Path(a.out) if a.out else ckpt_path.parent, ckpt_path)
        inherit(a, old, typed)                   # what was not typed is the run's own
    if a.out is None:
        resolve_defaults(a)                      # the default folder's name comes from the settings
    out = Path(a.out or f"runs/train/n{a.train_size}-lam{a.lam:g}-s{a.seed}")
    if not a.resume:
        ckpt_path = out / "checkpoint.pt"
    if a.resume == "":
        ckpt, old = _recorded(out, ckpt_path)
        inherit(a, old, typed)
    if a.resume is not None and "keep_checkpoint" not in typed and (out / "config.json").exists():
        a.keep_checkpoint = bool(read_json(out / "config.json").get("keep_checkpoint", a.keep_checkpoint))
    resolve_defaults(a)
    if a.batch_size % dist.world:
        raise UsageError(f"--batch-size {a.batch_size} (the global batch) does not split over {dist.world} ranks")
    check_out_dir(out)
    if (out / "final.json").exists():
        if a.resume is None:
            raise UsageError(f"{out} already holds a finished run; choose another --out (or --resume "
                             f"to see its result)")
        if not a.resume:
            return _finished(a, out, old)
        raise UsageError(f"{out} already holds a finished run; resume {a.resume} into another --out")
    if a.resume is None and (out / "checkpoint.pt").exists():
        raise UsageError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    settings = config_of(a)
    if ckpt is not None:
        diff = settings_diff(old, settings)
        if diff:
            raise UsageError(f"--resume with different settings than the checkpoint: {', '.join(diff)}")

    if a.deterministic:
        set_deterministic()
    run = prepare(Settings(settings), a.device, a.vae_cache)
    device, bank, train, test, model, reg, layers = (run.device, run.bank, run.train, run.test, run.model, run.reg,
                                                     run.layers)
    if ckpt is not None:
        _check_same_bank(out, ckpt_path, bank)
    net = wrap(model, dist, device)
    if dist.active and reg is not None:
        reg.distribute(dist)
    precision = amp_precision(device, a.amp)
    cfg = LoopConfig(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, weight_decay=a.weight_decay,
                     amp=precision == "bf16", eval_every=a.eval_every, eval_size=a.eval_size, seed=a.seed,
                     **settings["loop"])
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
                                                    "fake_max_used": run.fake_max_used,
                                                    "keep_checkpoint": a.keep_checkpoint,
                                                    "protocol": protocol(settings, test),
                                                    "bank_meta": bank.meta if bank else None})
        if ckpt is None and dist.is_main and "init_map" in run.record:    # which source module started which
            atomic_write_json(out / "init_map.json", run.record["init_map"])
        if ckpt is None and dist.is_main and "vae_files" in run.record:   # which saved VAEs served as prior/init
            atomic_write_json(out / "vae_files.json", run.record["vae_files"])
        if ckpt is None and dist.is_main:    # the filters as training starts (after any bank init)
            atomic_write_bytes(out / START_KERNELS, safetensors_save(_kernels(model, layers),
                                                                     metadata={"format": "fastreg-kernels/1"}))
    except BaseException:
        if fresh and dist.is_main:   # this call made the folder: leave nothing half-written
            shutil.rmtree(out, ignore_errors=True)
        raise
    t0 = time.time()
    last = trainer.run()
    wall, cpu = trainer.wall_time(), trainer.cpu_time()   # training only, not the evaluations below
    other = _other_predictions(trainer, model)   # on every rank: an evaluation all-reduces
    if not dist.is_main:
        return 0
    kept = _kernels(model, layers)
    start = _read_kernels(out / START_KERNELS)
    judged = summarize(out, {n: start[n] for n in layers if n in start}, kept, bank, a.seed,
                       f"{method_of(settings)}, n={a.train_size}, seed {a.seed}", bank_map=parse_bank_map(a.bank_map))
    final = {"test_acc": last["test_acc"], "test_loss": last["test_loss"], "train_acc": last["train_acc"],
             "train_ce": last["train_ce"], "train_size": a.train_size, "lam": a.lam, "seed": a.seed,
             "data_seed": a.data_seed, "init": a.init, "reg_layers": layers, "steps": trainer.step,
             "epochs": a.epochs, "device": str(device),
             **{k: last[k] for k in ("g_loss", "d_loss", "d_acc_real", "d_acc_fake") if k in last},
             "judge_auc": {n: v for n, v in judged.items() if v["judge_auc_end"] is not None}, **other}
    # Small copy of the kernels the report measures (conv1 + the regularized layers), so
    # finished runs can be shipped and reported without their checkpoints; before
    # final.json, which marks the run finished.
    atomic_write_bytes(out / FINAL_KERNELS, safetensors_save(kept, metadata={"format": "fastreg-kernels/1"}))
    atomic_write_json(out / "timing.json", {"wall_time_s": round(wall, 2),
                                            "cpu_time_s": round(cpu, 2) if math.isfinite(cpu) else None,
                                            "device": str(device)})
    atomic_write_json(out / "final.json", final)
    (out / "failed.json").unlink(missing_ok=True)   # left by an earlier attempt the sweep gave up on
    if not a.keep_checkpoint:    # weights + optimizer state: 70 MB for the default job, not needed now
        (out / "checkpoint.pt").unlink(missing_ok=True)
    split = "validation" if test.split == "val" else "test"
    print(f"{split} accuracy {final['test_acc']:.4f} (n={a.train_size}, λ={a.lam:g}, seed {a.seed}) "
          f"in {time.time() - t0:.0f}s → {out}")
    for line in report_lines(judged, out):
        print(line)
    return 0


def _finished(a, out: Path, old: dict) -> int:
    """``--resume`` of a finished run: the same checks as any resume (settings, bank), then its
    result; nothing is trained or written."""
    diff = settings_diff(old, config_of(a))
    if diff:
        raise UsageError(f"--resume with different settings than the finished run in {out}: {', '.join(diff)}")
    _check_same_bank(out, out / "checkpoint.pt", load_bank(a.bank, a.arch) if a.bank.lower() != "none" else None)
    final = read_json(out / "final.json")
    split = "validation" if protocol(old).get("eval_split") == "val" else "test"
    print(f"{out} is finished: {split} accuracy {final['test_acc']:.4f} (n={final['train_size']}, "
          f"λ={final.get('lam', final.get('lambda')):g}, seed {final['seed']})")   # a final.json may name it "lambda"
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

