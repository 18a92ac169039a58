"""Run a sanitised notebook in a fresh sandboxed kernel, and tidy what it printed.

The kernel is forked from this worker's kernel zygote when the grader runs as root, else
started in a sandbox of its own; either way nbgrader's ``Execute`` preprocessor drives it,
with a timeout per cell and a reason for every cell that did not finish.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import time

from ..pages import inert_tex
from ..problems import Problem
from ..sandbox import MAX_MESSAGE_BYTES
from ..task import Task

__all__ = [
    "MAX_IMAGE_CHARS",
    "ZYGOTE_FAILED",
    "OutputMeter",
    "budget_detail",
    "clip_outputs",
    "drop_active_outputs",
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


# What an output may show: text, math, images, HTML (cleaned when a page shows it) and JSON.
# Everything else is dropped: JavaScript, widgets (whose views load and run code), and types
# no page of the grader knows how to show safely.
_SHOWN = frozenset({"text/plain", "text/html", "text/markdown", "text/latex", "image/png",
                    "image/jpeg", "image/gif", "image/svg+xml", "application/json"})


def drop_active_outputs(nb) -> None:
    """Remove from the outputs every type that runs or loads code in a page (JavaScript,
    widgets, unknown types), and the notebook's widget state, and make TeX outputs' acting
    commands plain words (:func:`~lossutils.grading.pages.inert_tex`): neither the feedback
    page nor nbgrader's formgrader, which shows the autograded notebook, may run what a student
    sent."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data")
            if not data:
                continue
            dropped = [key for key in data if key not in _SHOWN]
            for key in dropped:
                del data[key]
                out.get("metadata", {}).pop(key, None)
            if dropped and not data:
                data["text/plain"] = (f"[an output of type {', '.join(sorted(dropped))[:200]} "
                                      "was removed: the grader's pages run no code]")
            if isinstance(data.get("text/latex"), str):
                data["text/latex"] = inert_tex(data["text/latex"])


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


class OutputMeter:
    """What a notebook's outputs may keep: ``cell_bytes`` per cell, ``total_bytes`` in all.

    Outputs (and widget messages, whose state nbclient keeps) over either are dropped as they
    arrive (the kernel can send gigabytes), except what grading reads: an error is kept with
    its text shortened, and one line of stderr stands for whatever stderr was cut, so a failing
    cell still fails. ``cut`` records per cell how many outputs and bytes were dropped;
    :meth:`note` says it in the cell.
    """

    def __init__(self, cell_bytes: int, total_bytes: int):
        self.cell_bytes, self.total_bytes = cell_bytes, total_bytes
        self.kept: dict[int, int] = {}
        self.cut: dict[int, list[int]] = {}
        self._stderr_noted: set[int] = set()

    def admit(self, msg: dict, cell_index: int) -> dict | None:
        """The message to process (perhaps shortened), or None to drop it."""
        content = msg["content"]
        size = _size(msg["msg_type"], content)
        kept = self.kept.get(cell_index, 0)
        if kept + size <= self.cell_bytes and sum(self.kept.values()) + size <= self.total_bytes:
            self.kept[cell_index] = kept + size
            return msg
        cut = self.cut.setdefault(cell_index, [0, 0])
        cut[0] += 1
        cut[1] += size
        if msg["msg_type"] == "error":
            short = dict(content, evalue=str(content.get("evalue", ""))[:1000],
                         traceback=[f"{content.get('ename')}: {content.get('evalue')}"[:1000]])
            return dict(msg, content=short)
        if msg["msg_type"] == "stream" and content.get("name") == "stderr" \
                and cell_index not in self._stderr_noted:
            self._stderr_noted.add(cell_index)
            return dict(msg, content=dict(content, text="[stderr cut by the grader]\n"))
        return None

    def cleared(self, cell_index: int) -> None:
        """The cell's outputs were cleared: what it kept no longer counts."""
        self.kept.pop(cell_index, None)

    def note(self, nb) -> list[str]:
        """Append to each cell with cuts a line saying what was cut; return the cells' labels."""
        from nbformat.v4 import new_output

        labels = []
        for index, (count, size) in sorted(self.cut.items()):
            nb.cells[index].outputs.append(new_output("stream", name="stdout", text=(
                f"\n[the grader cut {count} more output(s), {size:,} bytes, of this cell: it "
                f"keeps {self.cell_bytes:,} bytes of a cell's output and "
                f"{self.total_bytes:,} of a notebook's]\n")))
            labels.append(_cell_label(nb.cells[index], index))
        return labels


def _size(msg_type: str, content: dict) -> int:
    """Bytes an output message adds to the notebook, roughly."""
    if msg_type == "stream":
        return len(str(content.get("text", "")))
    if msg_type == "error":
        return len(str(content.get("evalue", ""))) + sum(
            len(str(line)) for line in content.get("traceback", ()))
    if msg_type.startswith("comm"):  # widget state, which nbclient keeps
        return len(json.dumps(content.get("data", {})))
    size = 0
    for part in (content.get("data", {}), content.get("metadata", {})):
        for value in part.values():
            size += len(value) if isinstance(value, str) else len(json.dumps(value))
    return size


