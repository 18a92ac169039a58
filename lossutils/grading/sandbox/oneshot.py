"""One-shot runs: a command run to completion in the sandbox, its output capped."""

from __future__ import annotations

import os
import selectors
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .bwrap import DEFAULT_LIMITS, SEED_ENV, Limits, sandbox_argv
from .processes import kill_tree

__all__ = ["SandboxedRun", "run_sandboxed"]


@dataclass
class SandboxedRun:
    """The result of :func:`run_sandboxed`: exit status, capped output, and what went wrong.

    ``returncode`` is the exit status; :func:`exit_signal` tells which signal ended the
    process (9: killed, e.g. at the wall-clock limit; 24: the CPU limit). ``stdout`` and
    ``stderr`` hold at most ``Limits.max_output_bytes`` each; ``truncated`` says whether more
    was printed.
    """

    returncode: int
    stdout: bytes
    stderr: bytes
    timed_out: bool = False
    truncated: bool = False
    seconds: float = 0.0




def run_sandboxed(
    argv: Sequence[str],
    *,
    workdir: str,
    limits: Limits = DEFAULT_LIMITS,
    seed: int | None = None,
    stdin: bytes = b"",
    sandbox: bool = True,
    **kwargs,
) -> SandboxedRun:
    """Run ``argv`` to completion in the sandbox, reading at most the output limit.

    Parameters
    ----------
    argv : sequence of str
        The command (``argv[0]`` an absolute path).
    workdir : str
        Private writable folder (see :func:`sandbox_argv`).
    limits : Limits
        Resource limits; ``wall_seconds`` bounds the whole run.
    seed : int, optional
        ``LOSSUTILS_GRADING_SEED`` inside.
    stdin : bytes
        Sent to the process's standard input.
    sandbox : bool, default True
        False runs ``argv`` directly (only for ``--unsandboxed`` grading): no isolation, but
        the same wall-clock and output limits.
    **kwargs
        Passed to :func:`sandbox_argv`.

    Returns
    -------
    SandboxedRun
    """
    if sandbox:
        cmd = sandbox_argv(argv, workdir=workdir, limits=limits, seed=seed, **kwargs)
        env = None
    elif kwargs:
        raise TypeError(f"unexpected arguments: {', '.join(kwargs)}")
    else:
        cmd = list(argv)
        env = dict(os.environ, **({SEED_ENV: str(seed)} if seed is not None else {}))
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=workdir, env=env,
                            start_new_session=True)
    out, err, truncated, timed_out = _communicate(proc, stdin, limits)
    return SandboxedRun(proc.returncode, out, err, timed_out, truncated,
                        round(time.monotonic() - start, 3))


def _communicate(proc, stdin: bytes, limits: Limits):
    """Feed stdin, read both pipes up to the cap, enforce the wall clock, reap the tree."""
    deadline = time.monotonic() + limits.wall_seconds
    cap = int(limits.max_output_bytes)
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    chunks = {out_fd: bytearray(), err_fd: bytearray()}
    truncated = timed_out = False
    try:
        proc.stdin.write(stdin)
        proc.stdin.close()
    except (BrokenPipeError, OSError):  # the process does not read its input
        pass
    with selectors.DefaultSelector() as sel:
        for pipe in (proc.stdout, proc.stderr):
            sel.register(pipe, selectors.EVENT_READ)
        open_pipes = 2
        while open_pipes:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            for key, _ in sel.select(timeout=min(left, 1.0)):
                data = os.read(key.fd, 65536)
                if not data:
                    sel.unregister(key.fileobj)
                    open_pipes -= 1
                    continue
                buf = chunks[key.fd]
                room = cap - len(buf)
                if len(data) > room:
                    truncated = True
                buf += data[:max(room, 0)]
    kill_tree(proc)
    proc.wait()
    proc.stdout.close()
    proc.stderr.close()
    return bytes(chunks[out_fd]), bytes(chunks[err_fd]), truncated, timed_out


