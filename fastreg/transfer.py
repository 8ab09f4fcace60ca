"""A source network of one depth and width starts a target of another (DESIGN.md §14).

The target's modules are placed on the source's by role (``plan``):
- **stages and blocks.** A stage is an ``nn.Sequential`` whose children are blocks of one
  class (``layer1`` of a ResNet, ``features.1`` of a ConvNeXt); block ``j`` of a target stage
  takes a source block of the stage of the same name: block ``j`` where the source has it,
  else, in a deeper target, a **new identity block** (Net2DeeperNet, Chen et al. 2016: the last
  norm of its residual branch gets scale 0, so the block passes its input through), and in a
  shallower target the source blocks ``blocks`` picks (``"first"``: ``0..m-1``; ``"spaced"``:
  evenly spaced, first and last kept; Weight Selection's layer selection, Xu et al. 2024).
- **every other module** takes the source module of its name; the head (the last Linear) is
  always new.
- **widths.** A dimension of ``c`` channels from one of ``C``: a wider target replicates,
  channel ``j`` ← source channel ``j mod C``, and divides a conv's or linear's weights over a
  replicated *input* channel by its number of copies (Net2WiderNet): with batch norms the
  target then computes the source's function, each feature repeated (a group or layer norm
  over replicated channels sees other statistics: replicated, said in the map, not exact).
  Only channel counts are mapped (a conv's or linear's dims 0 and 1, a per-channel tensor's
  dim 0); the model's input channels and a linear outside the stages (its inputs may be
  flattened maps) must match. A narrower target keeps the evenly spaced
  channels ``floor(j·C/c)`` (Weight Selection). The map depends only on ``(C, c)``, so the
  channels a residual stage adds together stay the same channels.

Nothing is fitted silently: a module on both sides whose kernels differ in size, or whose
tensors differ in rank, is refused with its name; so is a block placed on a source block that
lacks one of its modules (another family sharing some names), a source tensor of a placed
module that nothing takes, a new block that does not pass its input through (no residual
connection), a model without a Linear head, and a source that shares no module with the
target, unless a ``bank`` is given, whose statistics then start every conv the source
cannot place (covariance draws of whole filters, ``init_from_bank(kind="cov")``). The new
state is built whole and loaded once: a refused transfer leaves the model as it was.
"""
from __future__ import annotations

import copy
import re
import sys
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch
from torch import nn

from .errors import UsageError
from .layers import conv_layers, unwrap

NORMS = (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d, nn.LayerNorm)
BLOCKS = ("first", "spaced")


@dataclass
class TransferMap:
    """What ``transfer_init`` did: target module → source module, or ``"new: identity"``,
    ``"new: head"``, ``"new: own init"``, ``"new: bank statistics"``; ``copied``: the target
    modules that took a source module (what L2-SP pulls toward its start)."""
    source: int
    modules: dict[str, str] = field(default_factory=dict)
    stages: list[str] = field(default_factory=list)
    approximate: list[str] = field(default_factory=list)   # group/layer norms over replicated channels

    @property
    def copied(self) -> list[str]:
        return [m for m, s in self.modules.items() if not s.startswith("new:")]

    def block_of(self, name: str) -> str | None:
        """The block a module belongs to (``layer1.3`` of ``layer1.3.bn2``), None outside the stages."""
        stage = next((st for st in self.stages if name.startswith(st + ".")), None)
        return f"{stage}.{name[len(stage) + 1:].split('.', 1)[0]}" if stage else None

    def lines(self) -> list[str]:
        """The map by block (a stage's block, or a module outside the stages), for a terminal."""
        groups: dict[str, list[str]] = {}
        for m, s in self.modules.items():
            src = s if s.startswith("new:") else (self.block_of(s) or s)
            groups.setdefault(self.block_of(m) or m, [])
            if src not in groups[self.block_of(m) or m]:
                groups[self.block_of(m) or m].append(src)
        return [f"{k} ← {', '.join(v)}" for k, v in groups.items()]

    def as_dict(self) -> dict:
        return {"source": self.source, "modules": dict(self.modules), "approximate": list(self.approximate)}


def stages(model: nn.Module) -> list[str]:
    """Names of the model's stages: ``nn.Sequential`` modules whose children (two or more, or
    one whose class is not a plain container) are all blocks of one class that hold parameters."""
    out = []
    for name, m in unwrap(model).named_modules():
        kids = list(m.children())
        if not isinstance(m, nn.Sequential) or not kids:
            continue
        kinds = {type(k) for k in kids}
        if len(kinds) == 1 and not isinstance(kids[0], (nn.Sequential, nn.ModuleList)) \
                and any(True for _ in kids[0].children()) and any(p.numel() for p in kids[0].parameters()):
            out.append(name)
    return out


