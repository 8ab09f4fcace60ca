"""Atomic file writes (temp + fsync + rename) and safe checkpoint loading.

A crash never leaves a truncated file under the final name.
"""
from __future__ import annotations

import io
import json
import math
import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from .errors import UnsafeCheckpoint, UsageError


def check_out_dir(path: str | os.PathLike, param: str = "out") -> None:
    """Fail before any work when ``path`` cannot become a folder (a file in the way,
    or a parent that cannot be written), instead of with a traceback at the first write."""
    p = Path(path).absolute()
    for q in (p, *p.parents):
        if q.exists():
            if not q.is_dir():
                raise UsageError(f"{path}: {q} is a file, not a folder", param)
            if not os.access(q, os.W_OK | os.X_OK):
                raise UsageError(f"{path}: {q} is not writable", param)
            return


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)          # mkstemp makes 0600; use normal permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def _check_finite(obj: Any, where: str = "") -> None:
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ValueError(f"refusing to write a non-finite number at {where or 'top level'}")
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check_finite(v, f"{where}.{k}" if where else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_finite(v, f"{where}[{i}]")


def dumps_json(obj: Any, indent: int | None = 2) -> str:
    """JSON text; NaN/Inf are refused so they never reach a results file."""
    _check_finite(obj)
    return json.dumps(obj, indent=indent, allow_nan=False)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (dumps_json(obj) + "\n").encode())


def atomic_write_jsonl(path: str | os.PathLike, rows: list[dict]) -> None:
    atomic_write_bytes(path, "".join(dumps_json(r, None) + "\n" for r in rows).encode())


def read_json(path: str | os.PathLike) -> Any:
    with open(path) as f:
        return json.load(f)


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def safe_torch_load(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load(weights_only=True)``: tensors, dicts, lists, numbers, strings only."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        what = f"it holds a pickled {found.group(1)} object" if found else "it holds pickled objects"
        raise UnsafeCheckpoint(f"{path}: refused to load: {what}, and fastreg never unpickles code; save "
                               f"the weights alone, torch.save(model.state_dict(), path), or as "
                               f".safetensors") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise UnsafeCheckpoint(f"{path}: cannot read checkpoint "
                               f"({str(e).splitlines()[0][:200]})") from None


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a safetensors file; ``ValueError`` with one readable line when it
    is not one (safetensors raises its own error types)."""
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"{path}: not a readable safetensors file ({str(e).splitlines()[0][:160]})") from None
