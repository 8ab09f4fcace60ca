"""MNIST for the small-data classifier (``--dataset mnist``), the Deep Weight Prior's own target
(DESIGN.md §15). Offline: ``mnist5k.npz`` in the data folder, 5000 real digits (500 a class);
the ``n`` training digits are drawn per data seed, stratified, and the test set is the digits
not drawn (``5000 − n``). Online, with torchvision's MNIST files there (or a network): the
training digits are drawn from its 60 000 and the test set is its 10 000. Grayscale, one
channel, 28×28, pixels in [0, 1] as the paper feeds them (no normalization); no augmentation.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import UsageError
from .data import Split, stratified_subset, take_rows

OFFLINE = "mnist5k.npz"
DIGITS = tuple(str(d) for d in range(10))
MEAN, STD = (0.0,), (1.0,)       # pixels in [0, 1], as the Deep Weight Prior trains on them


def _offline(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as d:
            x, y = d["images"], d["labels"]
    except (OSError, KeyError, ValueError) as e:
        raise UsageError(f"{path}: not a readable MNIST npz with 'images' and 'labels' ({e})") from None
    if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (28, 28) or y.shape != (x.shape[0],):
        raise UsageError(f"{path}: expected images uint8 [N, 28, 28] and labels [N], got {x.dtype} {x.shape}")
    return x[..., None], y.astype(np.int64)


def _torchvision(root: Path, train: bool) -> tuple[np.ndarray, np.ndarray] | None:
    import torchvision
    from .data import online
    try:
        ds = torchvision.datasets.MNIST(str(root), train=train, download=False)
    except RuntimeError:
        if not online():
            return None
        ds = torchvision.datasets.MNIST(str(root), train=train, download=True)
    return ds.data.numpy()[..., None].astype(np.uint8), ds.targets.numpy().astype(np.int64)


def labels(root: Path) -> tuple[np.ndarray, str]:
    """The labels of the pool training digits are drawn from, and where it is (for messages)."""
    if source(root) == "mnist5k":
        return _offline(root / OFFLINE)[1], OFFLINE
    got = _torchvision(root, True)
    if got is None:
        raise UsageError(f"no MNIST in {root} and no network: put {OFFLINE} or torchvision's MNIST files there")
    return got[1], "the MNIST training set"


def source(root: Path) -> str:
    """Which MNIST a run uses: ``mnist5k`` (the offline subset) or ``mnist`` (torchvision's)."""
    return "mnist5k" if (root / OFFLINE).exists() else "mnist"


def mnist_sets(root: Path, train_size: int, data_seed: int, device,
               classes: Sequence[int] | None = None) -> tuple[Split, Split, int]:
    """(the stratified ``train_size`` digits of data seed ``data_seed``, the test digits, 10)."""
    if classes is not None:
        raise UsageError("--classes selects CIFAR-10 classes; MNIST runs classify all ten digits")
    if source(root) == "mnist5k":
        x, y = _offline(root / OFFLINE)
        sub = stratified_subset(np.arange(len(y)), y, train_size, 10, data_seed, DIGITS, f"{OFFLINE}")
        rest = np.setdiff1d(np.arange(len(y)), sub)
        xte, yte, split = x, y, "rest"
    else:
        got, test = _torchvision(root, True), _torchvision(root, False)
        if got is None or test is None:
            raise UsageError(f"no MNIST in {root} and no network: put {OFFLINE} (images uint8 [N, 28, 28], "
                             f"labels) or torchvision's MNIST files there, or pass --data-root / set FASTREG_DATA")
        (x, y), (xte, yte) = got, test
        sub = stratified_subset(np.arange(len(y)), y, train_size, 10, data_seed, DIGITS, "the MNIST training set")
        rest, split = np.arange(len(yte)), "test"
    train = take_rows(x, y, None, sub, device, root, MEAN, STD)
    test_set = take_rows(xte, yte, None, rest, device, root, MEAN, STD)
    train.split, test_set.split = "train", split
    train.classes = test_set.classes = DIGITS
    return train, test_set, 10
