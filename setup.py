"""Install fastreg; builds the native sampler extension when a compiler is there.

CUDA + CPU when nvcc and a CUDA build of torch are present, CPU-only otherwise,
none with FASTREG_NO_EXT=1 (the package then falls back to pure torch).
"""
import importlib.util
import os

from setuptools import find_packages, setup


def _build_settings():
    """kernels/build_settings.py, loaded by path: setup.py must not import the fastreg package."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels", "build_settings.py")
    spec = importlib.util.spec_from_file_location("fastreg_build_settings", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _extensions():
    """``fastreg._C`` (kernels/): CUDA+CPU, CPU-only, or none; a failed build is not fatal.

    Env: FASTREG_NO_EXT=1 skips it, FASTREG_NO_CUDA=1 forces CPU-only,
    FASTREG_REQUIRE_EXT=1 turns a failed build into an error (for CI).
    """
    if os.environ.get("FASTREG_NO_EXT") == "1":
        return [], {}
    bs = _build_settings()
    try:
        with_cuda = bs.with_cuda()  # sets CUDA_HOME first, as cpp_extension reads it on import
        from torch.utils import cpp_extension as ce
    except ImportError:  # pip without --no-build-isolation: no torch at build time
        return [], {}
    flags = bs.compile_flags(with_cuda)
    sources = ["kernels/sample.cpp", "kernels/module.cpp"]
    kw = dict(extra_compile_args={"cxx": flags}, include_dirs=[os.path.abspath("kernels")])
    if with_cuda:
        bs.set_default_arch_list()  # 8.0;9.0, unless a GPU is visible: torch builds for it
        kw["extra_compile_args"]["nvcc"] = list(flags)  # a copy: BuildExtension appends to each
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
    extras_require={"test": ["pytest", "pytest-benchmark", "ray"], "ray": ["ray"], "timm": ["timm"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
