"""Running untrusted student code: isolated output, recorded warnings, guarded inputs.

:mod:`lossutils.grading.verify` runs this module and :mod:`._plain` by source inside its
sandbox: they import nothing but numpy and the standard library (and each other).
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._plain import from_plain, to_plain

__all__ = ["Outcome", "call_safely", "exception_text", "quiet", "same", "snapshot"]


@dataclass
class Outcome:
    """What happened when the student's function ran on one case (plain data only)."""

    output: object = None
    error: str | None = None
    warnings: tuple[str, ...] = ()
    stdout: str = ""
    modified: tuple[str, ...] = ()

    def to_plain(self) -> dict:
        """JSON-friendly form; ``output`` goes through :func:`to_plain`."""
        return {
            "output": to_plain(self.output),
            "error": self.error,
            "warnings": list(self.warnings),
            "stdout": self.stdout,
            "modified": list(self.modified),
        }

    @classmethod
    def from_plain(cls, data: dict) -> Outcome:
        """Rebuild an outcome produced by :meth:`to_plain` (possibly in another process)."""
        return cls(
            output=from_plain(data["output"]),
            error=None if data["error"] is None else str(data["error"]),
            warnings=tuple(str(w) for w in data["warnings"]),
            stdout=str(data["stdout"]),
            modified=tuple(str(m) for m in data["modified"]),
        )


def quiet(fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """Call trusted code (references, mistake models) with every warning silenced."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


# --------------------------------------------------------------------------- calling


def snapshot(value: Any) -> Any:
    """A deep copy of a checker-made input, to detect in-place modification later."""
    if type(value) is np.ndarray:
        return value.copy()
    if type(value) is dict:
        return {k: snapshot(v) for k, v in value.items()}
    if type(value) in (tuple, list):
        return type(value)(snapshot(v) for v in value)
    return copy.deepcopy(value)


def same(a: Any, b: Any) -> bool:
    """Whether a checker-made input equals its snapshot (arrays: values, dtype and shape)."""
    if type(a) is not type(b):
        return False
    if type(a) is np.ndarray:
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)
    if type(a) is dict:
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if type(a) in (tuple, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def exception_text(exc: BaseException) -> str:
    """``Name('message')`` for an exception, with the message cut to 200 characters."""
    try:
        text = str(exc)
    except Exception:  # a student exception whose __str__ fails
        text = "?"
    if len(text) > 200:
        text = text[:200] + "..."
    return f"{type(exc).__name__}({text!r})"


@contextlib.contextmanager
def _fd2_to(sink):
    """Point file descriptor 2 at ``sink`` so that even C-level writes stay off stderr."""
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 (some embedded front ends): nothing to protect
        yield
        return
    try:
        with contextlib.suppress(Exception):
            sys.__stderr__.flush()
        os.dup2(sink.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def call_safely(fn: Callable, args: tuple, kwargs: dict, names: Sequence[str]) -> Outcome:
    """Run ``fn(*args, **kwargs)`` capturing everything it could emit.

    ``fn`` receives copies of the inputs; after the call each copy is compared with its
    original, and ``names`` name the ones that changed. Warnings are recorded (numpy
    floating-point errors become RuntimeWarnings), stdout and stderr are captured at the
    Python level and file descriptor 2 at the OS level, and exceptions are caught, so that
    nothing the function does reaches the caller's stderr.
    """
    # The student gets copies, so the case itself stays intact for the judge.
    given = [snapshot(a) for a in args]
    kw_given = {k: snapshot(v) for k, v in kwargs.items()}
    out, err = io.StringIO(), io.StringIO()
    output, error = None, None
    with (
        tempfile.TemporaryFile() as fd_sink,
        warnings.catch_warnings(record=True) as caught,
        np.errstate(over="warn", divide="warn", invalid="warn", under="ignore"),
    ):
        warnings.simplefilter("always")
        with _fd2_to(fd_sink), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                output = fn(*given, **kw_given)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # SystemExit too: a student's exit() must not escape
                error = exception_text(exc)
        fd_sink.seek(0)
        written = fd_sink.read(10_000).decode(errors="replace")
    modified = [names[i] if i < len(names) else f"argument {i + 1}"
                for i, (a, b) in enumerate(zip(given, args, strict=True)) if not same(a, b)]
    modified += [k for k in kwargs if not same(kw_given[k], kwargs[k])]
    texts = []
    for w in caught:
        try:
            texts.append(f"{w.category.__name__}: {w.message}")
        except Exception:  # a student warning class with a broken __str__
            texts.append("Warning: ?")
    printed = out.getvalue() + err.getvalue() + written
    return Outcome(output, error, tuple(texts), printed, tuple(modified))
