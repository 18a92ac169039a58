"""Run a sanitised notebook in a fresh sandboxed kernel, and tidy what it printed.

The kernel is forked from this worker's kernel zygote when the grader runs as root, else
started in a sandbox of its own; either way nbgrader's ``Execute`` preprocessor drives it,
with a timeout per cell and a reason for every cell that did not finish.
"""

from __future__ import annotations

import os
import re
import subprocess

from ..problems import Problem
from ..task import Task

__all__ = [
    "MAX_IMAGE_CHARS",
    "ZYGOTE_FAILED",
    "clip_outputs",
    "execute",
    "kernel_zygote_for",
    "strip_warnings",
]

# A Python warning as warnings.showwarning prints it: "<file>:<line>: <Category>: <message>",
# followed by the indented source line when the source is available.
_WARNING = re.compile(r"^\S[^\n]*:\d+: \w*Warning: [^\n]*\n(?:[ \t]+[^\n]*\n?)?", re.MULTILINE)


def strip_warnings(nb) -> None:
    """Drop Python warnings from stderr so that correct code that warns keeps its points.

    nbgrader's ``IgnorePattern`` drops a whole stderr output when a pattern matches anywhere in
    it; this removes only the warning lines and keeps any other stderr text, which still costs
    the cell its points exactly as under stock nbgrader.
    """
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for out in cell.get("outputs", []):
            if out.output_type == "stream" and out.name == "stderr":
                out.text = _WARNING.sub("", out.text)
                if not out.text.strip():
                    continue
            kept.append(out)
        cell.outputs = kept


#: Largest image output kept (base64 characters): a figure is typically 20-150 kB.
MAX_IMAGE_CHARS = 2_000_000
_IMAGES = ("image/png", "image/jpeg", "image/gif")


def clip_outputs(nb, max_chars: int) -> None:
    """Bound every output, so one noisy cell cannot blow up the result or the feedback.

    Text is cut at ``max_chars``; an image is kept whole up to :data:`MAX_IMAGE_CHARS` and
    replaced by a note above it (a cut base64 image is a broken picture, not a shorter one).
    """
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream" and len(out.text) > max_chars:
                out.text = out.text[:max_chars] + "\n... output truncated by the grader ...\n"
            data = out.get("data", {})
            for key, value in list(data.items()):
                if not isinstance(value, str):
                    continue
                if key in _IMAGES:
                    if len(value) > MAX_IMAGE_CHARS:
                        del data[key]
                        data["text/plain"] = (f"[{key} output of {len(value) * 3 // 4:,} bytes "
                                              "not shown: larger than the grader keeps]")
                elif len(value) > max_chars:
                    data[key] = value[:max_chars] + "\n... output truncated by the grader ..."


#: Why this worker's kernel zygote could not start (then every kernel is started on its own).
ZYGOTE_FAILED: list[str] = []


def kernel_zygote_for(sandbox: bool, preload=()):
    """This worker's kernel zygote preloading ``preload``, or None to start a sandbox per kernel.

    Forking is used for sandboxed grading as root (see ``KernelZygote``); if the zygote
    cannot start here, the worker keeps the reason in :data:`ZYGOTE_FAILED` and starts every
    kernel in a sandbox of its own, which is exactly as isolated (results say ``"kernel":
    "started"`` instead of ``"forked"``).
    """
    from ..sandbox import ZygoteError, kernel_zygote, zygote_supported

    if not sandbox or not zygote_supported() or ZYGOTE_FAILED:
        return None
    try:
        return kernel_zygote(preload=preload)
    except ZygoteError as exc:
        ZYGOTE_FAILED.append(str(exc))
        return None


def execute(nb, task: Task, workdir: str, problems: list[Problem], resources: dict,
            zygote=None) -> set[int]:
    """Run the notebook in a fresh kernel; return the indices of the cells that completed."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from nbgrader.preprocessors import Execute

    done: set[int] = set()

    class _Tracking(Execute):
        def start_new_kernel(self, **kwargs):
            # The kernel's own stderr (start-up chatter) would land on the grader's terminal.
            kwargs.setdefault("stdout", subprocess.DEVNULL)
            kwargs.setdefault("stderr", subprocess.DEVNULL)
            # The seed goes to this kernel only, never into the grader's own environment.
            kwargs["env"] = dict(
                os.environ, LOSSUTILS_GRADING_SEED=str(task.seed), NBGRADER_EXECUTION="autograde"
            )
            return super().start_new_kernel(**kwargs)

        def on_cell_executed(self, **kwargs):
            super().on_cell_executed(**kwargs)
            done.add(kwargs["cell_index"])

    from ..sandbox import sandbox_kernel_manager

    # The kernel runs in the sandbox (no network, no repository, limits; see SECURITY.md);
    # "immediate": the kernel is thrown away anyway, so don't wait for a polite shutdown.
    executor = _Tracking(
        timeout=task.timeout, interrupt_on_timeout=True, shutdown_kernel="immediate",
        kernel_manager_class=sandbox_kernel_manager(
            seed=task.seed, env={"NBGRADER_EXECUTION": "autograde"},
            sandbox=task.sandbox, zygote=zygote,
        ),
    )
    resources = dict(resources, metadata={"path": workdir})
    try:
        executor.preprocess(nb, resources)
    except DeadKernelError:
        problems.append(
            Problem("kernel-died", f"the kernel died while running {_first_unfinished(nb, done)}")
        )
    except CellTimeoutError:
        problems.append(
            Problem(
                "timeout",
                f"{_first_unfinished(nb, done)} ran past the {task.timeout} s limit "
                "and could not be interrupted",
            )
        )
    for index in sorted(done):
        cell = nb.cells[index]
        if any(o.output_type == "error" and o.ename == "CellTimeoutError" for o in cell.outputs):
            problems.append(
                Problem(
                    "timeout", f"{_cell_label(cell, index)} ran past the {task.timeout} s limit"
                )
            )
    return done


def _cell_label(cell, index: int) -> str:
    gid = cell.metadata.get("nbgrader", {}).get("grade_id")
    return f"cell {index + 1}" + (f" ({gid})" if gid else "")


def _first_unfinished(nb, done: set[int]) -> str:
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and index not in done:
            return _cell_label(cell, index)
    return "the last cell"

