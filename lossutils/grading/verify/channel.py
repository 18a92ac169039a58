"""The verification process and its channel: JSON lines to a sandboxed plain Python.

:class:`Runner` starts (or forks from a verification zygote) a process that runs
:mod:`lossutils.grading.verify._runner` with no IPython and no ``lossutils``, and talks to it
one JSON line at a time; anything it cannot finish (a timeout, a crash, a limit, a malformed
answer) ends it with :class:`Fatal` and a reason.
"""

from __future__ import annotations

import ast
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from ..sandbox import Limits, exit_signal, kill_tree, sandbox_argv
from .cells import NOT_IN_PRELUDE

__all__ = ["RUNNER_SOURCE", "ZYGOTE_FAILED", "Fatal", "Runner", "core_source",
           "verification_zygote"]



class Fatal(Exception):
    """The verification process cannot go on (timeout, crash, limit, malformed answer)."""


#: Why this process's verification zygote could not start (then every verification process
#: is started on its own, exactly as isolated).
ZYGOTE_FAILED: list[str] = []


def verification_zygote(limits: Limits, prelude: Sequence[str]):
    """This thread's verification zygote, preloading numpy and the prelude's imports; or None.

    Forking the verification process from it saves a Python start-up and numpy's import per
    submission. The zygote runs in a sandbox without ``lossutils`` and never imports it; each
    fork is isolated like a forked kernel (see :class:`~lossutils.grading.sandbox.KernelZygote`).
    """
    from ..sandbox import ZygoteError, kernel_zygote, zygote_supported

    if not zygote_supported() or ZYGOTE_FAILED:
        return None
    modules = ["numpy"]
    for source in prelude:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules.append(node.module)
    preload = [m for m in dict.fromkeys(modules) if m.split(".")[0] not in NOT_IN_PRELUDE]
    try:
        return kernel_zygote(limits, preload, bare=True)
    except ZygoteError as exc:
        ZYGOTE_FAILED.append(str(exc))
        return None


