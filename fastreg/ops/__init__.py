"""Public ops: ``disc_step`` (DESIGN.md §3) and ``sample_kernels`` (DESIGN.md §5)."""
from .disc_step import BACKENDS, disc_step, resolve_backend
from .sample import sample_kernels
from .disc_step_eager import DiscStepOutput

__all__ = ["disc_step", "sample_kernels", "DiscStepOutput", "BACKENDS", "resolve_backend"]
