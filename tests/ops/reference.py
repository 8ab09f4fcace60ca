"""The disc step's float64 reference (DESIGN.md §3, §6), written from scratch: it reads D's
parameters and settings, never calls fastreg's ``disc_step``, its losses or ``disc.forward``.
Every fast path and the eager one are compared with it by the one error metric of DESIGN.md §6
(``fastreg.ops.tolerance.rel_err``)."""
from __future__ import annotations

import torch

from fastreg.ops.tolerance import rel_err


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
