"""Shared by the tests: synthetic CIFAR-like npz data, smooth kernels and banks. The disc
step's float64 reference is ``tests/ops/reference.py``."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def make_npz_data(root: Path, per_class_train: int = 50, per_class_test: int = 10, classes: int = 10,
                  seed: int = 0) -> Path:
    """CIFAR-10-layout npz files whose classes are learnable (class-coloured blobs + noise)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:32, :32]
    for split, per in (("train", per_class_train), ("test", per_class_test)):
        imgs, labels = [], []
        for c in range(classes):
            colour = np.array([(c * 37) % 255, (c * 91) % 255, (c * 151) % 255], dtype=np.float32)
            for _ in range(per):
                cy, cx = rng.integers(8, 24, size=2)
                blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (3 + c % 4) ** 2))
                img = 60 + blob[..., None] * colour + rng.normal(0, 20, (32, 32, 3))
                imgs.append(np.clip(img, 0, 255).astype(np.uint8))
                labels.append(c)
        np.savez_compressed(root / f"cifar10_{split}.npz", images=np.stack(imgs),
                            labels=np.array(labels, dtype=np.int64))
    return root


def smooth_kernels(n: int, k: int, seed: int = 0) -> torch.Tensor:
    """Structured 'good' kernels: oriented Gabor-like edges and blobs (unlike noise)."""
    g = torch.Generator().manual_seed(seed)
    r = torch.arange(k, dtype=torch.float32) - (k - 1) / 2
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    th = torch.rand(n, generator=g) * 3.1416
    f = 0.3 + torch.rand(n, generator=g) * 0.5
    s = 1.0 + torch.rand(n, generator=g) * k / 4
    u = xx[None] * torch.cos(th)[:, None, None] + yy[None] * torch.sin(th)[:, None, None]
    env = torch.exp(-(xx[None] ** 2 + yy[None] ** 2) / (2 * s[:, None, None] ** 2))
    return (env * torch.cos(f[:, None, None] * u * 3.1416)).contiguous()


def make_bank_file(path: Path, n7: int = 500, n5: int = 800) -> Path:
    from fastreg.bank import KernelBank
    KernelBank({"conv1": smooth_kernels(n7, 7), "conv2": smooth_kernels(n5, 5, 1)},
               {"dataset": "synthetic"}).save(path)
    return path
