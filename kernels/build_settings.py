"""Build settings of the native extension (kernels/), stated once.

Used by setup.py and the JIT build (fastreg/ops/_native.py), which load this file by path,
and by CMakeLists.txt, which runs ``python kernels/build_settings.py cmake``. No heavy
import at module level (setup.py may run without torch): torch is imported where needed.
"""
from __future__ import annotations

import os
import shutil
import sys

ARCHS = ("8.0", "9.0")  # default when no GPU to detect: A100 + H100/H200 SASS only (compile time)


def compile_flags(cuda: bool) -> list[str]:
    """Flags for both the C++ and the nvcc compiles of kernels/."""
    return ["-O3"] + (["-DFASTREG_WITH_CUDA"] if cuda else [])


def _guess_cuda_home() -> str | None:
    nvcc = shutil.which("nvcc")
    roots = [os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))] if nvcc else []
    for root in roots + ["/usr/local/cuda"]:
        if os.path.exists(os.path.join(root, "include", "cuda_runtime.h")):
            return root
    return None


def cuda_home() -> str | None:
    """CUDA_HOME or CUDA_PATH, else the real parent of `nvcc` on PATH (torch would take a
    wrapper script's parent), else /usr/local/cuda: the first with cuda_runtime.h."""
    return os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or _guess_cuda_home()


def set_cuda_home() -> None:
    """Export the guessed CUDA_HOME when unset; before torch.utils.cpp_extension reads it."""
    home = cuda_home()
    if home and not (os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")):
        os.environ["CUDA_HOME"] = home


def with_cuda() -> bool:
    """Build the CUDA kernels too: nvcc in torch's CUDA_HOME, a CUDA torch, no FASTREG_NO_CUDA=1."""
    set_cuda_home()
    import torch
    from torch.utils import cpp_extension as ce

    nvcc = ce.CUDA_HOME and os.path.exists(os.path.join(ce.CUDA_HOME, "bin", "nvcc"))
    return bool(nvcc and torch.version.cuda and os.environ.get("FASTREG_NO_CUDA") != "1")


def default_arch_list() -> list[str]:
    """ARCHS when no GPU is visible (else torch compiles for a dozen archs); [] when one is:
    torch then builds for the GPUs it sees, as it does by default."""
    try:
        import torch
    except ImportError:
        return list(ARCHS)
    return [] if torch.cuda.is_available() else list(ARCHS)


def set_default_arch_list() -> None:
    """setdefault TORCH_CUDA_ARCH_LIST to default_arch_list() (a user's value wins)."""
    archs = default_arch_list()
    if archs:
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", ";".join(archs))


def cmake() -> str:
    """CMake ``set()`` lines (lists as "a;b") for CMakeLists.txt to include()."""
    archs = default_arch_list()
    values = {
        "FASTREG_CXX_FLAGS": compile_flags(False),
        "FASTREG_CUDA_FLAGS": compile_flags(True),
        "FASTREG_TORCH_CUDA_ARCH_LIST": archs,  # 8.0;9.0
        "FASTREG_CUDA_ARCHITECTURES": [a.replace(".", "") for a in archs],  # 80;90
        "FASTREG_CUDA_HOME": [cuda_home() or ""],
    }
    return "".join(f"set({k} {_cmake_str(';'.join(v))})\n" for k, v in values.items())


def _cmake_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


if __name__ == "__main__":
    if sys.argv[1:] != ["cmake"]:
        sys.exit(f"usage: {sys.argv[0]} cmake")
    sys.stdout.write(cmake())
