"""The one owner of a training run's settings (DESIGN.md §11): the options (defaults, help
text), how unset ones resolve, the config.json they are recorded in, and how a config from an
older fastreg reads today (``upgrade``), which resume, sweep and report all use.

``VERSION`` 2: λ and the prior weight are a mean over layers (``layer_weights``),
``classes``, ``sources``, ``chain_norms``, and the training loop's own settings (``loop``) are
recorded. A config without ``settings_version`` is version 1 and reads with ``UPGRADE``: the
behaviour runs had before each setting existed.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from ..bank import bank_file, packaged_listing
from ..errors import UsageError
from ..bayes import PRIORS as VI_PRIORS
from ..init import UNITS
from ..layers import LAYER_WEIGHTS, select_layers
from ..models import ARCHS, build_model
from ..ops import BACKENDS
from ..regularizer import SHARES, resolve_fake_max
from . import imagefolder
from .classes import parse_classes
from .cli import Parser, fraction, layer_pairs, nonneg_float, nonneg_int, positive_float, positive_int
from .data import DATASETS, data_root
from .inits import INITS
from .methods import METHOD_KEYS
from .priors import PRIORS, adversarial

VERSION = 2
# the training loop's own settings (recorded as "loop"; a config without them ran with these)
LOOP = {"optimizer": "adam", "warmup": 0.05, "schedule": "cosine", "label_smoothing": 0.0, "augment": True}
SCHEDULES = ("cosine", "linear", "constant")   # --lr-schedule; the loop's "schedule"
# what a setting meant in runs made before it was recorded (version 1 configs)
UPGRADE = {**METHOD_KEYS, "layer_weights": "sum", "classes": None, "sources": None, "vae_epochs": 300, "arch": "dwpnet",
           "d_share": "layer", "dataset": "cifar10", "image_size": 32, "bank_map": None, "vae_files": None, "shrink": 0.1,
           "loop": LOOP}


DESCRIPTION = ("a small-data image classifier (CIFAR-10 or your own images) whose conv filters start "
               "from a bank of good filters and are pulled toward them by a discriminator")
MAIN_D_UNIT = "slice"   # the seed's adversarial term: D judges 2-D kernels (README: the main job)


def build_parser() -> Parser:
    p = Parser(prog="python -m fastreg.train", description=DESCRIPTION)
    p.add_argument("--dataset", choices=("cifar10", "mnist", "imagefolder"), default="cifar10",
                   help="cifar10 (the project's target pool); mnist (with --arch fconv: mnist5k.npz in the data "
                        "folder, tested on the digits not drawn, or torchvision's MNIST); or imagefolder: your own "
                        "images, --data-root DIR with train/ and val/ (or test/) class folders")
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
                   help=f"bank file (.safetensors or DWP .npy), or a packaged bank by name: {packaged_listing()}; "
                        "none: no bank and no discriminator; auto: dwpnet_e24 for dwpnet, dwpnet_e24 + resnet20 "
                        "for other archs")
    p.add_argument("--arch", default="dwpnet", help=f"classifier: {', '.join(ARCHS)}")
    p.add_argument("--reg-layers", default="conv1",
                   help="conv layers to regularize / bank-initialize: full module names, globs "
                        "(layer*.*.conv1), all (every conv of 3x3 or more), k3/k5/k7; comma-separated")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="default: max(30, 30000 / train-size), i.e. >= 300 steps; or from --steps")
    p.add_argument("--steps", type=positive_int, default=None,
                   help="train this many optimizer steps instead: the epochs that hold them at --batch-size "
                        "(default: from --epochs)")
    p.add_argument("--batch-size", type=positive_int, default=100, help="images per step")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="AdamW peak learning rate")
    p.add_argument("--lr-schedule", choices=SCHEDULES, default="cosine",
                   help="the learning rate decays to 0 over the run by a half cosine (default) or linearly (as "
                        "the Deep Weight Prior's code), or stays constant; the warm-up ramp multiplies it")
    p.add_argument("--warmup", type=fraction, default=0.05,
                   help="fraction of the steps with a linear learning-rate warm-up (default 0.05; 0 for none)")
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
                        "layer the full weight, as runs recorded at settings version 1 did)")
    p.add_argument("--fake-max", type=_fake_max, default="auto",
                   help="kernels (rows) of a layer D sees per step, drawn at random; auto: all while "
                        "the layers hold at most 16384 in all, else an equal share of 16384")
    p.add_argument("--bank-map", default=None,
                   help="LAYER=BANKLAYER[+BANKLAYER],...: which bank layers serve which layer "
                        "(default: the same name, else every bank layer of its kernel size)")
    p.add_argument("--init", choices=list(INITS), default=None,
                   help="how the regularized layers start: " + ", ".join(f"{n} ({i.help})" for n, i in INITS.items()))
    p.add_argument("--init-unit", choices=UNITS, default="filter",
                   help="draw whole filters (their channels kept together) or independent 2-D "
                        "slices; whole filters need the bank's filters to have the layer's inputs")
    p.add_argument("--init-scale", choices=("layer", "none"), default="layer",
                   help="bank, cov and vae inits: scale the draws to the layer's own init std (layer), or keep them "
                        "as drawn (none, as the Deep Weight Prior initializes from its VAE)")
    p.add_argument("--inference", choices=("map", "vi"), default="map",
                   help="map: train the weights (every prior above); vi: a factorized Gaussian posterior over the "
                        "regularized convs' weights, trained on the ELBO with --vi-prior, predicting by the mean of "
                        "--vi-samples passes (DESIGN.md §15)")
    p.add_argument("--vi-prior", choices=VI_PRIORS, default="normal",
                   help="--inference vi: the prior of the KL term: normal (N(0, 1)), loguniform (sparse variational "
                        "dropout's approximation), loguniform-trunc (the posterior N(μ, αμ²) with α < 1 and "
                        "variational dropout's KL, as the Deep Weight Prior's code), vae (the Deep Weight Prior: a "
                        "VAE fitted to the bank's 2-D kernels, its KL bounded through the VAE)")
    p.add_argument("--vi-samples", type=positive_int, default=10, help="--inference vi: posterior samples of the weights (one a pass, "
                        "shared by the batch) whose softmax is averaged to predict")
    p.add_argument("--vi-log-sigma2", type=float, default=-10.0,
                   help="--inference vi: the posterior's log-variance at the start (loguniform-trunc: "
                        "α starts at sigmoid(−2) ≈ 0.12 instead, as the paper's code)")
    p.add_argument("--kl-weight", type=nonneg_float, default=1.0, help="--inference vi: the weight of the KL term")
    p.add_argument("--sources", default=None,
                   help="source networks for --init chain / finetune: a collect folder (its seed*/model.pt), a "
                        "sources file, or a packaged name; run seed s starts from source s mod their number "
                        "(default: none)")
    p.add_argument("--chain-norms", action="store_true",
                   help="--init chain / transfer: copy the norm layers too (weights and running statistics)")
    p.add_argument("--prior", choices=list(PRIORS), default="none",
                   help="a penalty added to the loss: " +
                        "; ".join(f"{n}: {x.help}" for n, x in PRIORS.items() if n != "none"))
    p.add_argument("--vae-epochs", type=positive_int, default=300,
                   help="--init vae / --prior vae: epochs of the VAE fit to each layer's bank kernels")
    p.add_argument("--vae-cache", default="runs/vae",
                   help="folder where fitted VAEs are kept (keyed by the kernels, sizes, epochs and seed) and "
                        "found again")
    p.add_argument("--vae-files", default=None,
                   help="LAYER=FILE,...: saved kernel VAEs of 2-D slices to use for those layers instead of fitting "
                        "one to the bank (--init vae, --prior vae, --vi-prior vae): a fastreg VAE, or the Deep Weight Prior's "
                        "own, converted by docs/scripts/import_dwp_vae.py (default: none, fit one to the bank)")
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
                   help="continue a run: PATH is its folder or a checkpoint file, else the --out folder's; "
                        "every setting not typed is the run's own, one typed differently is refused; a "
                        "finished run prints its result (default: off, a fresh run)")
    p.add_argument("--keep-checkpoint", action="store_true",
                   help="keep checkpoint.pt (weights and optimizer state) when the run finishes; by default "
                        "a finished run keeps its final kernels, metrics and pictures only")
    return p


def parse_hidden(s: str) -> tuple[int, ...]:
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


def parse_bank_map(s: str | None) -> dict[str, list[str]] | None:
    """``--bank-map conv1=layer1.0.conv1+layer1.0.conv2,conv2=k5``."""
    pairs = layer_pairs(s, "--bank-map", "LAYER=BANKLAYER[+BANKLAYER],...")
    return {k: [t.strip() for t in v.split("+")] for k, v in pairs.items()} or None


class Settings:
    """A run's resolved settings, read-only (what config.json records, ``config_of``): the
    pieces of a run are built from it, and nothing writes back into it."""
    __slots__ = ("_values",)

    def __init__(self, values: dict) -> None:
        object.__setattr__(self, "_values", dict(values))

    def __getattr__(self, key: str):
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key: str, value) -> None:
        raise AttributeError(f"run settings are read-only ({key})")

    def as_dict(self) -> dict:
        return dict(self._values)


NOT_SETTINGS = ("resume", "out", "device", "keep_checkpoint", "vae_cache")   # where it runs, what it keeps


def config_of(a) -> dict:
    """The run's settings as they go into config.json (and are checked on resume): every
    option but where it runs and what it keeps, the loop's own settings (digits are not
    flipped or shifted: no augmentation on MNIST), the version."""
    own = {k: v for k, v in vars(a).items() if k not in NOT_SETTINGS}
    loop = {**LOOP, "augment": getattr(a, "dataset", "cifar10") != "mnist",
            "schedule": getattr(a, "lr_schedule", LOOP["schedule"]), "warmup": getattr(a, "warmup", LOOP["warmup"])}
    return {**own, "loop": loop, "settings_version": VERSION}


def given(parser: argparse.ArgumentParser, argv) -> set[str]:
    """The options the user typed (their ``dest``), told apart from defaults: a resumed run
    takes every other setting from its record."""
    saved = {a.dest: a.default for a in parser._actions}
    try:
        for a in parser._actions:
            a.default = argparse.SUPPRESS
        return set(vars(parser.parse_args(argv)))
    finally:
        for a in parser._actions:
            a.default = saved[a.dest]


def inherit(a, recorded: dict, typed: set[str]) -> None:
    """A resumed run's settings: its recorded ones (read as today's, ``upgrade``) wherever the
    user did not type the option; what was typed stays, and is checked against the record."""
    old = upgrade(recorded)
    for k in vars(a):
        if k in old and k not in typed and k not in NOT_SETTINGS:
            setattr(a, k, old[k])


def upgrade(cfg: dict) -> dict:
    """A recorded config as today's settings: what each setting a version-1 config lacks meant
    for that run (``UPGRADE``)."""
    return {**UPGRADE, **cfg} if cfg.get("settings_version", 1) < VERSION else dict(cfg)


def settings_diff(old: dict, new: dict, ignore: tuple[str, ...] = (), skip_unset: bool = False
                  ) -> list[str]:
    """Settings in which two runs differ (``skip_unset``: not those ``new`` leaves None). A bank
    counts as the same when its file holds the same bytes at another path; ``fake_max`` is
    compared as resolved (see ``fake_max_of``)."""
    old, ignore = upgrade(old), (*ignore, "settings_version")
    diff = [k for k in old if k in new and k not in ignore and k != "fake_max" and old[k] != new[k]
            and not (skip_unset and new[k] is None)]
    if "layer_weights" in diff and not (weighs_layers(old) and weighs_layers(new)):
        diff.remove("layer_weights")
    if "bank" in diff and _same_file(bank_file(old["bank"]), bank_file(new["bank"])):
        diff.remove("bank")
    if "fake_max" in old and "fake_max" not in ignore and fake_max_of(old) != fake_max_of(new):
        diff.append("fake_max")
    return sorted(diff)


def _same_file(a: str | Path, b: str | Path) -> bool:
    pa, pb = Path(a), Path(b)
    return pa.is_file() and pb.is_file() and pa.stat().st_size == pb.stat().st_size \
        and pa.read_bytes() == pb.read_bytes()


def fake_max_of(cfg: dict) -> int | None:
    """Kernels per layer and step the adversarial term saw (None: all): recorded by newer runs;
    ``None`` in runs from before ``--fake-max auto`` meant all; ``auto`` resolved on the model.
    Without the adversarial term (λ = 0) nothing is drawn: None."""
    if not adversarial(cfg):
        return None
    if "fake_max_used" in cfg:
        return cfg["fake_max_used"]
    if cfg.get("fake_max") != "auto":
        return cfg.get("fake_max")
    model = build_model(cfg.get("arch", "dwpnet"), 10, cfg.get("width") or 1.0)
    return resolve_fake_max(model, select_layers(model, cfg["reg_layers"]), cfg.get("d_unit", "slice"),
                            "auto")


def resolve_defaults(a) -> None:
    """Settings whose default depends on others, resolved before they are recorded."""
    if a.init is None:
        a.init = "default" if a.bank.lower() == "none" else "bank"
    if isinstance(a.classes, str):
        a.classes = parse_classes(a.classes, "cifar10", DATASETS["cifar10"])
    if a.train_size is None:
        a.train_size = (imagefolder.default_train_size(data_root(a.data_root)) if a.dataset == "imagefolder"
                        else 100)
    if a.data_seed is None:
        a.data_seed = a.seed
    if getattr(a, "steps", None) is not None:
        per = -(-a.train_size // a.batch_size)              # steps an epoch
        if a.epochs is not None and a.epochs != -(-a.steps // per):
            raise UsageError(f"--epochs {a.epochs} and --steps {a.steps} disagree; give one of them")
        a.epochs = -(-a.steps // per)
    if a.epochs is None:
        a.epochs = max(30, round(30000 / a.train_size))
    if a.eval_every is None:
        a.eval_every = max(1, a.epochs // 6)


def weighs_layers(cfg: dict, layers: list | None = None) -> bool:
    """Whether ``layer_weights`` (how λ and the prior weight spread over layers) can change a
    run: a weighted term (λ > 0 or a prior) on several layers: ``layers`` as the run resolved
    them (its final.json), else as its selector may name them (a plain layer name is one)."""
    if not (adversarial(cfg) or cfg.get("prior", "none") != "none"):
        return False
    if layers is not None:
        return len(layers) > 1
    sel = str(cfg.get("reg_layers", "conv1"))
    return "," in sel or any(c in sel for c in "*?[") or sel == "all" or re.fullmatch(r"k\d+", sel) is not None


