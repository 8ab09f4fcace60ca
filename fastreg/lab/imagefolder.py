"""Own images in torchvision's ImageFolder layout (``--dataset imagefolder``):
``DIR/train/<class>/*.png|jpg`` plus ``DIR/val/`` or ``DIR/test/`` with the same classes.

The reduced training set is stratified from ``train/`` (``n / classes`` images per class, drawn
by the data seed); every image of ``val/`` (or ``test/``) is the test set. Images are decoded
once, resized to ``--image-size`` squares and normalized with the training subset's channel
statistics.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UsageError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".ppm", ".tif", ".tiff")


def listing(root: Path, split: str) -> tuple[list[Path], np.ndarray, list[str]]:
    """(image paths, int64 labels, class names) of ``root/split``; classes sorted by name."""
    d = root / split
    classes = sorted(p.name for p in d.iterdir() if p.is_dir()) if d.is_dir() else []
    paths, labels = [], []
    for c, name in enumerate(classes):
        for f in sorted((d / name).rglob("*")):
            if f.suffix.lower() in EXTENSIONS:
                paths.append(f)
                labels.append(c)
    if not paths:
        raise UsageError(f"{d}: no images in class folders (ImageFolder layout: {d}/<class>/*.png)")
    return paths, np.asarray(labels, dtype=np.int64), classes


def decode(paths: list[Path], size: int) -> np.ndarray:
    """uint8 ``[N, size, size, 3]`` RGB images."""
    from PIL import Image, UnidentifiedImageError
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    for i, p in enumerate(paths):
        try:
            with Image.open(p) as im:
                out[i] = np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR))
        except (OSError, UnidentifiedImageError) as e:
            raise UsageError(f"{p}: not a readable image ({e})") from None
    return out


def test_split(root: Path) -> str:
    """The folder an image folder's accuracy is measured on: ``val``, else ``test``."""
    return "val" if (root / "val").is_dir() else "test"


def load(root: Path, size: int) -> tuple[list[Path], np.ndarray, list[Path], np.ndarray, list[str]]:
    """Train and test listings (test from ``val/``, else ``test/``), with the same classes."""
    tr_paths, tr_y, classes = listing(root, "train")
    split = test_split(root)
    if not (root / split).is_dir():
        raise UsageError(f"{root}: an ImageFolder needs train/ and val/ (or test/) folders")
    te_paths, te_y, te_classes = listing(root, split)
    if te_classes != classes:
        raise UsageError(f"{root}: {split}/ has classes {te_classes}, train/ has {classes}")
    return tr_paths, tr_y, te_paths, te_y, classes


def default_train_size(root: Path, total: int = 100) -> int:
    """The ``--train-size`` an image folder gets by default: ``total / classes`` images per
    class (at least 1), fewer when its smallest class has fewer."""
    _, labels, classes = listing(root, "train")
    smallest = int(np.bincount(labels, minlength=len(classes)).min())
    return max(1, min(smallest, total // len(classes))) * len(classes)
