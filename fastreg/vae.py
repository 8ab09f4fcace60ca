"""A learned prior over kernels: a small VAE fitted to a bank layer (DESIGN.md §13), after the
Deep Weight Prior (Atanov et al., ICLR 2019), which fits one per kernel size to source
networks' 2-D kernels and uses it to initialize a network and as a prior in training.

Here it is fitted to 2-D slices (as DWP) or to whole filters (``C_in·k·k`` numbers, the unit
that works for fastreg's other priors). The encoder and decoder are two-layer MLPs with ELU;
the decoder is Gaussian with a learned per-number log-variance. ``elbo(x)`` is a lower bound on
``log p(x)``: its negative is the penalty (``VAEPrior``), and samples from it initialize
(``sample``). Each number of a kernel is standardized by the bank's mean and std of that
number before fitting (the Jacobian is in the ELBO, so it still bounds the kernels' own
log-density); the log-density is reported per number of a kernel (nats per weight), as the
Gaussian penalty's.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import nn

from .errors import BankError
from .vae_conv import FORMAT as CONV_FORMAT, ConvKernelVAE

FORMAT = "fastreg-vae/1"
# DWP's sizes: 7x7 kernels hidden 32 / z 2, 5x5 kernels hidden 64 / z 4; whole filters get more
DEFAULTS = {7: (32, 2), 5: (64, 4), 3: (32, 2)}
MIN_KERNELS = 64   # fewer rows than this do not fit a VAE worth the name


def default_size(dim: int, kernel_size: int) -> tuple[int, int]:
    """(hidden, z_dim) for kernels of ``dim`` numbers: DWP's per size for 2-D slices; for whole
    filters 4x the hidden width (at least 128) and 8 latent dimensions."""
    if dim == kernel_size ** 2:
        return DEFAULTS.get(kernel_size, (64, 4))
    return max(128, 4 * DEFAULTS.get(kernel_size, (64, 4))[0]), 8


class KernelVAE(nn.Module):
    """q(z|x) = N(mu(x), diag σ²(x)), p(z) = N(0, I), p(x|z) = N(m(z), diag exp(logvar))."""

    def __init__(self, dim: int, hidden: int, z_dim: int) -> None:
        super().__init__()
        if min(dim, hidden, z_dim) < 1:
            raise ValueError(f"dim, hidden and z_dim must be >= 1, got {dim}, {hidden}, {z_dim}")
        self.dim, self.hidden, self.z_dim = int(dim), int(hidden), int(z_dim)
        self.enc = nn.Sequential(nn.Linear(dim, hidden), nn.ELU(), nn.Linear(hidden, hidden), nn.ELU(),
                                 nn.Linear(hidden, 2 * z_dim))
        self.dec = nn.Sequential(nn.Linear(z_dim, hidden), nn.ELU(), nn.Linear(hidden, hidden), nn.ELU(),
                                 nn.Linear(hidden, dim))
        self.dec_logvar = nn.Parameter(torch.zeros(dim))
        self.register_buffer("shift", torch.zeros(dim))    # the bank's mean and std per number:
        self.register_buffer("scale", torch.ones(dim))     # the VAE models x = (w - shift) / scale

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.enc(x).chunk(2, dim=-1)
        return mu, logvar.clamp(-12, 8)

    def elbo(self, w: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
        """Per-row ELBO of kernels ``w`` ``[B, dim]`` (in the bank's units, before
        standardization; the Jacobian of that affine map is included, so it bounds log p(w)):
        one reparametrized sample of z per row (``eps`` ``[B, z_dim]``, standard normal, or drawn)."""
        x = (w - self.shift) / self.scale
        mu, logvar = self.encode(x)
        eps = torch.randn_like(mu) if eps is None else eps
        z = mu + torch.exp(0.5 * logvar) * eps
        m = self.dec(z)
        lv = self.dec_logvar
        log_px = -0.5 * (((x - m) ** 2) * torch.exp(-lv) + lv + math.log(2 * math.pi)).sum(-1)
        kl = 0.5 * (mu ** 2 + torch.exp(logvar) - 1 - logvar).sum(-1)
        return log_px - kl - torch.log(self.scale).sum()

    @torch.no_grad()
    def sample(self, n: int, gen: torch.Generator | None = None, mean: bool = False) -> torch.Tensor:
        """``n`` kernels ``[n, dim]`` in the bank's units: z ~ N(0, I), then the decoder's mean
        (``mean``) or a draw from it. On the CPU generator ``gen`` (reproducible)."""
        dev = self.dec_logvar.device
        z = torch.randn(n, self.z_dim, generator=gen).to(dev)
        m = self.dec(z)
        if not mean:
            m = m + torch.exp(0.5 * self.dec_logvar) * torch.randn(n, self.dim, generator=gen).to(dev)
        return m * self.scale + self.shift

    def describe(self) -> dict:
        return {"dim": self.dim, "hidden": self.hidden, "z_dim": self.z_dim}


def fit(x: torch.Tensor, hidden: int, z_dim: int, epochs: int = 300, seed: int = 0, lr: float = 1e-3,
        batch_size: int = 256, checkpoint: Path | None = None, every: int = 25, progress=None) -> tuple[KernelVAE, list[float]]:
    """A ``KernelVAE`` fitted to the rows of ``x`` ``[N, dim]`` by Adam on the negative ELBO,
    deterministic given ``seed``; returns it and the mean ELBO per number of each epoch (the
    fit curve). With ``checkpoint``, the state is saved every ``every`` epochs (atomically) and
    a fit that finds one continues from it: the same numbers as an uninterrupted fit."""
    from .io_util import atomic_torch_save, safe_torch_load
    x = x.detach().float().cpu().reshape(len(x), -1)
    if len(x) < MIN_KERNELS:
        raise BankError(f"fitting a kernel VAE needs at least {MIN_KERNELS} kernels, the bank layer has {len(x)}")
    with torch.random.fork_rng(devices=[]):   # its own seed, and the caller's global RNG untouched:
        torch.manual_seed(seed)               # a run that fits (cold cache) draws what one that loads draws
        vae = KernelVAE(x.shape[1], hidden, z_dim)
    vae.shift.copy_(x.mean(0))
    vae.scale.copy_(x.std(0).clamp_min(1e-6 * float(x.std().clamp_min(1e-12))))
    opt = torch.optim.Adam(vae.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    batch_size = max(16, min(batch_size, len(x) // 8))   # a small bank still gets 8 steps an epoch
    curve: list[float] = []
    start = 0
    if checkpoint is not None and Path(checkpoint).exists():
        st = safe_torch_load(checkpoint)
        vae.load_state_dict(st["vae"])
        opt.load_state_dict(st["opt"])
        gen.set_state(st["gen"])
        curve, start = list(st["curve"]), int(st["epoch"])
    for epoch in range(start, epochs):
        perm = torch.randperm(len(x), generator=gen)
        tot = 0.0
        for s in range(0, len(x), batch_size):
            xb = x[perm[s:s + batch_size]]
            eps = torch.randn(len(xb), vae.z_dim, generator=gen)
            loss = -vae.elbo(xb, eps).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * len(xb)
        curve.append(-tot / len(x) / vae.dim)
        if progress is not None:
            progress(epoch + 1, curve[-1])
        if checkpoint is not None and ((epoch + 1) % every == 0 or epoch + 1 == epochs):
            atomic_torch_save(checkpoint, {"vae": vae.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state(),
                                           "curve": curve, "epoch": epoch + 1})
    return vae.eval(), curve


def save(vae: KernelVAE, path: str | Path, meta: Mapping[str, str]) -> None:
    """One safetensors file: the weights, with ``format``, the sizes and ``meta`` (the bank
    layers and unit it was fitted to, the fit curve) as metadata; written atomically."""
    from safetensors.torch import save as st_save
    from .io_util import atomic_write_bytes
    info = {"format": FORMAT, **{k: str(v) for k, v in vae.describe().items()}, **{k: str(v) for k, v in meta.items()}}
    atomic_write_bytes(path, st_save({k: v.contiguous() for k, v in vae.state_dict().items()}, info))


def load(path: str | Path) -> tuple[KernelVAE, dict]:
    """A saved ``KernelVAE`` (or the Deep Weight Prior's ``ConvKernelVAE``) and its metadata; a
    file that is not one, or whose tensors do not have the shapes its sizes say, is refused in
    one line (``BankError``)."""
    from .io_util import read_safetensors
    path = Path(path)
    if not path.is_file():
        raise BankError(f"{path}: no such VAE file")
    try:
        state, meta = read_safetensors(path)
    except ValueError as e:
        raise BankError(str(e)) from None
    if meta.get("format") not in (FORMAT, CONV_FORMAT):
        raise BankError(f"{path}: not a fastreg kernel VAE (format {meta.get('format')!r}, expected {FORMAT!r} "
                        f"or {CONV_FORMAT!r})")
    try:
        if meta["format"] == CONV_FORMAT:
            vae = ConvKernelVAE(int(meta["kernel_size"]), int(meta["hidden"]), int(meta["z_dim"]))
        else:
            vae = KernelVAE(int(meta["dim"]), int(meta["hidden"]), int(meta["z_dim"]))
        vae.load_state_dict(state)
    except (KeyError, ValueError, RuntimeError) as e:
        raise BankError(f"{path}: its tensors do not make a VAE of its recorded sizes ({str(e).splitlines()[0][:160]})"
                        ) from None
    return vae.eval(), meta


def layer_scale(bank, layer: str, weight: torch.Tensor, bank_map=None) -> float:
    """The factor that brings the bank kernels serving ``layer`` to the layer's own scale: its
    weights' std over the std of those bank kernels (as 2-D slices). ``VAEPrior`` divides a
    layer's kernels by it, as the inits and the Gaussian penalty scale the bank (DESIGN.md §13)."""
    src = bank.plan(layer, weight.shape, "slice", bank_map).src
    return float(weight.detach().std()) / float(bank.units(src, "slice").std())


class VAEPrior(nn.Module):
    """``weight · mean over layers of mean over kernels of −ELBO(kernel) / dim``: the negative
    lower bound on the log-density of each layer's kernels under its fitted VAE (fixed), per
    number of a kernel, with the layer's kernels first brought to the bank's scale (the bank is
    the layer's init std, as the inits and the Gaussian penalty scale it). A
    ``fastreg.terms.Regularizer``; its gradient reaches the kernels only."""

    def __init__(self, model: nn.Module, vaes: Mapping[str, KernelVAE], weight: float, units: Mapping[str, str],
                 scales: Mapping[str, float], layer_weights: str = "mean", seed: int = 0) -> None:
        super().__init__()
        from .layers import conv_layers
        if not weight >= 0:
            raise ValueError(f"prior weight must be >= 0, got {weight}")
        convs = conv_layers(model)
        self.layers = list(vaes)
        self.weight, self.units, self.scales, self.layer_weights = float(weight), dict(units), dict(scales), layer_weights
        self.vaes = nn.ModuleDict({k.replace(".", "__"): v for k, v in vaes.items()})
        for v in self.vaes.parameters():
            v.requires_grad_(False)
        self.convs = {n: convs[n] for n in self.layers}
        self.gen = torch.Generator().manual_seed(seed)
        self._stats: dict[str, torch.Tensor] = {}

    def _rows(self, name: str) -> torch.Tensor:
        w = self.convs[name].weight
        return w.reshape(w.shape[0], -1) if self.units[name] == "filter" else w.reshape(-1, w.shape[-2] * w.shape[-1])

    def neg_elbo_per_weight(self, name: str) -> torch.Tensor:
        """−ELBO per number of the layer's kernels (mean over kernels), differentiable."""
        vae = self.vaes[name.replace(".", "__")]
        x = self._rows(name).float() / self.scales[name]
        vae.to(x.device)
        eps = torch.randn(len(x), vae.z_dim, generator=self.gen).to(x.device)
        return -(vae.elbo(x, eps).mean() / vae.dim)

    def generator_loss(self) -> torch.Tensor:
        vals = [self.neg_elbo_per_weight(n) for n in self.layers]
        for n, v in zip(self.layers, vals):
            self._stats[n] = self._stats.get(n, 0) + torch.stack([v.detach(), torch.ones_like(v)])
        total = sum(vals)
        return self.weight * (total / len(vals) if self.layer_weights == "mean" else total)

    def discriminator_step(self) -> None:
        """Nothing to train: the VAE is fixed."""

    def pop_stats(self) -> dict[str, float]:
        out = {f"vae_nelbo/{n}": float(v[0] / v[1]) for n, v in self._stats.items()}
        self._stats = {}
        return out

    def checkpoint_state(self) -> dict:
        return {"gen": self.gen.get_state()}

    def load_checkpoint_state(self, state: dict) -> None:
        self.gen.set_state(state["gen"])

    def trained_parameters(self) -> list[nn.Parameter]:
        return []

    def distribute(self, dist) -> "VAEPrior":
        return self


def vae_for(bank, layer: str, weight_shape, unit: str, cache: str | Path | None = None, bank_map=None,
            epochs: int = 300, seed: int = 0, progress=None) -> tuple[KernelVAE, str, Path | None]:
    """The VAE of the bank kernels that serve classifier layer ``layer`` in ``unit``
    (``KernelBank.plan``: a depthwise layer's filters are slices; whole filters that do not fit
    fall back to slices): loaded from ``cache`` when fitted before to the same kernels, sizes,
    epochs and seed, else fitted (resumable) and saved there; ``cache=None`` fits it in memory.
    Returns (vae, the unit it models, its file or None)."""
    import hashlib
    import time
    draw = bank.plan(layer, weight_shape, unit, bank_map)
    x = bank.units(draw.src, draw.bank_unit).cpu()
    x = x.reshape(len(x), -1)
    hidden, z = default_size(x.shape[1], int(weight_shape[-1]))
    if cache is None:
        return fit(x, hidden, z, epochs, seed, progress=progress)[0], draw.unit, None
    h = hashlib.sha1(x.numpy().tobytes())
    h.update(json.dumps([hidden, z, epochs, seed]).encode())
    path = Path(cache) / f"vae-{draw.bank_unit}-{x.shape[1]}-{h.hexdigest()[:12]}.safetensors"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        with torch.random.fork_rng(devices=[]):   # a run that fits draws afterwards what one that loads draws
            vae, curve = fit(x, hidden, z, epochs, seed, checkpoint=path.with_suffix(".fit.pt"), progress=progress)
            save(vae, path, {"bank_layers": json.dumps(list(draw.src)), "unit": draw.bank_unit, "epochs": epochs,
                             "seed": seed, "kernels": len(x), "curve": json.dumps([round(c, 6) for c in curve]),
                             "fit_seconds": round(time.time() - t0, 1)})
            path.with_suffix(".fit.pt").unlink(missing_ok=True)
            _picture(load(path)[0], x, int(weight_shape[-1]), draw.bank_unit, path.with_suffix(".png"))
    vae, _ = load(path)
    return vae, draw.unit, path


def _picture(vae: KernelVAE, x: torch.Tensor, k: int, unit: str, path: Path) -> None:
    """Bank kernels beside the VAE's samples (decoder means, and full draws), as filters."""
    from .io_util import atomic_write_bytes
    from .viz import panels_png
    gen = torch.Generator().manual_seed(0)
    c = x.shape[1] // (k * k)
    shape = (-1, c, k, k) if unit == "filter" else (-1, k, k)
    idx = torch.linspace(0, len(x) - 1, min(64, len(x))).round().long()
    panels = [("bank", x[idx].reshape(shape)), ("VAE: decoder means", vae.sample(64, gen, mean=True).reshape(shape)),
              ("VAE: full draws", vae.sample(64, gen).reshape(shape))]
    atomic_write_bytes(path, panels_png(panels, f"kernel VAE ({unit}s, {x.shape[1]} numbers, z {vae.z_dim})"))


def curve_of(meta: Mapping[str, str]) -> list[float]:
    """The fit curve a saved VAE records (mean ELBO per number, by epoch)."""
    return json.loads(meta.get("curve", "[]"))


def layers_of(meta: Mapping[str, str]) -> Sequence[str]:
    return json.loads(meta.get("bank_layers", "[]"))


def vae_prior(model: nn.Module, bank, layers: str | Sequence[str], weight: float, unit: str = "filter",
              epochs: int = 300, cache: str | Path | None = None, bank_map=None, layer_weights: str = "mean",
              seed: int = 0) -> "VAEPrior":
    """The learned prior in one call: for each of ``layers`` (names or a selector), the VAE of
    the bank kernels that serve it in ``unit`` (``vae_for``; fitted, or found in ``cache``) and
    the scale that brings them to the layer's own (``layer_scale``), as ``VAEPrior``:
    ``loss += prior.generator_loss()``."""
    from .layers import conv_layers, select_layers
    if isinstance(layers, str):
        layers = select_layers(model, layers, bank.kernel_sizes(), bank_map or {}, "VAE prior")
    convs = conv_layers(model)
    vaes, units, scales = {}, {}, {}
    for n in layers:
        w = convs[n].weight
        vaes[n], units[n], _ = vae_for(bank, n, w.shape, unit, cache, bank_map, epochs, seed=0)
        scales[n] = layer_scale(bank, n, w, bank_map)
    return VAEPrior(model, vaes, weight, units, scales, layer_weights, seed)
