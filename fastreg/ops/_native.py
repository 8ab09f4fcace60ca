"""Loads the compiled ``fastreg._C`` extension if it was built; None otherwise."""
from __future__ import annotations

import os

_op = False  # False = not tried yet


def load():
    """The callable ``torch.ops.fastreg.sample_kernels`` or None (clean fallback)."""
    global _op
    if _op is False:
        _op = None
        if os.environ.get("FASTREG_NO_EXT") != "1":
            try:
                import torch
                from .. import _C  # noqa: F401  (registers torch.ops.fastreg.*)
                _op = torch.ops.fastreg.sample_kernels
            except (ImportError, OSError, AttributeError, RuntimeError):
                _op = None
    return _op
