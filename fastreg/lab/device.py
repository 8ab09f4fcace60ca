"""Device and precision choice shared by the CLIs."""
from __future__ import annotations

import sys

import torch

from ..errors import UsageError

_WARNED: set[str] = set()


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


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX, and oneDNN allowed to use them (``ONEDNN_MAX_CPU_ISA`` can cap it).

    Why: elsewhere bf16 autocast is emulated, about 20x slower than fp32 (measured on AVX2)."""
    cpu = torch.cpu
    native = any(getattr(cpu, f, lambda: False)() for f in ("_is_avx512_bf16_supported",
                                                            "_is_amx_tile_supported"))
    return bool(native and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _native_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return device.type == "cpu" and cpu_has_native_bf16()


def amp_precision(device: torch.device, amp: bool) -> str:
    """The precision ``--amp`` gets on ``device``: ``"bf16"`` (autocast) where the hardware
    has native bf16, else ``"fp32"``, said once per process in one line on stderr."""
    if not amp:
        return "fp32"
    if _native_bf16(device):
        return "bf16"
    if str(device) not in _WARNED:
        _WARNED.add(str(device))
        what = "CPU (AVX512-BF16 or AMX, usable by oneDNN)" if device.type == "cpu" else "GPU"
        sys.stderr.write(f"--amp: no native bf16 on this {what}; emulated bf16 autocast would be "
                         f"much slower, so this runs in fp32\n")
    return "fp32"
