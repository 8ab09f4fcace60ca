"""Device choice shared by the CLIs."""
from __future__ import annotations

import torch

from .cli import UsageError


def pick_device(arg: str | None) -> torch.device:
    """``--device``: explicit, else CUDA when available, else CPU."""
    if arg in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(arg)
    except RuntimeError:
        raise UsageError(f"unknown device {arg!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {arg}: CUDA is not available on this machine")
    if dev.type not in ("cpu", "cuda"):
        raise UsageError(f"--device {arg}: only cpu and cuda are supported")
    return dev