def owners(model: nn.Module) -> list[str]:
    """Modules that own parameters or buffers themselves, in module order."""
    return [n for n, m in unwrap(model).named_modules()
            if n and (any(True for _ in m.parameters(recurse=False)) or any(True for _ in m.buffers(recurse=False)))]


def _head(model: nn.Module) -> str | None:
    names = [n for n, m in unwrap(model).named_modules() if isinstance(m, nn.Linear)]
    return names[-1] if names else None


def _residual_norm(model: nn.Module, block: str) -> str | None:
    """The last norm of a block's residual branch (not of its shortcut / downsample path)."""
    mods = dict(unwrap(model).named_modules())
    norms = [n for n, m in mods.items() if n.startswith(block + ".") and isinstance(m, NORMS)
             and not re.search(r"\.(shortcut|downsample)\b", n[len(block):])]
    return norms[-1] if norms else None


def _source_blocks(source: Mapping[str, torch.Tensor], stage: str) -> int:
    idx = {int(m.group(1)) for k in source if (m := re.match(re.escape(stage) + r"\.(\d+)\.", k))}
    return max(idx) + 1 if idx else 0


def _pick(j: int, m: int, n: int, blocks: str) -> int | None:
    """The source block of target block ``j`` of ``m``, from ``n``: None for a new block."""
    if m >= n:
        return j if j < n else None
    if blocks == "first" or m == 1:
        return j
    return round(j * (n - 1) / (m - 1))


def plan(model: nn.Module, source: Mapping[str, torch.Tensor], blocks: str = "first"
         ) -> tuple[dict[str, str], list[str]]:
    """(target module → the source module it takes, its name in ``source``, ``"new: …"``, or
    ``"missing: …"`` where a placed block's source block lacks it; the new identity blocks)."""
    if blocks not in BLOCKS:
        raise ValueError(f"blocks must be one of {BLOCKS}, got {blocks!r}")
    st = stages(model)
    head = _head(model)
    src_mods = {k.rpartition(".")[0] for k in source}
    out: dict[str, str] = {}
    counts = {s: (len(list(dict(unwrap(model).named_modules())[s].children())), _source_blocks(source, s)) for s in st}
    identity: list[str] = []
    for name in owners(model):
        if name == head:
            out[name] = "new: head"
            continue
        stage = next((s for s in st if name.startswith(s + ".")), None)
        if stage is None:
            out[name] = name if name in src_mods else "new: own init"
            continue
        j, _, rel = name[len(stage) + 1:].partition(".")      # rel "": the block's own parameters
        m, n = counts[stage]
        k = _pick(int(j), m, n, blocks) if n else None
        if k is None:
            if n and f"{stage}.{j}" not in identity:
                identity.append(f"{stage}.{j}")
            out[name] = "new: identity" if n else "new: own init"
            continue
        src = f"{stage}.{k}" + (f".{rel}" if rel else "")
        out[name] = src if src in src_mods else f"missing: {src}"     # refused by transfer_init, in order
    return out, identity


def _index(C: int, c: int) -> torch.Tensor:
    """Source channel of each of ``c`` target channels: replication (``j mod C``) or evenly
    spaced selection (``floor(j·C/c)``)."""
    return torch.arange(c) % C if c >= C else torch.arange(c) * C // c


def fit(src: torch.Tensor, dst: torch.Tensor, weight: bool) -> torch.Tensor:
    """``src`` mapped to ``dst``'s shape, dimension by dimension (the module docstring); for a
    conv's or linear's ``weight``, replicated input channels (dim 1) share their weight."""
    out = src.detach().to(dst.dtype)
    for d, (s, t) in enumerate(zip(src.shape, dst.shape)):
        if s == t:
            continue
        idx = _index(s, t)
        out = out.index_select(d, idx)
        if weight and d == 1 and t > s:
            copies = torch.bincount(idx, minlength=s).to(out.dtype)[idx]
            out = out / copies.view([1, t] + [1] * (out.dim() - 2))
    return out.to(dst.device)


def _check(name: str, key: str, src: torch.Tensor, dst: torch.Tensor, module: nn.Module) -> None:
    if src.dim() != dst.dim():
        raise UsageError(f"transfer: {key} is {tuple(src.shape)} in the source and {tuple(dst.shape)} here: "
                         f"not the same kind of layer", "sources")
    if isinstance(module, nn.Conv2d) and key.endswith(".weight") and tuple(src.shape[2:]) != tuple(dst.shape[2:]):
        k, kk = "x".join(map(str, src.shape[2:])), "x".join(map(str, dst.shape[2:]))
        raise UsageError(f"transfer: {name} has {kk} kernels here and {k} in the source: kernels are never "
                         f"cut or padded to fit", "sources")
    free = (0, 1) if isinstance(module, (nn.Conv2d, nn.Linear)) and key.endswith(".weight") else (0,)
    other = [d for d, (a, b) in enumerate(zip(src.shape, dst.shape)) if a != b and d not in free]
    if other:
        raise UsageError(f"transfer: {key} is {tuple(src.shape)} in the source and {tuple(dst.shape)} here: only "
                         f"channel counts are mapped", "sources")
    if isinstance(module, nn.Conv2d) and module.groups not in (1, module.in_channels) and src.shape != dst.shape:
        raise UsageError(f"transfer: {name} is a grouped conv of another width than the source's: not mapped",
                         "sources")


