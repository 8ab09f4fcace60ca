"""kernels/build_settings.py: the one statement of the native build's settings (setup.py,
the JIT build and CMakeLists.txt all read it), so its CMake output must match the Python API."""
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "kernels" / "build_settings.py"


def _load():
    spec = importlib.util.spec_from_file_location("fastreg_build_settings", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bs = _load()


def test_no_torch_at_import():
    code = ("import importlib.util, sys\n"
            f"s = importlib.util.spec_from_file_location('b', {str(SCRIPT)!r})\n"
            "s.loader.exec_module(importlib.util.module_from_spec(s))\n"
            "assert 'torch' not in sys.modules, 'torch imported at module level'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_flags():
    assert bs.compile_flags(False) == ["-O3"]
    assert bs.compile_flags(True) == ["-O3", "-DFASTREG_WITH_CUDA"]


def test_no_cuda_env(monkeypatch):
    # a copy: with_cuda() may export CUDA_HOME, which should not outlive the test
    monkeypatch.setattr(os, "environ", {**os.environ, "FASTREG_NO_CUDA": "1"})
    assert bs.with_cuda() is False


def test_set_cuda_home_keeps_user_value(monkeypatch):
    monkeypatch.setenv("CUDA_HOME", "/nonexistent/cuda")
    bs.set_cuda_home()
    assert os.environ["CUDA_HOME"] == "/nonexistent/cuda"
    assert bs.cuda_home() == "/nonexistent/cuda"


def test_default_arch_list():
    import torch
    assert bs.default_arch_list() == ([] if torch.cuda.is_available() else ["8.0", "9.0"])


@pytest.mark.skipif(shutil.which("cmake") is None, reason="no cmake")
def test_cmake_output_parses_and_matches(tmp_path):
    (tmp_path / "settings.cmake").write_text(
        subprocess.run([sys.executable, str(SCRIPT), "cmake"], check=True, text=True,
                       capture_output=True).stdout)
    names = ["FASTREG_CXX_FLAGS", "FASTREG_CUDA_FLAGS", "FASTREG_TORCH_CUDA_ARCH_LIST",
             "FASTREG_CUDA_ARCHITECTURES", "FASTREG_CUDA_HOME"]
    (tmp_path / "print.cmake").write_text(
        f'include("{tmp_path / "settings.cmake"}")\n'
        + "".join(f'message("{n}=${{{n}}}")\n' for n in names))
    out = subprocess.run(["cmake", "-P", str(tmp_path / "print.cmake")], check=True, text=True,
                         capture_output=True).stderr  # message() writes to stderr
    got = dict(line.split("=", 1) for line in out.splitlines())
    archs = bs.default_arch_list()
    assert got == {
        "FASTREG_CXX_FLAGS": ";".join(bs.compile_flags(False)),
        "FASTREG_CUDA_FLAGS": ";".join(bs.compile_flags(True)),
        "FASTREG_TORCH_CUDA_ARCH_LIST": ";".join(archs),
        "FASTREG_CUDA_ARCHITECTURES": ";".join(a.replace(".", "") for a in archs),
        "FASTREG_CUDA_HOME": bs.cuda_home() or "",
    }
