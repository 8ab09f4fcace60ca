"""Small fixtures shared by the tests: synthetic CIFAR-like npz data, float64 D reference."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


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


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    """Norm-wise relative error of SPEC §6 (NaN/Inf never pass)."""
    out = out.detach().double().cpu()
    ref = ref.detach().double().cpu()
    if not torch.isfinite(out).all():
        return float("inf")
    den = ref.norm()
    return float((out - ref).norm() / (den if den > 0 else 1.0))


def reference_step(x, params, norm, loss, slope, eps, d_target, g_target):
    """Independent float64 autograd reference of SPEC §3 (does not call fastreg)."""
    x = x.detach().double().reshape(x.shape[0], -1).requires_grad_(True)
    ps = [p.detach().double().requires_grad_(True) for p in params]
    if norm == "batch":
        gamma, beta, lin = ps[0], ps[1], ps[2:]
        mu = x.mean(0)
        var = ((x - mu) ** 2).mean(0)
        h = gamma * (x - mu) / torch.sqrt(var + eps) + beta
    else:
        lin = ps
        mu = x.mean(1, keepdim=True)
        var = ((x - mu) ** 2).mean(1, keepdim=True)
        h = (x - mu) / torch.sqrt(var + eps)
    for i in range(0, len(lin) - 2, 2):
        h = F.leaky_relu(h @ lin[i].T + lin[i + 1], slope)
    logits = (h @ lin[-2].T + lin[-1])[:, 0]

    def L(t, gen):
        if loss == "ns":
            return (F.softplus(logits) - t * logits).mean()
        if gen:
            return -logits.mean()
        return F.relu(1 - logits).mean() if t == 1 else F.relu(1 + logits).mean()

    dl = L(d_target, False)
    d_grads = torch.autograd.grad(dl, ps, retain_graph=True)
    out = {"logits": logits.detach(), "d_loss": dl.detach(), "d_grads": d_grads}
    if g_target is not None:
        gl = L(g_target, True)
        out["g_loss"] = gl.detach()
        out["g_grad"] = torch.autograd.grad(gl, x)[0]
    return out


def randomize_disc(disc, seed: int = 0) -> None:
    """Non-default D parameters (gamma/beta too), so nothing passes by symmetry."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in disc.parameters():
            scale = 0.5 if p.dim() == 1 else 1.0 / p.shape[-1] ** 0.5
            p.copy_(torch.randn(p.shape, generator=g) * scale)
        if disc.norm == "batch":
            disc.gamma.add_(1.0)


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
