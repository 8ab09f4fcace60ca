"""Finding the conv layers of any ``nn.Module`` by full name or selector.

Layers are named as ``named_modules()`` names them (``layer1.0.conv1``); a model wrapped by
DDP (``module.``) or ``torch.compile`` (``_orig_mod.``) resolves to the same names. Selectors,
comma-separated: exact names, globs (``layer*.*.conv1``), ``all`` (every conv with square
kernels of at least 3×3) and ``k3`` / ``k5`` / ``k7`` (every conv of that size). Given a
bank's kernel sizes, a pattern serves only the convs the bank has kernels for and says which
it leaves alone (a ConvNeXt's 4×4 stem under ``all``); a layer named exactly is never dropped.
"""
from __future__ import annotations

import fnmatch
import re
import sys
from typing import Collection, Mapping

from torch import nn

from .errors import UsageError

# How a regularizer term's weight (λ, the prior weight) spreads over several layers: "mean"
# (each of L layers gets weight / L, so the weight means the same for 1 layer or 50) or "sum"
# (each layer the full weight, as runs recorded at settings version 1 did). DESIGN.md §9.
LAYER_WEIGHTS = ("mean", "sum")


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DDP / DataParallel (``.module``) and ``torch.compile`` (``._orig_mod``)."""
    while True:
        inner = getattr(model, "_orig_mod", None)
        if inner is None and isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            inner = model.module
        if inner is None:
            return model
        model = inner


def conv_layers(model: nn.Module) -> dict[str, nn.Conv2d]:
    """Every ``nn.Conv2d`` by its full dotted name, in module order."""
    return {n: m for n, m in unwrap(model).named_modules() if isinstance(m, nn.Conv2d)}


def key(name: str) -> str:
    """A layer name as a submodule / buffer name (which cannot hold dots)."""
    return name.replace(".", "__")


def _listing(shapes: Mapping[str, tuple[int, int]], most: int = 8) -> str:
    names = [f"{n} ({h}x{w})" for n, (h, w) in shapes.items()]
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def select(shapes: Mapping[str, tuple[int, int]], selector: str, where: str = "the model",
           sizes: Collection[int] | None = None, mapped: Collection[str] = ()) -> list[str]:
    """Names chosen by ``selector`` among layers with these kernel shapes, in their order.

    ``all``, ``kN`` and globs keep square kernels of at least 3×3; a name given exactly must be
    such a layer. ``sizes``: the kernel sizes a bank holds (``mapped``: layers given bank
    layers by name): a pattern then leaves out the convs the bank cannot serve (``selection``
    says which), a name given exactly is kept (the bank refuses it, naming it). Nothing
    matched, an unknown name or an unusable kernel: one-line UsageError.
    """
    return selection(shapes, selector, where, sizes, mapped)[0]


def _sizes(sizes: Collection[int]) -> str:
    return ", ".join(f"{k}x{k}" for k in sorted(sizes))


def selection(shapes: Mapping[str, tuple[int, int]], selector: str, where: str = "the model",
              sizes: Collection[int] | None = None, mapped: Collection[str] = ()
              ) -> tuple[list[str], list[str]]:
    """``select``, and the convs its patterns matched but left out: no bank kernels of their size."""
    items = [s.strip() for s in selector.split(",")]
    if not selector.strip() or "" in items:
        raise UsageError(f"empty layer selector {selector!r}")
    if len(set(items)) != len(items):
        raise UsageError(f"the layer selector lists an item twice: {selector!r}")
    usable = {n for n, (h, w) in shapes.items() if h == w and h >= 3}
    if not shapes:
        raise UsageError(f"{where} has no nn.Conv2d layer: nothing for a filter prior to work on")
    if not usable and not any(item in shapes for item in items):
        raise UsageError(f"{where} has no conv layer with square kernels of 3x3 or more, only "
                         f"{_listing(shapes)}: a filter prior needs spatial kernels")
    chosen: set[str] = set()
    left: set[str] = set()
    for item in items:
        size = re.fullmatch(r"k(\d+)", item)
        if item == "all":
            hit = usable
        elif size:
            hit = {n for n in usable if shapes[n][0] == int(size.group(1))}
        elif any(c in item for c in "*?["):
            hit = {n for n in usable if fnmatch.fnmatchcase(n, item)}
        elif item in shapes:
            h, w = shapes[item]
            if h != w:
                raise UsageError(f"layer {item} has non-square {h}x{w} kernels: not supported")
            if h < 3:
                raise UsageError(f"layer {item} has {h}x{w} kernels: no spatial structure to regularize")
            chosen.add(item)
            continue
        else:
            raise UsageError(f"unknown layer {item!r}; {where} has {_listing(shapes)}")
        if not hit:
            raise UsageError(f"layer selector {item!r} matches no conv layer with square kernels of "
                             f"3x3 or more; {where} has {_listing(shapes)}")
        if sizes is not None:
            kept = {n for n in hit if shapes[n][0] in sizes or n in mapped}
            if not kept:
                raise UsageError(f"layer selector {item!r} matches only convs of sizes the bank lacks (it has "
                                 f"{_sizes(sizes)}): {_listing({n: shapes[n] for n in shapes if n in hit}, 4)}")
            left |= hit - kept
            hit = kept
        chosen |= hit
    return [n for n in shapes if n in chosen], [n for n in shapes if n in left - chosen]


def _another_rank() -> bool:
    """A process of a distributed job other than rank 0: it keeps the one-line notes to itself."""
    import torch.distributed as dist
    return dist.is_available() and dist.is_initialized() and dist.get_rank() != 0


def select_layers(model: nn.Module, selector: str, sizes: Collection[int] | None = None,
                  mapped: Collection[str] = (), what: str = "") -> list[str]:
    """``select`` over a model's conv layers. ``sizes``: the kernel sizes a bank holds (with
    ``mapped``, layers given bank layers by name): a pattern then serves only those convs and
    ``what`` (the caller, e.g. ``"bank init"``) says in one line on stderr which it leaves alone."""
    shapes = {n: tuple(c.kernel_size) for n, c in conv_layers(model).items()}
    if sizes is None:
        return select(shapes, selector)
    names, left = selection(shapes, selector, "the model", set(sizes), set(mapped))
    if left and not _another_rank():
        many = len(left) > 1
        sys.stderr.write(f"{what or 'layers'} {selector!r}: leaves {len(left)} conv{'s' * many} alone, the bank has "
                         f"no kernels of {'their' if many else 'its'} size (only {_sizes(sizes)}): "
                         f"{_listing({name: shapes[name] for name in left}, 4)}\n")
    return names
