"""Shared by the tests: synthetic CIFAR-like npz data, kernels and banks, and the one float64
reference of the disc step with its error helper."""
from __future__ import annotations

import math
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


def reference_step(x, disc, d_target, g_target):
    """DESIGN.md §3 written from scratch in float64: reads D's parameters and settings, never
    calls fastreg's disc_step, losses or ``disc.forward``."""
    params = [p.detach().double().requires_grad_() for p in disc.parameters()]
    xx = x.detach().double().reshape(x.shape[0], -1).requires_grad_()
    if disc.norm == "batch":
        gamma, beta, lin = params[0], params[1], params[2:]
        mu = xx.mean(0)
        var = ((xx - mu) ** 2).mean(0)
        h = gamma * (xx - mu) / torch.sqrt(var + disc.eps) + beta
    else:
        lin = params
        mu = xx.mean(1, keepdim=True)
        var = ((xx - mu) ** 2).mean(1, keepdim=True)
        h = (xx - mu) / torch.sqrt(var + disc.eps)
    for w, b in zip(lin[0:-2:2], lin[1:-2:2]):
        a = h @ w.T + b
        h = torch.where(a > 0, a, disc.slope * a)
    logits = (h @ lin[-2].T + lin[-1])[:, 0]

    def loss_fn(t, gen):
        if disc.loss == "ns":   # softplus(l) - t*l without cancellation at large |l|
            return (torch.relu(logits) - t * logits + torch.log1p(torch.exp(-logits.abs()))).mean()
        if gen:
            return -logits.mean() if t == 1 else logits.mean()
        return torch.relu(1 - logits).mean() if t == 1 else torch.relu(1 + logits).mean()

    dl = loss_fn(float(d_target), False)
    d_grads = torch.autograd.grad(dl, params, retain_graph=True)
    out = dict(logits=logits.detach(), d_loss=dl.detach(), d_grads=d_grads)
    if g_target is not None:
        gl = loss_fn(float(g_target), True)
        out["g_loss"] = gl.detach()
        out["g_grad"] = torch.autograd.grad(gl, xx)[0].reshape(x.shape)
    return out


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    """DESIGN.md §6 norm-wise relative error; NaN/Inf never passes, shapes must match
    (broadcasting would hide a wrong one)."""
    assert out.shape == ref.shape, (out.shape, ref.shape)
    out = out.detach().double().cpu()
    ref = ref.detach().double().cpu()
    if not torch.isfinite(out).all():
        return math.inf
    den = ref.norm().item()
    num = (out - ref).norm().item()
    return num if den == 0 else num / den


def assert_close(out, ref, tol, g_target):
    """Every output of a disc step within ``tol`` of ``reference_step``'s."""
    errs = {"logits": rel_err(out.logits, ref["logits"]), "d_loss": rel_err(out.d_loss, ref["d_loss"])}
    for i, (a, b) in enumerate(zip(out.d_grads, ref["d_grads"], strict=True)):
        errs[f"d_grads[{i}]"] = rel_err(a, b)
    if g_target is None:
        assert out.g_loss is None and out.g_grad is None
    else:
        errs["g_loss"] = rel_err(out.g_loss, ref["g_loss"])
        errs["g_grad"] = rel_err(out.g_grad, ref["g_grad"])
    bad = {k: v for k, v in errs.items() if not v <= tol}
    assert not bad, f"rel errors over {tol}: {bad}"


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
