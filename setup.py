"""Install fastreg; builds the native sampler extension when a compiler is there.

CUDA + CPU when nvcc and a CUDA build of torch are present, CPU-only otherwise,
none with FASTREG_NO_EXT=1 (the package then falls back to pure torch).
"""
import os
import shutil

from setuptools import find_packages, setup


def _guess_cuda_home():
    """Set CUDA_HOME when unset and `nvcc` is a wrapper script (torch would guess its parent)."""
    if os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH"):
        return
    nvcc = shutil.which("nvcc")
    roots = [os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))] if nvcc else []
    for root in roots + ["/usr/local/cuda"]:
        if os.path.exists(os.path.join(root, "include", "cuda_runtime.h")):
            os.environ["CUDA_HOME"] = root
            return


def _extensions():
    """``fastreg._C`` (kernels/): CUDA+CPU, CPU-only, or none; a failed build is not fatal.

    Env: FASTREG_NO_EXT=1 skips it, FASTREG_NO_CUDA=1 forces CPU-only,
    FASTREG_REQUIRE_EXT=1 turns a failed build into an error (for CI).
    """
    if os.environ.get("FASTREG_NO_EXT") == "1":
        return [], {}
    _guess_cuda_home()
    try:
        import torch
        from torch.utils import cpp_extension as ce
    except ImportError:  # pip without --no-build-isolation: no torch at build time
        return [], {}
    nvcc = ce.CUDA_HOME and os.path.exists(os.path.join(ce.CUDA_HOME, "bin", "nvcc"))
    with_cuda = bool(nvcc and torch.version.cuda and os.environ.get("FASTREG_NO_CUDA") != "1")
    sources = ["kernels/sample.cpp", "kernels/module.cpp"]
    kw = dict(extra_compile_args={"cxx": ["-O3"]}, include_dirs=[os.path.abspath("kernels")])
    if with_cuda:
        # No GPU to detect at build time: default to A100 + H100/H200 SASS only (compile time).
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
        kw["extra_compile_args"]["nvcc"] = ["-O3", "-DFASTREG_WITH_CUDA"]
        kw["define_macros"] = [("FASTREG_WITH_CUDA", None)]
        ext = ce.CUDAExtension("fastreg._C", sources + ["kernels/sample_cuda.cu"], **kw)
    else:
        ext = ce.CppExtension("fastreg._C", sources, **kw)

    class BuildExt(ce.BuildExtension):
        """Fall back to pure torch (no extension) when compiling fails."""

        def build_extensions(self):
            try:
                super().build_extensions()
            except Exception as e:  # noqa: BLE001  (compiler missing/broken: any error type)
                if os.environ.get("FASTREG_REQUIRE_EXT") == "1":
                    raise
                print(f"WARNING: fastreg._C not built ({e!r}); using the pure-torch sampler")
                self.extensions = []

    return [ext], {"build_ext": BuildExt}


ext_modules, cmdclass = _extensions()

setup(
    name="fastreg",
    version="0.1.0",
    description="Adversarial filter regularization for small-data CNNs, with fused Triton "
                "and native CUDA kernels",
    packages=find_packages(include=["fastreg", "fastreg.*"]),
    package_data={"fastreg": ["assets/*.safetensors", "assets/*.json"]},
    python_requires=">=3.9",
    install_requires=[
        "torch>=2.4",
        "torchvision",
        "numpy",
        "safetensors",
        "tqdm",
        "matplotlib",
        "scipy",                        # report: paired-t CIs and p-values
        "triton; platform_system == 'Linux'",
    ],
    extras_require={"test": ["pytest", "pytest-benchmark"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
