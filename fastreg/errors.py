"""The library's error types, in one place so no library module imports the CLI layer.

The commands (``fastreg.lab.cli.run_main``) turn the first three into one line on stderr and
exit code 2, and ``NonFiniteError`` into exit code 3. An error about one argument of a
library function names it in the library's words and carries it as ``param`` (``arch``,
``width``, ``device``, …); a command puts the option the user typed in front (``--arch: …``).
"""
from __future__ import annotations


class UsageError(Exception):
    """A problem with the user's input: reported as one line, exit code 2. ``param``: the
    library argument it is about, where it is about one."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class BankError(ValueError):
    """An unreadable, corrupt or unsuitable bank (reported as one line, exit code 2);
    ``param`` as for ``UsageError``."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class UnsafeCheckpoint(ValueError):
    """A checkpoint that needs arbitrary unpickling (or is corrupt): never loaded."""


class NonFiniteError(RuntimeError):
    """Training produced NaN/Inf: stop, keep the last good checkpoint (exit code 3)."""