_OUTPUTS = ("stream", "display_data", "execute_result", "error", "update_display_data",
            "comm_open", "comm_msg")


def _is_test_cell(cell) -> bool:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return cell.cell_type == "code" and bool(meta.get("grade")) and not meta.get("solution")


def execute(nb, task: Task, workdir: str, problems: list[Problem], resources: dict,
            zygote=None, *, seed: int | None = None, deadline: float | None = None) -> set[int]:
    """Run the notebook in a fresh kernel; return the indices of the cells that completed.

    ``seed`` is what the kernel gets as ``LOSSUTILS_GRADING_SEED`` (default the task's);
    ``deadline`` (a :func:`time.monotonic` instant, default the task's budget from now) ends
    the run: a cell still running then is interrupted, the cells after it do not run. Test
    cells run without being stored in the kernel's history (``In``, ``_ih``), so a later cell
    cannot read the hidden tests there. Outputs are kept within the task's byte budgets
    (:class:`OutputMeter`).
    """
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from nbgrader.preprocessors import Execute

    seed = task.seed if seed is None else seed
    deadline = time.monotonic() + task.budget if deadline is None else deadline
    done: set[int] = set()
    meter = OutputMeter(task.cell_output_bytes, task.output_bytes)
    budget_cut: list[int] = []  # the cell the budget interrupted, or stopped before

    def cell_timeout(cell):
        return max(1, min(task.timeout, math.ceil(deadline - time.monotonic())))

    class _Tracking(Execute):
        def start_new_kernel(self, **kwargs):
            # The kernel's own stderr (start-up chatter) would land on the grader's terminal.
            kwargs.setdefault("stdout", subprocess.DEVNULL)
            kwargs.setdefault("stderr", subprocess.DEVNULL)
            # The seed goes to this kernel only, never into the grader's own environment.
            kwargs["env"] = dict(
                os.environ, LOSSUTILS_GRADING_SEED=str(seed), NBGRADER_EXECUTION="autograde"
            )
            return super().start_new_kernel(**kwargs)

        def execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
            if budget_cut:
                return cell
            if cell.cell_type == "code" and time.monotonic() >= deadline:
                budget_cut.append(cell_index)
                return cell
            cell = super().execute_cell(cell, cell_index, execution_count,
                                        store_history=store_history and not _is_test_cell(cell))
            if time.monotonic() >= deadline and any(
                    o.output_type == "error" and o.ename == "CellTimeoutError"
                    for o in cell.outputs):
                budget_cut.append(cell_index)
            return cell

        def process_message(self, msg, cell, cell_index):
            if msg["msg_type"] in _OUTPUTS:
                msg = meter.admit(msg, cell_index)
                if msg is None:
                    return None
            out = super().process_message(msg, cell, cell_index)
            if msg["msg_type"] == "clear_output" and not cell.outputs:
                meter.cleared(cell_index)
            return out

        def on_cell_executed(self, **kwargs):
            super().on_cell_executed(**kwargs)
            done.add(kwargs["cell_index"])

    from ..sandbox import sandbox_kernel_manager

    # The kernel runs in the sandbox (no network, no repository, limits; see SECURITY.md);
    # "immediate": the kernel is thrown away anyway, so don't wait for a polite shutdown.
    executor = _Tracking(
        timeout=task.timeout, timeout_func=cell_timeout, interrupt_on_timeout=True,
        shutdown_kernel="immediate",
        kernel_manager_class=sandbox_kernel_manager(
            seed=seed, env={"NBGRADER_EXECUTION": "autograde"},
            sandbox=task.sandbox, zygote=zygote,
            max_message_bytes=max(MAX_MESSAGE_BYTES, 4 * task.cell_output_bytes),
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
        if index not in budget_cut and any(
                o.output_type == "error" and o.ename == "CellTimeoutError" for o in cell.outputs):
            problems.append(
                Problem(
                    "timeout", f"{_cell_label(cell, index)} ran past the {task.timeout} s limit"
                )
            )
    if budget_cut:
        problems.append(Problem("timeout", budget_detail(task, _cell_label(
            nb.cells[budget_cut[0]], budget_cut[0]))))
    cut = meter.note(nb)
    if cut:
        problems.append(Problem("output-truncated", "output cut in " + ", ".join(cut[:5])
                                + (f" and {len(cut) - 5} more cells" if len(cut) > 5 else "")))
    return done


def budget_detail(task: Task, where: str) -> str:
    """The reason of a submission that ran out of its time budget at ``where``."""
    return (f"the submission as a whole ran past its {task.budget:g} s budget (kernel and "
            f"verification together) at {where}; what was not done by then scores 0")


def _cell_label(cell, index: int) -> str:
    gid = cell.metadata.get("nbgrader", {}).get("grade_id")
    return f"cell {index + 1}" + (f" ({gid})" if gid else "")


def _first_unfinished(nb, done: set[int]) -> str:
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and index not in done:
            return _cell_label(cell, index)
    return "the last cell"

