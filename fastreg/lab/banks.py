"""Banks as the lab names and labels them: ``--bank`` resolution, and the identity and short
label of a bank from its metadata, which run folders record and the report groups by."""
from __future__ import annotations

import json
import re
from typing import Mapping

from ..bank import DEFAULT_BANK, KernelBank, bank_file, packaged_bank


def load_bank(arg: str, arch: str) -> "KernelBank":
    """The bank ``--bank ARG`` means for a model ``arch``: ``auto`` is the default 7x7/5x5
    bank for DWPNet and ``packaged_bank()`` for any other model; else a packaged name or a file."""
    if arg == "auto":
        return KernelBank.load(DEFAULT_BANK) if arch == "dwpnet" else packaged_bank()
    return KernelBank.load(bank_file(arg))


def merged_parts(meta: Mapping[str, str]) -> list[dict] | None:
    """A merged bank's part metadata (stored as a JSON string under ``merged``), or None when
    the bank is not merged or that string is not a list of maps."""
    try:
        parts = json.loads(meta["merged"])
    except (KeyError, TypeError, ValueError):
        return None
    return parts if isinstance(parts, list) and all(isinstance(m, dict) for m in parts) else None


def bank_id(meta: Mapping[str, str] | None) -> str:
    """A bank's identity from its metadata, comparable across files and runs (a merged bank's
    parts, stored as a JSON string whose key order once followed the file's, are parsed)."""
    meta = dict(meta or {})
    parts = merged_parts(meta)
    if parts is not None:
        meta["merged"] = parts
    return json.dumps(meta, sort_keys=True)


def bank_label(meta: Mapping[str, str] | None) -> str:
    """A short readable name for a bank from its metadata: source architecture and epochs
    (``dwpnet-24ep``), and the source classes when not all (``dwpnet-24ep-c01234``); parts
    joined by ``+`` for a merged bank; ``?`` when unknown."""
    meta = dict(meta or {})
    if "merged" in meta:
        parts = merged_parts(meta)
        return "+".join(map(bank_label, parts)) if parts is not None else "merged"
    try:
        recipe = json.loads(meta.get("recipe", "{}"))
    except (TypeError, ValueError):
        recipe = {}
    recipe = recipe if isinstance(recipe, dict) else {}
    arch = recipe.get("arch") or re.sub(r"\(.*", "", str(meta.get("architecture", ""))).lower()
    if not arch:
        return str(meta.get("source", "?"))
    label = f"{arch}-{recipe['epochs']}ep" if "epochs" in recipe else arch
    classes = recipe.get("classes")
    return label + (f"-c{''.join(map(str, classes))}" if isinstance(classes, list) and classes else "")


def recorded_meta(cfg: Mapping) -> dict | None:
    """The bank metadata a run's config.json recorded (a string map), or None."""
    meta = cfg.get("bank_meta")
    return meta if isinstance(meta, dict) and meta else None


def run_bank_recipe(cfg: Mapping) -> str:
    """The bank a run trained with, by its recipe: ``run_bank_id`` without the time the bank (or
    a merged bank's part) was made, so the same command on the same inputs on another machine
    names the same bank. What a report's per-run rows keep (``report --keep`` checks it)."""
    meta = recorded_meta(cfg)
    if not meta:
        return str(cfg.get("bank"))
    meta = {k: v for k, v in meta.items() if k != "created"}
    parts = merged_parts(meta)
    if parts is not None:
        meta["merged"] = [{k: v for k, v in m.items() if k != "created"} for m in parts]
    return json.dumps(meta, sort_keys=True)


def run_bank_id(cfg: Mapping) -> str:
    """The identity of the bank a run trained with: ``bank_id`` of its recorded metadata, else
    the ``--bank`` it was given (runs that recorded none). The identity the report groups and
    pairs runs by."""
    meta = recorded_meta(cfg)
    return bank_id(meta) if meta else str(cfg.get("bank"))