def _check_resize(net: nn.Module, name: str, key: str, module: nn.Module, src: torch.Tensor,
                  stage_names: list[str], source: Mapping[str, torch.Tensor], mapping: Mapping[str, str]) -> None:
    """Channel counts that may be mapped: never the model's input channels; a linear outside the
    stages only where it reads the channels of the conv before it on both sides (DWPNet's fc1),
    not flattened feature maps (a VGG classifier's C·H·W inputs)."""
    convs = list(conv_layers(net))
    if name == (convs[0] if convs else None) and key.endswith(".weight") and src.shape[1] != module.weight.shape[1]:
        raise UsageError(f"transfer: {name} takes {module.weight.shape[1]} input channels here and {src.shape[1]} "
                         f"in the source: the input is never cut or replicated", "sources")
    inside = any(name.startswith(s + ".") for s in stage_names)
    if not isinstance(module, nn.Linear) or inside or not key.endswith(".weight") or src.shape[1] == module.in_features:
        return
    order = [n for n, _ in net.named_modules()]
    before = [c for c in convs if order.index(c) < order.index(name)]
    prev = before[-1] if before else None
    sw = source.get(f"{mapping.get(prev, '')}.weight") if prev else None
    if prev is None or sw is None or module.in_features != net.get_submodule(prev).out_channels \
            or src.shape[1] != sw.shape[0]:
        raise UsageError(f"transfer: {name} takes {module.in_features} inputs here and {src.shape[1]} in the "
                         f"source, not the channels of the conv before it (flattened feature maps?): not mapped",
                         "sources")


def _check_identity(block: nn.Module, name: str, state: Mapping[str, torch.Tensor]) -> None:
    """A new block must pass its input through once its residual branch is at 0 (Net2Deeper); a
    block with no residual connection would erase the features instead."""
    scratch = copy.deepcopy(block).eval()
    scratch.load_state_dict({k[len(name) + 1:]: v for k, v in state.items() if k.startswith(name + ".")})
    conv = next((m for m in scratch.modules() if isinstance(m, nn.Conv2d)), None)
    p = next(scratch.parameters())
    ok = False
    if conv is not None:
        x = torch.rand(2, conv.in_channels, 8, 8, generator=torch.Generator().manual_seed(0)).to(p)
        with torch.no_grad():
            try:
                y = scratch(x)
                ok = y.shape == x.shape and bool(torch.allclose(y, x, rtol=1e-4, atol=1e-5))
            except (RuntimeError, TypeError):
                ok = False
    if not ok:
        raise UsageError(f"transfer: the new block {name} does not pass its input through with its residual "
                         f"branch at 0 (no residual connection?): a deeper target needs residual blocks", "sources")


