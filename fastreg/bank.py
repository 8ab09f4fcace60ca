"""``KernelBank``: good 2-D kernels by source layer, stored as safetensors (DESIGN.md §4).

Rows come one whole filter at a time (its ``C_in`` slices consecutive), and the bank knows
how many rows make a filter, so whole filters can be drawn as well as slices.
Loading never unpickles: safetensors for banks, ``np.load(allow_pickle=False)`` for
``.npy`` imports. Every load is validated (format, shape, dtype, finiteness).
"""
from __future__ import annotations

import difflib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .errors import BankError

FORMAT = "fastreg-bank/1"
ASSETS = Path(__file__).parent / "assets"
# the banks shipped with fastreg, by the name ``--bank`` takes: file, what it holds (docs/DESIGN.md §4.1);
# the help texts and the errors that list them read this one table
PACKAGED_BANKS = {
    "dwpnet_e24": ("bank_cifar10_dwpnet_e24.safetensors", "7x7, 5x5 of converged, 24-epoch DWPNets"),
    "dwpnet_e4": ("bank_cifar10_dwpnet_e4.safetensors", "7x7, 5x5 of the first, 4-epoch DWPNets"),
    "resnet20": ("bank_cifar10_resnet20.safetensors", "3x3 of ResNet-20s, layers resnet20.*"),
    # class-disjoint protocol (DESIGN.md §12): source models trained on CIFAR-10 classes 0-4 only
    "dwpnet_c04": ("bank_cifar10c04_dwpnet.safetensors", "7x7, 5x5 of converged DWPNets of classes 0-4"),
    "resnet20_c04": ("bank_cifar10c04_resnet20.safetensors", "3x3 of ResNet-20s of classes 0-4"),
}
PACKAGED = {name: ASSETS / file for name, (file, _) in PACKAGED_BANKS.items()}


def packaged_listing() -> str:
    """The packaged banks in one line, each with what it holds (for help texts)."""
    return ", ".join(f"{name} ({about})" for name, (_, about) in PACKAGED_BANKS.items())


DEFAULT_BANK_NAME = "dwpnet_e24"
DEFAULT_BANK = PACKAGED[DEFAULT_BANK_NAME]
RESNET_BANK = PACKAGED["resnet20"]


def packaged_bank() -> "KernelBank":
    """The default banks shipped with fastreg in one: 7×7 and 5×5 kernels of converged
    DWPNets, 3×3 kernels of ResNet-20. A layer of any of those sizes finds kernels of its size."""
    return KernelBank.merge([KernelBank.load(p) for p in (DEFAULT_BANK, RESNET_BANK)])


def bank_file(name_or_path: str | Path) -> Path:
    """The path as given when it is a file, else a packaged bank's file by its name (``dwpnet_e4``),
    else the path as given. The one place a bank argument is resolved."""
    path = Path(name_or_path)
    return path if path.is_file() else PACKAGED.get(str(name_or_path), path)


