"""Public ops (SPEC §3–4): ``disc_step`` and ``sample_kernels``."""
from .disc_step import BACKENDS, disc_step, resolve_backend
from .sample import sample_kernels
from .types import DiscStepOutput

__all__ = ["disc_step", "sample_kernels", "DiscStepOutput", "BACKENDS", "resolve_backend"]