def transfer_init(model: nn.Module, sources: Sequence[Mapping[str, torch.Tensor]], seed: int = 0,
                  norms: bool = True, blocks: str = "first", bank=None, unit: str = "filter",
                  shrink: float = 0.1, noise: float = 0.0, quiet: bool = False) -> TransferMap:
    """Start ``model`` from source network ``seed % len(sources)`` (a state_dict) of the same
    family at any depth and width (module docstring): convs, linears inside blocks, norms with
    their running statistics (``norms=False``: convs and linears only); new blocks are
    identities, the head is new. ``bank``: convs the source cannot place start from draws of
    the Gaussian fitted to the bank's kernels of their size (``unit``, ``shrink``); without one a
    source that places nothing is refused. ``noise``: relative std of noise added to the copied
    weights (breaks the symmetry of replicated channels). Prints the map by block on stderr
    (unless ``quiet``) and returns it."""
    if not sources:
        raise UsageError("transfer needs at least one source network", "sources")
    src = sources[seed % len(sources)]
    if not any(t.dim() == 4 for t in src.values()):
        raise UsageError(f"transfer: the source holds no conv weights (only {', '.join(list(src)[:3])}"
                         f"{', …' if len(src) > 3 else ''}): not a network to start from", "sources")
    net = unwrap(model)
    mods = dict(net.named_modules())
    if _head(net) is None:
        raise UsageError("transfer: the model has no Linear layer to take as its new head; not mapped", "sources")
    mapping, identity = plan(net, src, blocks)
    st = stages(net)
    placed = [m for m, s in mapping.items() if not s.startswith(("new:", "missing:"))]
    if not placed and bank is None:
        first = next(iter(conv_layers(net)), next(iter(mapping), "?"))
        raise UsageError(f"transfer: the source network has no layer that corresponds to this model's (first: "
                         f"{first}): another family; give a bank for starts from its statistics", "sources")
    own = net.state_dict()
    new: dict[str, torch.Tensor] = {}
    gen = torch.Generator().manual_seed(seed * 1000 + 800)
    for name, s in mapping.items():
        module = mods[name]
        if s.startswith("missing:"):
            raise UsageError(f"transfer: {name} has no counterpart {s[9:]} in the source's block: another kind of "
                             f"block (another family?); not mapped", "sources")
        if s.startswith("new:") or (not norms and isinstance(module, NORMS)):
            if not s.startswith("new:"):
                mapping[name] = "new: own init"
            continue
        keys = [k for k in own if k.rpartition(".")[0] == name]
        unused = sorted(k for k in src if k.rpartition(".")[0] == s and name + k[len(s):] not in keys)
        if unused:
            raise UsageError(f"transfer: the source's {unused[0]} has no counterpart in {name}: not the same kind "
                             f"of layer", "sources")
        for key in keys:
            skey = s + key[len(name):]
            if skey not in src:
                raise UsageError(f"transfer: the source's {s} has no {skey.rpartition('.')[2]!r}: not the same "
                                 f"kind of layer as {name}", "sources")
            _check(name, key, src[skey], own[key], module)
            if src[skey].shape != own[key].shape:
                _check_resize(net, name, key, module, src[skey], st, src, mapping)
            if not own[key].is_floating_point():          # a norm's num_batches_tracked
                new[key] = src[skey].to(own[key].dtype).reshape(own[key].shape).to(own[key].device)
                continue
            t = fit(src[skey].float(), own[key], key.endswith(".weight") and isinstance(module, (nn.Conv2d, nn.Linear)))
            if noise and key.endswith(".weight") and isinstance(module, (nn.Conv2d, nn.Linear)):
                t = t + noise * t.std() * torch.randn(t.shape, generator=gen).to(t)
            new[key] = t
    for block in identity:                 # Net2Deeper: the residual branch's output scales to 0
        scales = [k for k, _ in mods[block].named_parameters(recurse=False)]
        if scales:                         # a block's own scale of its branch (ConvNeXt's layer_scale)
            new.update({f"{block}.{k}": torch.zeros_like(own[f"{block}.{k}"]) for k in scales})
            continue
        last = _residual_norm(net, block)
        if last is None or getattr(mods[last], "weight", None) is None:
            raise UsageError(f"transfer: the new block {block} has no norm in its residual branch to start "
                             f"it as an identity", "sources")
        new[last + ".weight"] = torch.zeros_like(own[last + ".weight"])
        if own.get(last + ".bias") is not None:      # a trained or custom-initialized target's bias too
            new[last + ".bias"] = torch.zeros_like(own[last + ".bias"])
    for block in identity:
        _check_identity(mods[block], block, {**own, **new})
    approximate = [n for n, s in mapping.items() if not s.startswith("new:") and isinstance(mods[n], NORMS)
                   and not isinstance(mods[n], nn.BatchNorm2d) and any(new[k].shape != src[s + k[len(n):]].shape
                                                                    for k in new if k.rpartition(".")[0] == n)]
    stats = []
    if bank is not None:
        sizes = set(bank.kernel_sizes())
        stats = [n for n, c in conv_layers(net).items()
                 if mapping.get(n, "").startswith("new:") and mapping[n] != "new: identity"
                 and c.kernel_size[0] == c.kernel_size[1] and c.kernel_size[0] in sizes]
    if stats:                              # drawn on a copy: nothing changes until the one load below
        from .init import init_from_bank
        scratch = copy.deepcopy(net)
        scratch.load_state_dict({**own, **new})
        init_from_bank(scratch, bank, stats, "cov", unit, seed, shrink)
        drawn = scratch.state_dict()
        new.update({n + ".weight": drawn[n + ".weight"] for n in stats})
        mapping.update({n: "new: bank statistics" for n in stats})
    net.load_state_dict({**own, **new})
    result = TransferMap(seed % len(sources), mapping, st, approximate)
    if not quiet:
        sys.stderr.write(f"transfer init from source {result.source}: {len(result.copied)} modules copied, "
                         f"{len(mapping) - len(result.copied)} new\n" + "".join(f"  {line}\n" for line in result.lines()))
        if approximate:
            sys.stderr.write(f"  note: {len(approximate)} group/layer norms over replicated channels (e.g. "
                             f"{approximate[0]}): the wider model does not compute the source's function exactly\n")
    return result

