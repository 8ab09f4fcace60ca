"""Filter pictures: grids of kernels people would rather look at than read about."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch


def grid(tiles: np.ndarray, ncol: int, pad: int = 1, fill: float = 1.0) -> np.ndarray:
    n, h, w = tiles.shape[:3]
    c = tiles.shape[3] if tiles.ndim == 4 else None
    nrow = (n + ncol - 1) // ncol
    shape = (nrow * (h + pad) + pad, ncol * (w + pad) + pad) + ((c,) if c else ())
    out = np.full(shape, fill, dtype=np.float32)
    for i in range(n):
        r, q = divmod(i, ncol)
        out[pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = tiles[i]
    return out


def kernel_tiles(w: torch.Tensor, max_tiles: int = 64, rgb: bool | None = None) -> tuple[np.ndarray, bool]:
    """Per-filter normalized tiles: RGB for ``[O, 3, k, k]`` conv weights, gray otherwise."""
    w = w.detach().float().cpu()
    if rgb is None:
        rgb = w.dim() == 4 and w.shape[1] == 3
    if rgb:
        t = w[:max_tiles].permute(0, 2, 3, 1).numpy()                     # [n, k, k, 3]
        m = np.abs(t).reshape(len(t), -1).max(1).reshape(-1, 1, 1, 1) + 1e-8
        return 0.5 + 0.5 * t / m, True
    t = w.reshape(-1, w.shape[-2], w.shape[-1])[:max_tiles].numpy()
    m = np.abs(t).reshape(len(t), -1).max(1).reshape(-1, 1, 1) + 1e-8
    return t / m, False


def save_filter_grid(w: torch.Tensor, path: str | Path, title: str = "", max_tiles: int = 64) -> None:
    """PNG grid of a conv weight ``[O, I, k, k]`` or kernels ``[N, k, k]`` (written atomically)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from .io_util import atomic_write_bytes
    tiles, rgb = kernel_tiles(w, max_tiles)
    ncol = int(np.ceil(np.sqrt(len(tiles))))
    img = grid(tiles, ncol, fill=1.0 if rgb else 0.0)
    fig, ax = plt.subplots(figsize=(4, 4.3), dpi=120)
    if rgb:
        ax.imshow(np.clip(img, 0, 1), interpolation="nearest")
    else:
        ax.imshow(img, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def panels_png(panels: list[tuple[str, torch.Tensor]], title: str = "", max_tiles: int = 64) -> bytes:
    """PNG of filter grids side by side, one titled panel per weight ``[O, I, k, k]`` (RGB
    where ``I`` is 3) or kernels ``[N, k, k]``: a bank sample beside a run's filters."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6), squeeze=False)
    for ax, (name, w) in zip(axes[0], panels):
        tiles, rgb = kernel_tiles(w, max_tiles)
        img = grid(tiles, int(np.ceil(np.sqrt(len(tiles)))), fill=1.0 if rgb else 0.0)
        ax.imshow(np.clip(img, 0, 1) if rgb else img, cmap=None if rgb else "RdBu_r", vmin=-1, vmax=1,
                  interpolation="nearest")
        ax.set_title(name, fontsize=8)
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", dpi=110)
    plt.close(fig)
    return buf.getvalue()
