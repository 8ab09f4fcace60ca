"""CIFAR data: loading (local npz or torchvision), the source/target split,
stratified reduced training sets, and on-device batched augmentation.

The split (documented in the README): within each CIFAR-10 training class a
fixed permutation (``SPLIT_SEED``) puts the first ``TARGET_FRACTION`` (20 %:
1000 per class, 10 000 images) in the *target pool* — the only images reduced
training sets are drawn from — and the rest (40 000) in the *source split*
used to train the bank's source models. The two never overlap.
"""
from __future__ import annotations

import os
import socket
from typing import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .classes import CIFAR10_CLASSES, describe, keep, relabel
from ..errors import UsageError

DATASETS = {"cifar10": 10, "cifar100": 100}
SPLIT_SEED = 0
TARGET_FRACTION = 0.2
# Mean/std of the CIFAR-10 training images (used for both datasets: the bank's
# source models and the target classifier see the same input scale).
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


def data_root(arg: str | None) -> Path:
    """``--data-root``, else ``$FASTREG_DATA``, else ``./data``."""
    return Path(arg or os.environ.get("FASTREG_DATA") or "data")


def npz_path(root: Path, name: str, split: str) -> Path:
    return root / f"{name}_{split}.npz"


# In-process cache of decoded npz files: a sweep trains many runs in one process and
# CIFAR-10 train is ~150 MB (~2 s to read). Keyed by file identity, so an edited file is
# re-read; arrays are read-only so no caller can change what the next run sees.
# A *data pack* (``python -m fastreg.pack``) is such an npz with a boolean ``present``
# row mask: only the rows some planned runs need hold images; the rest are zeros.
_NPZ_CACHE: dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray | None]] = {}
_NPZ_CACHE_MAX = 4


def _file_key(path: Path) -> tuple | None:
    try:
        st = path.stat()
        return (str(path.resolve()), st.st_mtime_ns, st.st_size, st.st_ino)
    except OSError:
        return None


