"""Install fastreg; builds the native sampler extension when a compiler is there.

CUDA + CPU when nvcc and a CUDA build of torch are present, CPU-only otherwise,
none with FASTREG_NO_EXT=1 (the package then falls back to pure torch).
"""
import os

from setuptools import find_packages, setup


def _extensions():
    """The ``fastreg._C`` extension (filled in by the native-sampler work)."""
    return [], {}


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
        "triton; platform_system == 'Linux'",
    ],
    extras_require={"test": ["pytest", "pytest-benchmark", "scipy"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
