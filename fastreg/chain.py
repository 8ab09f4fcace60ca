"""Priors for a whole network (DESIGN.md §12): coherent *chain* init and fine-tuning from one
source network, and the L2-SP penalty toward the start.

A layer-L+1 filter only means something next to the layer-L filters it was trained with: whole
filters drawn independently for deeper layers from a pool of other models are no better than
random ones. A chain keeps the correspondence: every layer of the chain comes from one source
network (``sources[seed % len(sources)]``), input channels matching the previous layer's
output channels, residual additions included.

Widths. A dimension of size ``c`` taken from a source dimension of size ``C``: ``c <= C`` keeps
the ``c`` evenly spaced indices ``floor(i * C / c)`` (Weight Selection's uniform selection,
Xu et al., ICLR 2024), the same indices wherever a dimension of size ``C`` appears, so the
channels a residual stage adds together stay the same channels; ``c > C`` copies the source
into the first ``C`` positions and leaves the rest at the target's own init.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import nn

from .errors import UsageError
from .layers import conv_layers, select_layers, unwrap

NORMS = (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d)
ASSETS = Path(__file__).parent / "assets"
# source networks shipped with fastreg, by the name --sources takes (DESIGN.md §12)
PACKAGED_SOURCES = {
    "resnet20_c04": ASSETS / "sources_cifar10c04_resnet20.safetensors",  # 5 ResNet-20s, classes 0-4 (fp16)
}


def sources_file(name_or_path: str | Path) -> Path:
    """A packaged source set's file by its name (or a packaged bank's: its convs, per model),
    else the path as given."""
    from .bank import PACKAGED
    return PACKAGED_SOURCES.get(str(name_or_path)) or PACKAGED.get(str(name_or_path)) or Path(name_or_path)


def take(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """``src`` fitted to ``dst``'s shape dimension by dimension (see the module docstring);
    positions the source cannot fill keep ``dst``'s values. Same number of dimensions needed."""
    if src.dim() != dst.dim():
        raise ValueError(f"cannot fit a {tuple(src.shape)} tensor to {tuple(dst.shape)}")
    out = src.detach().to(dst.dtype)
    for d, (s, t) in enumerate(zip(src.shape, dst.shape)):
        if s > t:
            out = out.index_select(d, (torch.arange(t) * s // t).to(out.device))
    if tuple(out.shape) == tuple(dst.shape):
        return out.to(dst.device)
    full = dst.detach().clone()
    full[tuple(slice(0, n) for n in out.shape)] = out.to(dst.device)
    return full


def chain_layers(model: nn.Module, layers: Sequence[str]) -> list[str]:
    """The convs of a chain: the selected layers and the 1×1 convs (residual projections) that
    lie between the first and the last of them in module order."""
    names = list(conv_layers(model))
    pos = [names.index(n) for n in layers]
    lo, hi = min(pos), max(pos)
    return [n for i, n in enumerate(names) if n in layers or
            (lo < i < hi and conv_layers(model)[n].kernel_size == (1, 1))]


def norm_after(model: nn.Module) -> dict[str, str]:
    """conv name → the norm layer that follows it (the next norm module in module order before
    the next conv, with the conv's output channels): conv→bn pairs of DWPNet, ResNets, MobileNets."""
    pairs, pending = {}, None
    for name, m in unwrap(model).named_modules():
        if isinstance(m, nn.Conv2d):
            pending = (name, m.out_channels)
        elif isinstance(m, NORMS) and pending is not None:
            width = m.num_features if hasattr(m, "num_features") else m.num_channels
            if width == pending[1]:
                pairs[pending[0]] = name
            pending = None
    return pairs


def head(model: nn.Module) -> str | None:
    """The classifier head: the last ``nn.Linear`` in module order (never copied from a source
    trained on other classes)."""
    names = [n for n, m in unwrap(model).named_modules() if isinstance(m, nn.Linear)]
    return names[-1] if names else None


def _copy(model: nn.Module, source: Mapping[str, torch.Tensor], modules: Sequence[str], what: str,
          partial: bool = False) -> list[str]:
    """Copy every parameter and buffer of ``modules`` from ``source`` (fitted by ``take``);
    returns the modules copied. A module the source lacks is refused in one line, or, from a
    ``partial`` source (a bank: convs only), left as it is; so is a source of another depth
    (``same_depth``) and kernels of another size. The new state is built whole and loaded once:
    a refused copy leaves the model as it was."""
    same_depth(model, source, what)
    own = unwrap(model).state_dict()
    done, new = [], {}
    for mod in modules:
        keys = [k for k in own if k.rpartition(".")[0] == mod]
        if partial and not all(k in source for k in keys):
            continue
        done.append(mod)
        for k in keys:
            if k not in source:
                raise UsageError(f"{what}: the source network has no {k!r} (is it the same architecture "
                                 f"family?)", "sources")
            if own[k].dim() != source[k].dim():
                raise UsageError(f"{what}: {k} is {tuple(source[k].shape)} in the source and "
                                 f"{tuple(own[k].shape)} here: not the same architecture family", "sources")
            if own[k].dim() == 4 and tuple(own[k].shape[2:]) != tuple(source[k].shape[2:]):
                raise UsageError(f"{what}: {k} has {'x'.join(map(str, own[k].shape[2:]))} kernels here and "
                                 f"{'x'.join(map(str, source[k].shape[2:]))} in the source: kernels are never cut "
                                 f"or padded to fit", "sources")
            if own[k].dtype in (torch.int64, torch.int32):      # BN's num_batches_tracked
                new[k] = source[k].to(own[k].dtype).reshape(own[k].shape).to(own[k].device)
            else:
                new[k] = take(source[k], own[k])
    unwrap(model).load_state_dict({**own, **new})
    return done


def same_depth(model: nn.Module, source: Mapping[str, torch.Tensor], what: str) -> None:
    """Refuse a source with another number of blocks in a stage than the model (a chain and a
    fine-tuning start copy layers by name: a deeper source's extra blocks would be dropped
    without a word); ``fastreg.transfer`` maps across depths."""
    from .transfer import stages
    import re
    mods = dict(unwrap(model).named_modules())
    for st in stages(model):
        here = len(list(mods[st].children()))
        idx = {int(m.group(1)) for k in source if (m := re.match(re.escape(st) + r"\.(\d+)\.", k))}
        there = max(idx) + 1 if idx else here
        if there != here:
            raise UsageError(f"{what}: the source network has {there} blocks in {st}, this model {here}: another "
                             f"depth (transfer_init maps across depths)", "sources")


def chain_init(model: nn.Module, sources: Sequence[Mapping[str, torch.Tensor]], layers: str | Sequence[str],
               seed: int = 0, norms: bool = False, partial: bool = False) -> dict[str, object]:
    """Initialize the chain of ``layers`` (a selector or names; ``chain_layers``) from source
    network ``seed % len(sources)``: conv weights (and biases), and with ``norms`` the norm
    layer after each conv (weights, biases, running statistics). Nothing is rescaled: with
    the same widths, head and norms the model computes the source's function. Returns what
    was copied: {"source": index, "convs": [...], "norms": [...]}."""
    if not sources:
        raise UsageError("chain init needs at least one source network")
    if isinstance(layers, str):
        layers = select_layers(model, layers)
    src = sources[seed % len(sources)]
    convs = chain_layers(model, layers)
    after = norm_after(model)
    if norms and partial:
        raise UsageError("chain init: these sources come from a bank, which holds no norm layers to copy",
                         "norms")
    bns = [after[c] for c in convs if c in after] if norms else []
    copied = _copy(model, src, convs + bns, "chain init", partial)
    if partial and len(copied) < len(convs):
        missing = [c for c in convs if c not in copied]
        sys.stderr.write(f"chain init: the bank holds no {', '.join(missing[:3])}{' …' if len(missing) > 3 else ''}"
                         f" ({len(missing)} conv(s)): left at their own init\n")
    return {"source": seed % len(sources), "convs": [c for c in convs if c in copied], "norms": bns}


def finetune_init(model: nn.Module, sources: Sequence[Mapping[str, torch.Tensor]], seed: int = 0) -> dict[str, object]:
    """Fine-tuning's start: every layer of source network ``seed % len(sources)`` but the
    head (``head``), norms and projections included, fitted by ``take``."""
    if not sources:
        raise UsageError("fine-tuning needs at least one source network")
    src = sources[seed % len(sources)]
    skip = head(model)
    mods = sorted({k.rpartition(".")[0] for k in unwrap(model).state_dict()} - {skip})
    mods = [m for m in mods if any(k.rpartition(".")[0] == m for k in src)]
    return {"source": seed % len(sources), "modules": _copy(model, src, mods, "fine-tuning"), "head": skip}


def sources_from_bank(bank) -> list[dict[str, torch.Tensor]]:
    """The conv weights of each source model a bank was collected from, rebuilt from its model
    boundaries (``rows_per_model``, else its rows split evenly over ``seeds``) and rows per
    filter: ``[{"conv1.weight": [O, I, k, k], …}, …]`` in seed order. A prefix the bank's
    layers carry (``resnet20.``, so that they pool) is taken off. Convs the bank does not hold
    (1×1 projections) and norms are not in it: a chain from a bank is partial."""
    from .bank import BankError
    seeds = json.loads(bank.meta.get("seeds", "[]"))
    per = json.loads(bank.meta.get("rows_per_model", "{}"))
    if not per and not seeds:
        raise UsageError("this bank records no source models (no seeds, no rows_per_model): it cannot rebuild chains")
    names = list(bank.layers)
    arch = bank.meta.get("architecture", "").split("(")[0].lower()
    prefix = bank.meta.get("prefix") or (arch + "." if arch and all(n.startswith(arch + ".") for n in names) else "")
    n_models = len(seeds) or len(bank.layers[names[0]]) // per[names[0]]
    out: list[dict[str, torch.Tensor]] = [{} for _ in range(n_models)]
    for name in names:
        t, rows = bank.layers[name], bank.filter_rows(name)
        r = per.get(name, len(t) // n_models)
        if r * n_models != len(t) or r % rows:
            raise BankError(f"bank layer {name!r}: {len(t)} rows do not split into {n_models} models of whole filters")
        for m in range(n_models):
            w = t[m * r:(m + 1) * r]
            out[m][name[len(prefix):] + ".weight"] = w.reshape(r // rows, rows, t.shape[-2], t.shape[-1]).clone()
    return out


def load_sources(path: str | Path) -> tuple[list[dict[str, torch.Tensor]], dict]:
    """Source networks and their description: a ``collect`` folder (its ``seed*/model.pt``, in
    seed order), a sources file (``.safetensors`` with ``seed{s}/…`` keys, written by
    ``save_sources``), or a bank (its convs only, ``sources_from_bank``; the description then
    says ``"partial": True``); a packaged name (``resnet20_c04``) is its file. Never unpickles
    (weights-only / safetensors)."""
    from .io_util import read_json, safe_torch_load
    path = sources_file(path)
    if path.is_dir():
        seeds = sorted((d for d in path.glob("seed*") if (d / "model.pt").exists()),
                       key=lambda d: int(d.name[4:]) if d.name[4:].isdigit() else 1 << 30)
        if not seeds:
            raise UsageError(f"{path}: no finished source models (seed*/model.pt) in this folder")
        recipe = read_json(path / "recipe.json") if (path / "recipe.json").exists() else {}
        return [safe_torch_load(d / "model.pt") for d in seeds], {"recipe": recipe, "seeds": [d.name for d in seeds]}
    if not path.is_file():
        raise UsageError(f"{path}: no such sources file or collect folder")
    from .io_util import read_safetensors
    if path.suffix == ".npy":
        flat, meta = {}, {"format": "fastreg-bank/1"}
    else:
        try:
            flat, meta = read_safetensors(path)
        except ValueError as e:
            raise UsageError(f"{e} (expected a sources file, a bank or a collect folder)") from None
    if meta.get("format") == "fastreg-bank/1":
        from .bank import KernelBank
        bank = KernelBank.load(path)
        return sources_from_bank(bank), {**bank.meta, "partial": True}
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for k, t in flat.items():
        g, _, name = k.partition("/")
        groups.setdefault(g, {})[name] = t.float() if t.is_floating_point() else t
    order = sorted(groups, key=lambda g: int(g[4:]) if g[4:].isdigit() else 1 << 30)
    return [groups[g] for g in order], {k: json.loads(v) if v[:1] in "[{" else v for k, v in meta.items()}


def save_sources(models: Mapping[str, Mapping[str, torch.Tensor]], path: str | Path, meta: Mapping[str, str],
                 dtype: torch.dtype = torch.float16) -> None:
    """Bundle source networks' state_dicts (``seed{s}`` → state_dict) into one safetensors file,
    floating tensors stored as ``dtype`` (half: chain and fine-tuning starts differ from the
    fp32 ones by rounding only), written atomically."""
    from safetensors.torch import save
    from .io_util import atomic_write_bytes
    flat = {f"{g}/{k}": (t.to(dtype) if t.is_floating_point() else t).contiguous().cpu()
            for g, sd in models.items() for k, t in sd.items()}
    atomic_write_bytes(path, save(flat, {k: str(v) for k, v in meta.items()}))


class L2SP(nn.Module):
    """L2-SP (Li, Grandvalet & Davoine, ICML 2018): ``α/2 · Σ ‖w − w₀‖²`` over the parameters
    of ``modules``, ``w₀`` their values when this is built (the chain or fine-tuning start).
    A ``fastreg.terms.Regularizer``."""

    def __init__(self, model: nn.Module, modules: Sequence[str], alpha: float) -> None:
        super().__init__()
        if not alpha >= 0:
            raise ValueError(f"L2-SP weight must be >= 0, got {alpha}")
        self.alpha = float(alpha)
        named = dict(unwrap(model).named_parameters())
        self.names = [k for k in named if k.rpartition(".")[0] in set(modules)]
        self.params = [named[k] for k in self.names]
        for i, p in enumerate(self.params):
            self.register_buffer(f"start_{i}", p.detach().clone())
        self._stats = torch.zeros(2)

    def generator_loss(self) -> torch.Tensor:
        d = sum((p.float() - getattr(self, f"start_{i}").float()).square().sum() for i, p in enumerate(self.params))
        self._stats = self._stats.to(d.device) + torch.stack([d.detach(), torch.ones_like(d)])
        return 0.5 * self.alpha * d

    def discriminator_step(self) -> None:
        """Nothing to train."""

    def pop_stats(self) -> dict[str, float]:
        n = float(self._stats[1])
        out = {"l2sp_dist2": float(self._stats[0]) / n} if n else {}
        self._stats = torch.zeros(2)
        return out

    def trained_parameters(self) -> list[nn.Parameter]:
        """Nothing of its own is trained."""
        return []

    def distribute(self, dist) -> "L2SP":
        """Nothing to share between data-parallel ranks: every rank holds the same start."""
        return self

    def checkpoint_state(self) -> dict:
        return {"start": {k: getattr(self, f"start_{i}").cpu() for i, k in enumerate(self.names)}}

    def load_checkpoint_state(self, state: dict) -> None:
        for i, k in enumerate(self.names):
            getattr(self, f"start_{i}").copy_(state["start"][k])