class Runner:
    """One sandboxed verification process and its JSON-lines channel.

    Forked from ``zygote`` when one is given (see :func:`verification_zygote`), else started
    as ``python -I -c <runner>`` in a sandbox of its own.
    """

    def __init__(self, *, limits: Limits, sandbox: bool, call_timeout: float, zygote=None,
                 deadline: float | None = None):
        from ..sandbox import ZygoteError
        from ..sandbox.bwrap import sandbox_uid

        self.limits = limits
        self.call_timeout = call_timeout
        # the submission's budget (a time.monotonic() instant) ends the process like its own
        # wall-clock limit, with its own reason
        self.budget = deadline if deadline is not None else float("inf")
        self.deadline = min(time.monotonic() + limits.wall_seconds, self.budget)
        self.buffer = bytearray()
        self.dead: str | None = None
        self.tmp = None
        if zygote is not None:
            try:
                self.proc = zygote.spawn(sandbox_uid(), RUNNER_SOURCE)
                return
            except ZygoteError as exc:  # start this one on its own; later ones too
                ZYGOTE_FAILED.append(str(exc))
        self.tmp = tempfile.TemporaryDirectory(prefix="lossutils-verify-")
        workdir = self.tmp.name
        argv = [sys.executable, "-I", "-c", RUNNER_SOURCE]
        if sandbox:
            cmd = sandbox_argv(argv, workdir=workdir, limits=limits, with_lossutils=False)
            env = None
        else:
            cmd = argv
            env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "HOME")}
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, cwd=workdir, env=env,
                                     start_new_session=True)

    def _kill(self) -> None:
        if self.tmp is None:  # forked: every process of its user id
            self.proc.kill()
        else:
            kill_tree(self.proc)

    def request(self, message: dict, timeout: float) -> dict:
        if self.dead:
            raise Fatal(self.dead)
        try:
            self.proc.stdin.write(json.dumps(message).encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self.fail("crashed")
        return self._read_line(min(time.monotonic() + timeout, self.deadline))

    def _read_line(self, deadline: float) -> dict:
        cap = int(self.limits.max_output_bytes)
        fd = self.proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self.buffer:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.fail("budget" if time.monotonic() >= self.budget else "timeout")
                if not sel.select(timeout=left):
                    continue
                data = os.read(fd, 1 << 20)
                if not data:
                    self.fail("crashed")
                self.buffer += data
                if len(self.buffer) > cap:
                    self.fail("output")
        line, _, rest = bytes(self.buffer).partition(b"\n")
        self.buffer = bytearray(rest)
        try:
            reply = json.loads(line)
        except (ValueError, RecursionError):
            self.fail("protocol")
        if type(reply) is not dict:
            self.fail("protocol")
        return reply

    def fail(self, kind: str, detail: str | None = None):
        """End the process for ``kind`` (``timeout``, ``output``, ``protocol``, ``crashed``);
        raise :class:`Fatal` with the reason, ``detail`` saying what exactly."""
        code = None
        if kind == "crashed":  # it closed its output: let it end, for its own exit status
            try:
                code = self.proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
        self._kill()
        if code is None:
            code = self.proc.wait()
        self.dead = describe_death(kind, code, self.limits)
        if detail:
            self.dead += f" ({detail[:200]})"
        raise Fatal(self.dead)

    def load(self, prelude, cells, names) -> dict:
        """Run the checker's calling machinery, the prelude and the student's cells; return
        which cells raised and whether each of ``names`` is a function."""
        # each cell may take up to one call's time, as in the kernel; the load as a whole waits
        # for all of them
        reply = self.request({"op": "load", "core": core_source(), "prelude": prelude,
                              "cells": cells, "names": names,
                              "cell_timeout": self.call_timeout},
                             self.call_timeout * (len(cells) + 3))
        if reply.get("op") != "loaded" or type(reply.get("names")) is not dict \
                or type(reply.get("cells")) is not list:
            self.fail("protocol")
        reply["labels"] = [label for label, _ in cells]
        return reply

    def close(self) -> None:
        # No polite "exit": the process holds nothing worth a clean shutdown, and Python's
        # finalisation (numpy's included) would cost every submission 30-70 ms.
        self._kill()
        self.proc.wait()
        if self.tmp is None:
            self.proc.close()
            return
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except OSError:  # the pipe broke when the process died
                pass
        self.tmp.cleanup()


def describe_death(kind: str, code: int, limits: Limits) -> str:
    if kind == "timeout":
        return "timeout: the solution code ran past the time limit"
    if kind == "budget":
        return "budget: the submission as a whole ran out of its time budget"
    if kind == "output":
        return f"output: an answer exceeded {limits.max_output_bytes} bytes"
    if kind == "protocol":
        return "protocol: the verification process sent a malformed answer"
    sig = exit_signal(code)
    if sig == signal.SIGXCPU:
        return f"cpu: the solution code used more than {limits.cpu_seconds} s of CPU time"
    if sig == signal.SIGKILL:
        return "memory: the process was killed (most likely out of memory)"
    if sig is not None:
        return f"crashed: the process died from signal {sig}"
    return f"crashed: the solution code ended the process (exit code {code})"


#: The verification runner, run by source (``python -I -c``) where ``lossutils`` is absent.
RUNNER_SOURCE = Path(__file__).with_name("_runner.py").read_text(encoding="utf-8")


# The checker's modules that call the student's function and encode what it returned; they
# import only numpy, and the runner loads them in this order.
_CORE_MODULES = ("_given", "_plain", "_calling")


def core_source() -> list[tuple[str, str]]:
    import importlib

    sources = []
    for name in _CORE_MODULES:
        module = importlib.import_module(f"lossutils.checks.{name}")
        with open(module.__file__, encoding="utf-8") as fh:
            sources.append((name, fh.read()))
    return sources

