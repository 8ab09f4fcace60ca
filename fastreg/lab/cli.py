"""Shared CLI plumbing: bad input → one line on stderr, exit code 2, no traceback."""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from ..errors import BankError, NonFiniteError, UnsafeCheckpoint, UsageError


class DefaultsFormatter(argparse.RawDescriptionHelpFormatter):
    """Help that shows each option's default once: appended where the help text does not
    already say it, left out where there is none (None, False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        d = action.default
        if ("default" in text.lower() or d is None or d is False or d is argparse.SUPPRESS or d == "" or d == []
                or not action.option_strings or action.nargs == 0):     # 0 and 0.0 are defaults to show
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


class Parser(argparse.ArgumentParser):
    """argparse that reports errors in one line (exit 2) instead of usage + error, and whose
    help shows every option's default (``DefaultsFormatter``)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        sys.exit(2)


# the option a user types for a library argument an error names (``errors.UsageError.param``)
FLAGS = {"arch": "--arch", "width": "--width", "device": "--device", "norms": "--chain-norms",
         "shrink": "--shrink", "out": "--out", "sources": "--sources"}


def flagged(e: Exception) -> str:
    """An error's line, led by the option the user typed where it is about one argument."""
    param = getattr(e, "param", None)
    return f"{FLAGS[param]}: {e}" if param in FLAGS else str(e)


def run_main(main: Callable[[Sequence[str] | None], int | None],
             argv: Sequence[str] | None = None) -> int:
    """Run ``main``; map known failures to one stderr line and an exit code."""
    try:
        return int(main(argv) or 0)
    except (UsageError, BankError, UnsafeCheckpoint) as e:
        sys.stderr.write(f"error: {flagged(e)}\n")
        return 2
    except NonFiniteError as e:
        sys.stderr.write(f"error: {e}\n")
        return 3
    except KeyboardInterrupt:
        sys.stderr.write("interrupted; rerun the same command with --resume to continue from the "
                         "last checkpoint\n")
        return 130


def entry(main: Callable[[Sequence[str] | None], int | None]) -> None:
    """A command run as ``python -m``: ``main`` through ``run_main``, then the process's exit
    (``distributed.exit_process``). Every entry point is ``if __name__ == "__main__": entry(main)``."""
    from ..distributed import exit_process
    exit_process(run_main(main))


def _int_at_least(minimum: int, what: str):
    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            v = None
        if v is None or v < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {s!r}")
        return v
    return parse


positive_int = _int_at_least(1, "a positive integer")
nonneg_int = _int_at_least(0, "an integer >= 0")


def nonneg_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {s!r}") from None
    if not v >= 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {s}")
    return v


def fraction(s: str) -> float:
    v = nonneg_float(s)
    if v > 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {s}")
    return v


def positive_float(s: str) -> float:
    v = nonneg_float(s)
    if v == 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {s}")
    return v


def int_list(s: str, opt: str, minimum: int) -> list[int]:
    """``--sizes 100,500``: distinct comma-separated integers >= ``minimum``."""
    try:
        v = [int(t) for t in s.split(",")]
    except ValueError:
        raise UsageError(f"{opt} must be comma-separated integers, got {s!r}") from None
    if len(set(v)) != len(v) or min(v) < minimum:
        raise UsageError(f"{opt} must be distinct integers >= {minimum}, got {s!r}")
    return v


def name_list(s: str, opt: str, known: Sequence[str]) -> list[str]:
    """``--methods a,b``: distinct comma-separated names, each one of ``known``."""
    v = [t.strip() for t in s.split(",")]
    for t in v:
        if t not in known:
            raise UsageError(f"unknown {opt[2:-1]} {t!r} in {opt}; choose from {', '.join(known)}")
    if len(set(v)) != len(v):
        raise UsageError(f"{opt} lists a name twice: {s!r}")
    return v


def layer_pairs(s: str | None, opt: str, form: str) -> dict[str, str]:
    """``LAYER=VALUE,...`` with each layer once (``--bank-map``, ``--vae-files``); ``{}`` when not given."""
    out: dict[str, str] = {}
    for item in s.split(",") if s else []:
        layer, eq, value = (t.strip() for t in item.partition("="))
        if not eq or not layer or not value or layer in out:
            raise UsageError(f"{opt} wants {form} with each layer once, got {s!r}")
        out[layer] = value
    return out
