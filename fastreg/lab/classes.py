"""A subset of a dataset's classes (``--classes``): the class-disjoint protocol, where a bank's
source models train on some classes and the small-data target on others (DESIGN.md §2).

The selected classes are kept in ascending order and relabelled 0..K-1 in that order; the
target pool / source split of each kept class is unchanged (``data.split_target_source``).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import UsageError

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def names_of(dataset: str, num_classes: int) -> tuple[str, ...]:
    """Class names of a dataset, as ``--classes`` may spell them (CIFAR-100's by index only)."""
    return CIFAR10_CLASSES if dataset == "cifar10" else tuple(str(c) for c in range(num_classes))


def parse_classes(text: str | None, dataset: str, num_classes: int) -> list[int] | None:
    """``--classes 5,6,7,8,9`` or ``--classes dog,frog``: sorted distinct class indices, None for
    all classes (no option, or every class listed). One-line UsageError otherwise."""
    if text is None:
        return None
    names = names_of(dataset, num_classes)
    out = []
    for item in (t.strip() for t in str(text).split(",")):
        if item.isdigit() and int(item) < num_classes:
            out.append(int(item))
        elif item in names:
            out.append(names.index(item))
        else:
            raise UsageError(f"--classes: {item!r} is not a class of {dataset} (0-{num_classes - 1}"
                             f"{' or ' + ', '.join(names) if dataset == 'cifar10' else ''})")
    if len(set(out)) != len(out):
        raise UsageError(f"--classes lists a class twice: {text!r}")
    if len(out) < 2:
        raise UsageError(f"--classes needs at least 2 classes to classify, got {text!r}")
    return None if len(out) == num_classes else sorted(out)


def keep(labels: np.ndarray, idx: np.ndarray, classes: Sequence[int] | None) -> np.ndarray:
    """The indices of ``idx`` whose label is one of ``classes`` (all of them for None)."""
    return idx if classes is None else idx[np.isin(labels[idx], np.asarray(classes))]


def relabel(labels: np.ndarray, classes: Sequence[int] | None) -> np.ndarray:
    """Labels mapped to 0..K-1 in the order of ``classes``; other classes become -1."""
    if classes is None:
        return labels
    lut = np.full(int(max(labels.max(), max(classes))) + 1, -1, dtype=np.int64)
    lut[np.asarray(classes)] = np.arange(len(classes))
    return lut[labels]


def describe(classes: Sequence[int] | None, dataset: str = "cifar10") -> str:
    """``classes 5-9 (dog, frog, horse, ship, truck)`` for messages and reports."""
    if classes is None:
        return "all classes"
    names = names_of(dataset, max(classes) + 1)
    return f"classes {','.join(map(str, classes))} ({', '.join(names[c] for c in classes)})"