def _validate_layer(name: str, t: torch.Tensor, where: str) -> torch.Tensor:
    if not t.is_floating_point():
        raise BankError(f"{where}: layer {name!r} has non-float dtype {t.dtype}")
    if t.dim() != 3 or t.shape[1] != t.shape[2]:
        raise BankError(f"{where}: layer {name!r} must be [N, k, k], got {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise BankError(f"{where}: layer {name!r} is empty")
    if not torch.isfinite(t).all():
        raise BankError(f"{where}: layer {name!r} contains NaN or Inf")
    return t.float().contiguous()


def _names(names: Sequence[str], most: int = 3) -> str:
    """Bank layer names for a message: all of a few, else the count and the first."""
    names = list(names)
    return "+".join(names) if len(names) <= most else f"{len(names)} layers ({names[0]}, …)"


@dataclass(frozen=True)
class Draw:
    """How one classifier layer draws from a bank (``KernelBank.plan``): the bank layers
    serving it, the unit the layer is handled in (``filter`` or ``slice``), the unit read from
    the bank (a depthwise layer's 1-channel filters are bank slices), and, when whole filters
    did not fit and slices are drawn instead, a note naming the layer and the channel counts."""
    src: tuple[str, ...]
    unit: str
    bank_unit: str
    fallback: str = ""


def fallback_note(notes: Sequence[str], what: str) -> str:
    """One line for every layer of a call that wanted whole filters and draws slices."""
    return (f"{what}: no bank filters with these layers' input channels, drawing 2-D slices for "
            f"{len(notes)} layer(s): {'; '.join(notes[:4])}{' …' if len(notes) > 4 else ''}\n")


class KernelBank:
    """Layer name → ``[N, k, k]`` float32 kernels, plus string metadata."""

    def __init__(self, layers: Mapping[str, torch.Tensor], meta: Mapping[str, str] | None = None):
        if not layers:
            raise BankError("a bank needs at least one layer")
        squeeze = lambda t: t[:, 0] if t.dim() == 4 and t.shape[1] == 1 else t   # noqa: E731  (DWP's [N, 1, k, k])
        self.layers = {n: _validate_layer(n, squeeze(torch.as_tensor(t)), "bank") for n, t in layers.items()}
        self.meta = {"format": FORMAT, **{k: str(v) for k, v in (meta or {}).items()}}

    # ---- building -------------------------------------------------------------
    @classmethod
    def collect(cls, models: Iterable[nn.Module], layer_names: Iterable[str],
                meta: Mapping[str, str] | None = None) -> "KernelBank":
        """All ``O·I`` 2-D kernels of the named conv layers of every model."""
        names = list(layer_names)
        parts: dict[str, list[torch.Tensor]] = {n: [] for n in names}
        rows: dict[str, int] = {}
        for m in models:
            mods = dict(m.named_modules())
            for n in names:
                if n not in mods or not isinstance(mods[n], nn.Conv2d):
                    raise BankError(f"model has no conv layer named {n!r}")
                w = mods[n].weight.detach().float().cpu()
                if rows.setdefault(n, w.shape[1]) != w.shape[1]:
                    raise BankError(f"layer {n!r} has {w.shape[1]} input channels in one model and "
                                    f"{rows[n]} in another")
                parts[n].append(w.reshape(-1, w.shape[-2], w.shape[-1]))
        per_model = {n: len(p[0]) for n, p in parts.items()}   # model boundaries: model m is rows m*R..(m+1)*R
        return cls({n: torch.cat(p) for n, p in parts.items()},
                   {**(meta or {}), "filter_rows": json.dumps(rows), "rows_per_model": json.dumps(per_model)})

    @classmethod
    def from_npy(cls, path: str | Path, layer: str | None = None) -> "KernelBank":
        """Import a DWP-layout ``.npy`` (``[N, 1, k, k]`` or ``[N, k, k]``) as a one-layer bank,
        its layer named ``layer``, else after the file (``conv7x7_train``), so that two imports
        of one kernel size merge."""
        path = Path(path)
        try:
            a = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise BankError(f"{path}: cannot read .npy ({str(e).splitlines()[0]})") from None
        if not isinstance(a, np.ndarray):   # an .npz archive under another name
            a.close()
            raise BankError(f"{path}: an .npz archive, not a single .npy array")
        if a.ndim == 4 and a.shape[1] == 1:
            a = a[:, 0]
        if a.ndim != 3:
            raise BankError(f"{path}: expected [N, 1, k, k] or [N, k, k], got {a.shape}")
        if not np.issubdtype(a.dtype, np.floating):
            raise BankError(f"{path}: non-float dtype {a.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
        name = layer or path.stem
        return cls({name: _validate_layer(name, t, str(path))},
                   {"source": f"imported from {path.name}", "created": time.strftime("%Y-%m-%dT%H:%M:%S")})

    def subsample(self, max_kernels: int | None) -> "KernelBank":
        """At most ``max_kernels`` rows per layer, as whole filters evenly spaced over the
        layer (so a filter's slices stay together, and every source model keeps a share)."""
        if not max_kernels:
            return self
        layers = {}
        for n, t in self.layers.items():
            f = self.filters(n)
            if len(t) > max_kernels:
                f = f[torch.linspace(0, len(f) - 1, max(1, max_kernels // f.shape[1])).round().long()]
            layers[n] = f.reshape(-1, t.shape[-2], t.shape[-1])
        meta = {k: v for k, v in self.meta.items() if k != "rows_per_model"}   # boundaries no longer hold
        return KernelBank(layers, {**meta, "max_kernels": str(max_kernels)})

    def prefixed(self, prefix: str) -> "KernelBank":
        """The same bank with ``prefix`` before every layer name: a packaged bank's layers then
        match no user layer by name, and every layer of a kernel size draws from their pool."""
        if not prefix:
            return self
        rows = {prefix + n: self.filter_rows(n) for n in self.layers}
        meta = {**self.meta, "filter_rows": json.dumps(rows), "prefix": prefix}
        if "rows_per_model" in meta:
            meta["rows_per_model"] = json.dumps({prefix + n: r for n, r in json.loads(meta["rows_per_model"]).items()})
        return KernelBank({prefix + n: t for n, t in self.layers.items()}, meta)

    @classmethod
    def merge(cls, banks: Sequence["KernelBank"]) -> "KernelBank":
        """One bank holding every layer of ``banks`` (layer names must be distinct); the
        metadata keeps each bank's, and every layer's rows per filter."""
        if len(banks) == 1:
            return banks[0]
        layers: dict[str, torch.Tensor] = {}
        for b in banks:
            for n, t in b.layers.items():
                if n in layers:
                    raise BankError(f"cannot merge banks that both have a layer {n!r}")
                layers[n] = t
        rows = {n: b.filter_rows(n) for b in banks for n in b.layers}
        return cls(layers, {"merged": json.dumps([b.meta for b in banks], sort_keys=True),
                            "filter_rows": json.dumps(rows)})

    # ---- files ------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write atomically as one ``.safetensors`` file."""
        from safetensors.torch import save
        from .io_util import atomic_write_bytes
        meta = {k: str(v) for k, v in self.meta.items()}
        atomic_write_bytes(path, save({n: t.cpu().contiguous() for n, t in self.layers.items()}, meta))

    @classmethod
    def load(cls, path: str | Path) -> "KernelBank":
        """Load and validate a bank (``.safetensors``, or ``.npy`` import), by path or by a
        packaged bank's name (``dwpnet_e24``) when no file of that name exists."""
        path = bank_file(path)
        if not path.is_file():
            hint = ""
            if not path.suffix and len(path.parts) == 1:     # meant as a packaged bank's name
                close = difflib.get_close_matches(str(path), list(PACKAGED), n=1)
                hint = (f", and no packaged bank has that name (packaged: {', '.join(PACKAGED)}"
                        f"{'; did you mean ' + close[0] + '?' if close else ''})")
            raise BankError(f"{path}: no such bank file{hint}")
        if path.suffix == ".npy":
            return cls.from_npy(path)
        from safetensors import SafetensorError, safe_open
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = dict(f.metadata() or {})
                layers = {n: f.get_tensor(n) for n in f.keys()}
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise BankError(f"{path}: not a readable safetensors bank ({str(e).splitlines()[0][:200]})") from None
        if meta.get("format") != FORMAT:
            raise BankError(f"{path}: unknown bank format {meta.get('format')!r} (expected {FORMAT!r})")
        if not layers:
            raise BankError(f"{path}: bank has no layers")
        for n, t in layers.items():
            _validate_layer(n, t, str(path))
        return cls(layers, meta)

    # ---- use ----------------------------------------------------------------------
    def to(self, device: torch.device | str) -> "KernelBank":
        """Move every layer to ``device`` once (sampling then never leaves it)."""
        self.layers = {n: t.to(device) for n, t in self.layers.items()}
        return self

    def kernel_size(self, name: str) -> int:
        return int(self.layers[name].shape[-1])

    def filter_rows(self, name: str) -> int:
        """Consecutive rows that are one whole filter (the source layer's input channels):
        from the ``filter_rows`` metadata, else from the model the recorded ``architecture``
        names (``models.input_channels``), else 1 (an imported bank of loose kernels)."""
        if "filter_rows" in self.meta:
            rows = json.loads(self.meta["filter_rows"]).get(name, 1)
        else:
            from .models import input_channels
            rows = input_channels(self.meta.get("architecture", ""), name) or 1
        return max(1, int(rows))

    def filters(self, name: str) -> torch.Tensor:
        """Whole filters of a layer, ``[F, C_in, k, k]`` (a view; ``C_in = filter_rows``)."""
        t, rows = self.layers[name], self.filter_rows(name)
        if len(t) % rows:
            raise BankError(f"bank layer {name!r}: {len(t)} rows are not whole filters of {rows}")
        return t.view(-1, rows, t.shape[-2], t.shape[-1])

    def rows_of(self, names: str | Sequence[str]) -> int | None:
        """Rows per whole filter shared by these layers; None when they differ (then only
        2-D slices can be drawn from them together)."""
        rows = {self.filter_rows(n) for n in ([names] if isinstance(names, str) else names)}
        return rows.pop() if len(rows) == 1 else None

    def units(self, names: str | Sequence[str], unit: str) -> torch.Tensor:
        """One or several (pooled) layers as ``[N, k, k]`` slices (``unit="slice"``) or
        ``[F, C_in, k*k]`` whole filters (``unit="filter"``): 3-D either way, so
        ``sample_kernels`` draws either."""
        names = [names] if isinstance(names, str) else list(names)
        if unit == "slice":
            return self.layers[names[0]] if len(names) == 1 else torch.cat([self.layers[n] for n in names])
        if unit != "filter":
            raise ValueError(f"unit must be slice or filter, got {unit!r}")
        if self.rows_of(names) is None:
            raise BankError(f"bank layers {_names(names)} have filters of different channel counts: "
                            f"pool them as 2-D slices")
        fs = [self.filters(n) for n in names]
        f = fs[0] if len(fs) == 1 else torch.cat(fs)
        return f.reshape(f.shape[0], f.shape[1], -1)

    def gaussian(self, names: str | Sequence[str], unit: str, shrink: float):
        """The Gaussian fitted to these layers' slices or whole filters (``fastreg.gaussian``),
        fitted once per (layers, unit, shrink) and kept with the bank."""
        from .gaussian import fit_gaussian
        names = (names,) if isinstance(names, str) else tuple(names)
        key = (names, unit, float(shrink))
        cache = self.__dict__.setdefault("_gaussians", {})
        if key not in cache:
            u = self.units(names, unit)
            cache[key] = fit_gaussian(u.reshape(len(u), -1), shrink,
                                      f"bank {'+'.join(names)} {'filters' if unit == 'filter' else 'kernels'}")
        return cache[key]

    def source(self, name: str, kernel_size: int,
               bank_map: Mapping[str, Sequence[str]] | None = None,
               channels: int | None = None) -> tuple[str, ...]:
        """The bank layers serving classifier layer ``name``: its ``bank_map`` entry, else the
        same-named layer of that kernel size, else every layer of its kernel size (pooled).
        ``channels`` (whole filters are drawn): a pool narrows to its layers whose filters have
        that many input channels, when there are any."""
        if bank_map and name in bank_map:
            names = tuple(bank_map[name])
            missing = [n for n in names if n not in self.layers]
            if missing:
                raise BankError(f"bank map: no bank layer {missing[0]!r}; the bank has {self._sizes()}")
        elif name in self.layers and self.kernel_size(name) == kernel_size:
            names = (name,)
        else:
            names = tuple(n for n in self.layers if self.kernel_size(n) == kernel_size)
            if not names:
                raise BankError(f"bank has no {kernel_size}x{kernel_size} kernels for layer {name!r} "
                                f"(it has {self._size_list()})")
            if channels is not None and channels > 1:    # a 1-channel filter is any 2-D kernel
                names = tuple(n for n in names if self.filter_rows(n) == channels) or names
        bad = [n for n in names if self.kernel_size(n) != kernel_size]
        if bad:
            raise BankError(f"bank layer {bad[0]!r} has {self.kernel_size(bad[0])}x{self.kernel_size(bad[0])} "
                            f"kernels, the classifier layer {name!r} has {kernel_size}x{kernel_size}")
        return names

    def plan(self, layer: str, weight_shape: Sequence[int], unit: str,
             bank_map: Mapping[str, Sequence[str]] | None = None) -> "Draw":
        """How classifier layer ``layer`` (conv weight ``[O, C, k, k]``, ``C`` inputs per group)
        draws from this bank in ``unit`` (DESIGN.md §4): whole filters of ``C`` channels from
        bank layers whose filters have ``C`` rows; a depthwise filter (``C = 1``) is one 2-D
        kernel, drawn from every bank kernel of its size; otherwise 2-D slices, with a note."""
        if unit not in ("slice", "filter"):
            raise ValueError(f"unit must be slice or filter, got {unit!r}")
        k, c = int(weight_shape[-1]), int(weight_shape[1])
        src = self.source(layer, k, bank_map, c if unit == "filter" else None)
        if unit == "slice":
            return Draw(src, "slice", "slice")
        if c == 1:
            return Draw(src, "filter", "slice")
        rows = self.rows_of(src)
        if rows == c:
            return Draw(src, "filter", "filter")
        have = f"{rows}" if rows is not None else "/".join(str(r) for r in sorted({self.filter_rows(n) for n in src}))
        return Draw(src, "slice", "slice", f"{layer} ({c} inputs per filter; bank {_names(src)}: {have})")

    def kernel_sizes(self) -> list[int]:
        """The kernel sizes the bank holds, ascending."""
        return sorted({self.kernel_size(n) for n in self.layers})

    def _size_list(self) -> str:
        return ", ".join(f"{k}x{k}" for k in self.kernel_sizes())

    def _sizes(self, most: int = 6) -> str:
        names = [f"{n}: {self.kernel_size(n)}x{self.kernel_size(n)}" for n in self.layers]
        return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")

    def info(self) -> dict:
        return {"layers": {n: list(t.shape) for n, t in self.layers.items()}, "meta": self.meta}

    def __repr__(self) -> str:
        return f"KernelBank({json.dumps(self.info()['layers'])})"
