"""The library's error types, in one place so no library module imports the CLI layer.

The CLIs (``fastreg.cli.run_main``) turn the first three into one line on stderr and
exit code 2, and ``NonFiniteError`` into exit code 3.
"""
from __future__ import annotations


class UsageError(Exception):
    """A problem with the user's input: reported as one line, exit code 2."""


class BankError(ValueError):
    """An unreadable, corrupt or unsuitable bank (reported as one line, exit code 2)."""


class UnsafeCheckpoint(ValueError):
    """A checkpoint that needs arbitrary unpickling (or is corrupt): never loaded."""


class NonFiniteError(RuntimeError):
    """Training produced NaN/Inf: stop, keep the last good checkpoint (exit code 3)."""