def _load_npz(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    key = _file_key(path)
    if key is not None and key in _NPZ_CACHE:
        return _NPZ_CACHE[key]
    got = _read_npz(path)
    for a in got:
        if a is not None:
            a.flags.writeable = False
    if key is not None:
        if len(_NPZ_CACHE) >= _NPZ_CACHE_MAX:
            _NPZ_CACHE.pop(next(iter(_NPZ_CACHE)))
        _NPZ_CACHE[key] = got
    return got


def _require_rows(present: np.ndarray | None, idx: np.ndarray, where: str) -> None:
    """Refuse to use rows a data pack left out (they are zeros, not images)."""
    if present is not None and not present[idx].all():
        missing = int((~present[idx]).sum())
        raise UsageError(f"{where}: a data pack without {missing} of the {len(idx)} images "
                         f"this run needs; make a pack for these sizes/seeds (python -m fastreg.pack) "
                         f"or use the full data")


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    try:
        with np.load(path, allow_pickle=False) as d:
            x, y = d["images"], d["labels"]
            present = d["present"] if "present" in d.files else None
    except (OSError, KeyError, ValueError) as e:
        raise UsageError(f"{path}: not a readable dataset npz with 'images' and 'labels' ({e})") from None
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[3] != 3 or y.shape != (x.shape[0],):
        raise UsageError(f"{path}: expected images uint8 [N, H, W, 3] and labels [N], "
                         f"got {x.dtype} {x.shape} and {y.shape}")
    if present is not None and (present.dtype != np.bool_ or present.shape != y.shape):
        raise UsageError(f"{path}: 'present' must be a bool mask of shape {y.shape}")
    return x, y.astype(np.int64), present


def online(timeout: float = 3.0) -> bool:
    if os.environ.get("FASTREG_OFFLINE") == "1":
        return False
    try:
        socket.create_connection(("www.cs.toronto.edu", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _load_torchvision(root: Path, name: str, split: str) -> tuple[np.ndarray, np.ndarray] | None:
    import torchvision
    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    train = split == "train"
    try:
        ds = cls(str(root), train=train, download=False)
    except RuntimeError:
        if not online():
            return None
        ds = cls(str(root), train=train, download=True)
    return np.asarray(ds.data, dtype=np.uint8), np.asarray(ds.targets, dtype=np.int64)


def _load(name: str, root: Path, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(images, labels, present mask of a data pack or None)."""
    if name not in DATASETS:
        raise UsageError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    npz = npz_path(root, name, split)
    present = None
    if npz.exists():
        x, y, present = _load_npz(npz)
    else:
        got = _load_torchvision(root, name, split)
        if got is None:
            raise UsageError(
                f"no {name} {split} data in {root} and no network: put {npz.name} (npz with "
                f"'images' uint8 NHWC, 'labels') or torchvision's {name} files there, "
                f"or pass --data-root / set FASTREG_DATA")
        x, y = got
    if y.min() < 0 or y.max() >= DATASETS[name]:
        raise UsageError(f"{name} {split}: labels outside [0, {DATASETS[name]})")
    return x, y, present


def load_arrays(name: str, root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 NHWC images and int64 labels, from ``{name}_{split}.npz`` or torchvision."""
    x, y, _ = _load(name, root, split)
    return x, y


def split_target_source(labels: np.ndarray, fraction: float = TARGET_FRACTION,
                        seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """(target_pool, source) index arrays: disjoint, stratified, fixed by ``seed``."""
    rng = np.random.Generator(np.random.PCG64(seed))
    pool, source = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(idx.size)]
        k = int(round(idx.size * fraction))
        pool.append(idx[:k])
        source.append(idx[k:])
    return np.sort(np.concatenate(pool)), np.sort(np.concatenate(source))


def stratified_subset(pool: np.ndarray, labels: np.ndarray, n: int, num_classes: int,
                      seed: int, names: Sequence[str] | None = None, where: str = "the target pool") -> np.ndarray:
    """``n`` indices from ``pool``, ``n / num_classes`` per class, drawn by ``seed``. A size
    that does not fit is refused in one line, in the data's own terms (``names`` of the
    classes, ``where`` the images are)."""
    names = list(names) if names is not None else [str(c) for c in range(num_classes)]
    if n % num_classes:
        raise UsageError(f"--train-size {n} is not divisible by the {num_classes} classes of {where}")
    per = n // num_classes
    counts = [int((labels[pool] == c).sum()) for c in range(num_classes)]
    if per > min(counts):
        short = sorted(range(num_classes), key=lambda c: counts[c])[:3]
        raise UsageError(f"--train-size {n} needs {per} images per class; {where} has "
                         f"{', '.join(f'{counts[c]} of {names[c]!r}' for c in short)}"
                         f"{' …' if num_classes > 3 else ''}: at most {min(counts) * num_classes} fits")
    rng = np.random.Generator(np.random.PCG64(seed))
    out = []
    for c in range(num_classes):
        idx = pool[labels[pool] == c]
        out.append(np.sort(idx[rng.permutation(idx.size)[:per]]))
    return np.concatenate(out)


def to_device_tensor(images: np.ndarray | torch.Tensor, device: torch.device | str,
                     mean: tuple = MEAN, std: tuple = STD) -> torch.Tensor:
    """uint8 NHWC → normalized float NCHW on ``device`` (the whole set lives there).

    Copies: the cached arrays are read-only and shared by every run in the process
    (``from_numpy`` would alias them, and ``div_`` below would write into a float one)."""
    x = torch.tensor(images, device=device) if isinstance(images, np.ndarray) else images.to(device)
    x = x.permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean, device=device).view(1, -1, 1, 1)    # one per channel: RGB, or one for MNIST
    s = torch.tensor(std, device=device).view(1, -1, 1, 1)
    return ((x - m) / s).contiguous()


def augment(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Batched random crop (reflect-pad ``pad``) + horizontal flip, on x's device."""
    n, _, h, w = x.shape
    dev = x.device
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=dev)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=dev)
    flip = torch.rand(n, generator=gen, device=dev) < 0.5
    rows = (torch.arange(h, device=dev)[None, :] + dy[:, None])            # [n, h]
    cols = torch.arange(w, device=dev)[None, :]
    cols = torch.where(flip[:, None], w - 1 - cols, cols) + dx[:, None]    # [n, w]
    bidx = torch.arange(n, device=dev)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[bidx, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


@dataclass
class Split:
    """Images and labels of one set. ``x`` is normalized float NCHW on the device; a set too
    big for the device keeps uint8 NHWC on the CPU instead (``norm`` set), and ``rows``
    moves and normalizes only the rows a batch needs."""
    x: torch.Tensor        # float NCHW on the device, or uint8 NHWC on the CPU
    y: torch.Tensor        # int64 on the device
    index: np.ndarray      # indices into the source arrays (for provenance)
    norm: tuple | None = None   # (device, mean, std) when x stays on the CPU
    split: str = ""             # the split it was taken from: train, test, or an image folder's val
    classes: tuple = ()         # class names, in label order

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def rows(self, idx: torch.Tensor | slice) -> torch.Tensor:
        """Normalized float NCHW rows on the device."""
        if self.norm is None:
            return self.x[idx]
        device, mean, std = self.norm
        return to_device_tensor(self.x[idx.cpu() if isinstance(idx, torch.Tensor) else idx], device, mean, std)


def fits(n_floats: int, device) -> bool:
    """Whether a float32 set of ``n_floats`` numbers may live on ``device``: half the free
    GPU memory, or 4 GiB of host memory."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return 4 * n_floats < torch.cuda.mem_get_info(dev)[0] // 2
    return 4 * n_floats < 4 * 2**30


def take_rows(x: np.ndarray, y: np.ndarray, present: np.ndarray | None, idx: np.ndarray, device,
          where: Path | str, mean: tuple = MEAN, std: tuple = STD) -> Split:
    """Rows ``idx`` of one loaded split, on ``device``; refuses rows a data pack left out."""
    _require_rows(present, idx, str(where))
    yy = torch.tensor(y[idx], device=device)
    if fits(x[idx[:1]].size * len(idx), device):
        return Split(to_device_tensor(x[idx], device, mean, std), yy, idx)
    return Split(torch.from_numpy(np.ascontiguousarray(x[idx])), yy, idx, (torch.device(device), mean, std))


def target_sets(root: Path, train_size: int, data_seed: int, device, dataset: str = "cifar10",
                image_size: int = 32, classes: Sequence[int] | None = None) -> tuple[Split, Split, int]:
    """(reduced train set from the CIFAR-10 target pool, CIFAR-10 test set, num classes); or,
    for ``dataset="imagefolder"``, from the user's own images under ``root``. ``classes``: only
    those CIFAR-10 classes, relabelled 0..K-1 (``fastreg.classes``), in training and test."""
    if dataset == "imagefolder":
        if classes is not None:
            raise UsageError("--classes selects CIFAR classes; an image folder's classes are its folders")
        return _imagefolder_sets(root, train_size, data_seed, device, image_size)
    if dataset != "cifar10":
        raise UsageError(f"--dataset for train: cifar10 or imagefolder (mnist: fastreg.lab.mnist), got {dataset!r}")
    xtr, ytr, ptr = _load("cifar10", root, "train")
    xte, yte, pte = _load("cifar10", root, "test")
    pool = keep(ytr, split_target_source(ytr)[0], classes)
    ytr, test_idx = relabel(ytr, classes), keep(yte, np.arange(len(yte)), classes)
    k = len(classes) if classes is not None else DATASETS["cifar10"]
    names = [CIFAR10_CLASSES[c] for c in classes] if classes is not None else CIFAR10_CLASSES
    where = "the CIFAR-10 target pool" + (f" ({describe(classes)})" if classes is not None else "")
    sub = stratified_subset(pool, ytr, train_size, k, data_seed, names, where)
    train = take_rows(xtr, ytr, ptr, sub, device, npz_path(root, "cifar10", "train"))
    test = take_rows(xte, relabel(yte, classes), pte, test_idx, device, npz_path(root, "cifar10", "test"))
    train.split, test.split, train.classes, test.classes = "train", "test", tuple(names), tuple(names)
    return train, test, k


def source_sets(name: str, root: Path, device, classes: Sequence[int] | None = None) -> tuple[Split, Split, int]:
    """Training data for the bank's source models: CIFAR-10's source split, or all of CIFAR-100;
    ``classes``: only those classes, relabelled 0..K-1, in training and test."""
    xtr, ytr, ptr = _load(name, root, "train")
    xte, yte, pte = _load(name, root, "test")
    idx = keep(ytr, split_target_source(ytr)[1] if name == "cifar10" else np.arange(len(ytr)), classes)
    test_idx = keep(yte, np.arange(len(yte)), classes)
    return (take_rows(xtr, relabel(ytr, classes), ptr, idx, device, npz_path(root, name, "train")),
            take_rows(xte, relabel(yte, classes), pte, test_idx, device, npz_path(root, name, "test")),
            len(classes) if classes is not None else DATASETS[name])


def _imagefolder_sets(root: Path, train_size: int, data_seed: int, device,
                      size: int) -> tuple[Split, Split, int]:
    """The stratified subset of ``root/train`` and all of ``root/val`` (or ``test``), decoded at
    ``size`` and normalized with the subset's channel statistics."""
    from . import imagefolder
    tr_paths, tr_y, te_paths, te_y, classes = imagefolder.load(root, size)
    sub = stratified_subset(np.arange(len(tr_y)), tr_y, train_size, len(classes), data_seed, classes,
                            str(root / "train"))
    xtr = imagefolder.decode([tr_paths[i] for i in sub], size)
    px = xtr.reshape(-1, 3).astype(np.float64) / 255.0
    mean, std = tuple(px.mean(0).tolist()), tuple(np.maximum(px.std(0), 1e-3).tolist())
    xte = imagefolder.decode(te_paths, size)
    train = take_rows(xtr, tr_y[sub], None, np.arange(len(sub)), device, root / "train", mean, std)
    train.index = sub
    test = take_rows(xte, te_y, None, np.arange(len(te_y)), device, root, mean, std)
    train.split, test.split = "train", imagefolder.test_split(root)
    train.classes = test.classes = tuple(classes)
    return train, test, len(classes)

