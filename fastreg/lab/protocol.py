"""A run's protocol: what its test accuracy is measured on (DESIGN.md §11). Two runs'
accuracies are comparable only under one protocol, so the report analyses each on its own."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

from .classes import CIFAR10_CLASSES

if TYPE_CHECKING:
    from .data import Split


PROTOCOL = ("dataset", "classes", "image_size", "eval_split")   # what makes two runs' accuracies comparable
DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "imagefolder": "image folder", "mnist": "MNIST"}
SPLITS = {"rest": "the digits of its pool not drawn for training"}   # a split named by what it holds


def protocol(cfg: dict, test: "Split | None" = None) -> dict:
    """What a run's test accuracy is measured on (``PROTOCOL``, plus ``eval_images`` where
    known): the dataset, its classes by name, the image size and the split. A run records it
    (config.json ``protocol``, from its ``test`` set); a run that did not is read from its
    settings: CIFAR-10's test set of its classes (1000 images a class), an image folder's
    classes and split unknown."""
    if isinstance(cfg.get("protocol"), dict):
        rec = cfg["protocol"]
        return {**{k: rec.get(k) for k in PROTOCOL}, "eval_images": rec.get("eval_images")}
    dataset = cfg.get("dataset", "cifar10")
    size = {"imagefolder": int(cfg.get("image_size", 32)), "mnist": 28}.get(dataset, 32)   # CIFAR: 32x32 as stored
    if test is not None:
        return {"dataset": dataset, "classes": list(test.classes), "image_size": size, "eval_split": test.split,
                "eval_images": len(test)}
    if dataset == "cifar10":
        names = [CIFAR10_CLASSES[c] for c in cfg["classes"]] if cfg.get("classes") else list(CIFAR10_CLASSES)
        return {"dataset": dataset, "classes": names, "image_size": 32, "eval_split": "test",
                "eval_images": 1000 * len(names)}
    return {"dataset": dataset, "classes": None, "image_size": size, "eval_split": None, "eval_images": None}


def protocol_key(p: dict) -> str:
    """Two runs are comparable when these are equal."""
    return json.dumps([p.get(k) for k in PROTOCOL])


def describe_protocol(p: dict) -> str:
    """``CIFAR-10, 10 classes, 32×32 images, accuracy on its test split (10000 images)``."""
    name = DATASET_NAMES.get(p["dataset"], p["dataset"])
    cls = p["classes"]
    if cls is None:
        what = "classes not recorded"
    elif p["dataset"] == "cifar10" and len(cls) == 10:
        what = "all 10 classes"
    else:
        what = f"{len(cls)} classes ({', '.join(cls[:6])}{', …' if len(cls) > 6 else ''})"
    split = (SPLITS.get(p["eval_split"], f"its {p['eval_split']} split") if p["eval_split"]
             else "its held-out images (split not recorded)")
    count = f" ({p['eval_images']} images)" if p.get("eval_images") else ""
    return f"{name}, {what}, {p['image_size']}×{p['image_size']} images, accuracy on {split}{count}"
