"""Grade one submitted notebook: the pure worker function of the grading pipeline.

:func:`grade_submission` takes a *task* (plain data: where the notebook is, the master's cells,
the limits and the seed) and returns a *result* (plain data: per-cell scores, diagnoses,
problems, and the rendered feedback). It never touches the gradebook or the output folder, so a
local process pool, a sandboxed process or a Dask worker can run it and hand the result back to
the one coordinator that writes everything.

The notebook part drives nbgrader's own preprocessors in nbgrader's order (``ClearOutput``,
``DeduplicateIds``, ``OverwriteCells``, ``CheckCellMetadata``, ``Execute``, ``LimitOutput``) and
scores every grade cell with :func:`nbgrader.utils.determine_grade`. What it adds: defensive
reading, restoration of deleted test cells, warnings removed from stderr before scoring, a
reason for every zero that is not a wrong answer, and feedback without hidden tests.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import subprocess
import tempfile
import time
from types import SimpleNamespace

from .verify import DEFAULT_LIMITS as VERIFY_LIMITS
from .verify import PROBLEM_CODES as VERIFY_CODES

__all__ = ["PROBLEM_CODES", "grade_submission", "make_task", "parse_diagnosis"]

#: Reasons a submission can score zero (or lose points) for something other than a wrong
#: answer, in order of precedence. ``test-cell-restored`` is a flag, not a failure.
PROBLEM_CODES = {
    "missing-notebook": "the notebook is not in the submission",
    "unreadable": "the file cannot be read (corrupt JSON, invalid UTF-8, too large)",
    "wrong-format": "the file is not a valid Jupyter notebook of a supported version",
    "kernel-died": "the Python kernel died while running the notebook",
    "timeout": "a cell ran longer than the per-cell time limit",
    "grader-error": "the grader itself failed on this submission (a bug: please report it)",
    "tampering-suspected": VERIFY_CODES["tampering-suspected"],
    "verification-failed": VERIFY_CODES["verification-failed"],
    "test-cell-restored": "a test cell was deleted or edited and has been restored from the master",
    "review-suggested": VERIFY_CODES["review-suggested"],
}

_DIAGNOSIS = re.compile(r"\[check: ([^;\]]+); diagnosis: ([^\]]+)\]")
# A Python warning as warnings.showwarning prints it: "<file>:<line>: <Category>: <message>",
# followed by the indented source line when the source is available.
_WARNING = re.compile(r"^\S[^\n]*:\d+: \w*Warning: [^\n]*\n(?:[ \t]+[^\n]*\n?)?", re.MULTILINE)
# Enough for every traceback line nbgrader keeps; bounds what one cell can put in the result.
_MAX_TEXT = 20_000


def parse_diagnosis(text: str) -> tuple[str, str] | None:
    """Return ``(check id, diagnosis)`` from the last checker tag in ``text``, if any.

    The checkers end the text of every failure with ``[check: <id>; diagnosis: <mistake id
    or none>]`` (in a notebook, :class:`lossutils.checks.CheckFailed` shows the message
    without it); the grader counts these tags for the instructor's report and removes them
    from the message it keeps.

    Parameters
    ----------
    text : str
        Output of a test cell (an error message or a stream).

    Returns
    -------
    tuple of str or None
        The check id and the diagnosis (``"none"`` when the checker recognised no mistake), or
        ``None`` when ``text`` holds no tag.

    Examples
    --------
    >>> parse_diagnosis("overflow [check: softmax; diagnosis: no-max-shift]")
    ('softmax', 'no-max-shift')
    >>> parse_diagnosis("NameError: name 'softmax' is not defined") is None
    True
    """
    found = _DIAGNOSIS.findall(text)
    if not found:
        return None
    check_id, diagnosis = found[-1]
    return check_id.strip(), diagnosis.strip()


def _problem(code: str, detail: str) -> dict:
    return {"code": code, "detail": detail}


def _read_notebook(task: dict, problems: list[dict]):
    """Read the submitted file defensively; return ``(notebook or None, sha256 or tag)``."""
    import nbformat

    path = task.get("path")
    if path is None or not os.path.isfile(path):
        problems.append(_problem("missing-notebook", f"no {task['notebook']}.ipynb was submitted"))
        return None, "missing"
    size = os.path.getsize(path)
    if size > task["max_bytes"]:
        problems.append(
            _problem(
                "unreadable", f"the file is {size} bytes, over the {task['max_bytes']}-byte limit"
            )
        )
        return None, f"size:{size}"
    with open(path, "rb") as fh:
        raw = fh.read()
    digest = hashlib.sha256(raw).hexdigest()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.append(
            _problem(
                "unreadable", f"not valid UTF-8 (byte {raw[exc.start]:#04x} at offset {exc.start})"
            )
        )
        return None, digest
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        problems.append(
            _problem(
                "unreadable", f"corrupt JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
            )
        )
        return None, digest
    if not isinstance(data, dict) or ("cells" not in data and "worksheets" not in data):
        problems.append(
            _problem(
                "wrong-format",
                f"not a Jupyter notebook (top level is a JSON {type(data).__name__} without cells)",
            )
        )
        return None, digest
    major = data.get("nbformat")
    if not isinstance(major, int) or major < 3:
        problems.append(
            _problem("wrong-format", f"unsupported notebook format version {major!r} (need 3 or 4)")
        )
        return None, digest
    errors: dict = {}
    try:
        nb = nbformat.reads(text, as_version=4, capture_validation_error=errors)
        nbformat.validate(nb)
    except Exception as exc:  # nbformat raises many types on malformed structure
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        problems.append(_problem("wrong-format", f"invalid notebook structure: {first[:200]}"))
        return None, digest
    return nb, digest


class _MasterCells:
    """The part of nbgrader's Gradebook that ``OverwriteCells`` reads, served from plain data.

    Workers must not open the gradebook, so the master's source cells travel in the task and this
    adapter answers ``find_source_cell``/``find_graded_cell`` exactly as the database would.
    """

    def __init__(self, cells: list[dict]):
        self._cells = {c["name"]: SimpleNamespace(**c, max_score=c["points"]) for c in cells}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def find_source_cell(self, name, notebook, assignment):
        from nbgrader.api import MissingEntry

        try:
            return self._cells[name]
        except KeyError:
            raise MissingEntry() from None

    find_graded_cell = find_source_cell


def _sanitize(nb, task: dict, problems: list[dict], resources: dict):
    """nbgrader's sanitize step, plus the restoration and flagging of test cells."""
    from nbgrader.preprocessors import ClearOutput, DeduplicateIds, OverwriteCells

    master = task["master"]
    nb, resources = ClearOutput().preprocess(nb, resources)
    nb, resources = DeduplicateIds().preprocess(nb, resources)
    if master.get("kernelspec"):
        nb.metadata["kernelspec"] = master["kernelspec"]

    # Flag what the student did to the test cells before nbgrader silently repairs it.
    submitted = {}
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid is not None:
            submitted[gid] = cell
    for mc in master["cells"]:
        if not mc["grade"] or mc["solution"] or mc["cell_type"] != "code":
            continue
        cell = submitted.get(mc["name"])
        if cell is None:
            problems.append(
                _problem(
                    "test-cell-restored",
                    f"test cell {mc['name']} was deleted; restored from the master",
                )
            )
        elif cell.source.strip() != mc["release_source"].strip():
            problems.append(
                _problem(
                    "test-cell-restored",
                    f"test cell {mc['name']} was edited; restored from the master",
                )
            )

    overwrite = OverwriteCells()
    overwrite.gradebook = _MasterCells(master["cells"])
    overwrite.notebook_id = task["notebook"]
    overwrite.assignment_id = task["assignment"]
    nb, resources = super(OverwriteCells, overwrite).preprocess(nb, resources)
    _restore_missing(nb, master["cells"], overwrite, set(submitted))
    _metadata_validator().validate_nb(nb)
    return nb, resources


@functools.cache
def _metadata_validator():
    """nbgrader's cell metadata validator (what ``CheckCellMetadata`` runs), with its JSON
    schema checked once instead of once per cell.

    Stock nbgrader calls ``jsonschema.validate(metadata, schema)`` for every cell, which
    first validates the schema itself against the JSON Schema meta-schema: 0.1-0.2 s per
    notebook. Here a validator class sits between nbgrader's version-3 validator and its base
    class, so every check and message of nbgrader's stays, and only that repeated work goes.
    """
    import jsonschema
    from nbgrader.nbgraderformat import MetadataValidator
    from nbgrader.nbgraderformat.common import BaseMetadataValidator

    class _SchemaOnce(BaseMetadataValidator):
        def __init__(self):
            super().__init__()  # reads the schema
            cls = jsonschema.validators.validator_for(self.schema)
            cls.check_schema(self.schema)
            self._checked = cls(self.schema)

        def validate_cell(self, cell):
            meta = cell.metadata.get("nbgrader") if "nbgrader" in cell.metadata else None
            if meta is None or meta.get("schema_version", 0) != self.schema_version:
                return super().validate_cell(cell)  # nothing to check, or nbgrader's error
            error = jsonschema.exceptions.best_match(self._checked.iter_errors(meta))
            if error is not None:
                raise error

    class _Validator(MetadataValidator, _SchemaOnce):
        pass

    return _Validator()


def _restore_missing(nb, master_cells: list[dict], overwrite, present: set[str]) -> None:
    """Put deleted grade cells back after the nearest master cell the student still has.

    nbgrader's own ``add_missing_grade_cells`` looks only at grade and solution cells for the
    anchor and fails when a deleted cell follows a locked narrative cell; this searches every
    master cell, in master order.
    """
    import nbformat

    order = [c["name"] for c in master_cells]
    for i, mc in enumerate(master_cells):
        if not mc["grade"] or mc["name"] in present:
            continue
        source_cell = SimpleNamespace(**mc)
        new = nbformat.from_dict(
            overwrite.missing_cell_transform(source_cell, mc["points"], is_solution=mc["solution"])
        )
        new.setdefault("id", f"restored-{mc['name']}")
        position = 0
        for anchor in reversed(order[:i]):
            idx = next(
                (
                    k
                    for k, cell in enumerate(nb.cells)
                    if cell.metadata.get("nbgrader", {}).get("grade_id") == anchor
                ),
                None,
            )
            if idx is not None:
                position = idx + 1
                break
        nb.cells.insert(position, new)
        present.add(mc["name"])


def _strip_warnings(nb) -> None:
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


def _clip_outputs(nb, max_chars: int) -> None:
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


_ZYGOTE_FAILED: list[str] = []


def _zygote(task: dict):
    """This worker's kernel zygote for the task, or None to start a sandbox per kernel.

    Forking is used for sandboxed grading as root (see ``KernelZygote``); if the zygote
    cannot start here, the worker keeps the reason in ``_ZYGOTE_FAILED`` and starts every
    kernel in a sandbox of its own, which is exactly as isolated (results say ``"kernel":
    "started"`` instead of ``"forked"``).
    """
    from .sandbox import ZygoteError, kernel_zygote, zygote_supported

    if not task.get("sandbox", True) or not zygote_supported() or _ZYGOTE_FAILED:
        return None
    try:
        return kernel_zygote(preload=task["master"].get("preload", ()))
    except ZygoteError as exc:
        _ZYGOTE_FAILED.append(str(exc))
        return None


def start_zygotes(preload) -> None:
    """Start this thread's kernel zygote and verification zygote for masters importing
    ``preload`` (where forking is supported), as the first submission would."""
    from .verify import _verification_zygote

    _zygote({"sandbox": True, "master": {"preload": list(preload)}})
    _verification_zygote(VERIFY_LIMITS, [f"import {name}" for name in preload])


def _execute(nb, task: dict, workdir: str, problems: list[dict], resources: dict,
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
                os.environ, LOSSUTILS_GRADING_SEED=str(task["seed"]), NBGRADER_EXECUTION="autograde"
            )
            return super().start_new_kernel(**kwargs)

        def on_cell_executed(self, **kwargs):
            super().on_cell_executed(**kwargs)
            done.add(kwargs["cell_index"])

    from .sandbox import sandbox_kernel_manager

    # The kernel runs in the sandbox (no network, no repository, limits; see SECURITY.md);
    # "immediate": the kernel is thrown away anyway, so don't wait for a polite shutdown.
    executor = _Tracking(
        timeout=task["timeout"], interrupt_on_timeout=True, shutdown_kernel="immediate",
        kernel_manager_class=sandbox_kernel_manager(
            seed=task["seed"], env={"NBGRADER_EXECUTION": "autograde"},
            sandbox=task.get("sandbox", True), zygote=zygote,
        ),
    )
    resources = dict(resources, metadata={"path": workdir})
    try:
        executor.preprocess(nb, resources)
    except DeadKernelError:
        problems.append(
            _problem("kernel-died", f"the kernel died while running {_first_unfinished(nb, done)}")
        )
    except CellTimeoutError:
        problems.append(
            _problem(
                "timeout",
                f"{_first_unfinished(nb, done)} ran past the {task['timeout']} s limit "
                "and could not be interrupted",
            )
        )
    for index in sorted(done):
        cell = nb.cells[index]
        if any(o.output_type == "error" and o.ename == "CellTimeoutError" for o in cell.outputs):
            problems.append(
                _problem(
                    "timeout", f"{_cell_label(cell, index)} ran past the {task['timeout']} s limit"
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


def _test_message(cell) -> str | None:
    """The student-facing message of a failed test cell: the exception, never its traceback."""
    for out in cell.outputs:
        if out.output_type == "error":
            return f"{out.ename}: {out.evalue}"[:_MAX_TEXT]
    for out in cell.outputs:
        if out.output_type == "stream" and out.name == "stderr":
            return out.text[:_MAX_TEXT]
    return None


def _score_cells(nb, master: dict, done: set[int], executed: bool) -> list[dict]:
    """One record per master grade cell, scored as nbgrader's SaveAutoGrades would."""
    from nbgrader import utils

    by_id = {}
    for index, cell in enumerate(nb.cells if nb is not None else []):
        if utils.is_grade(cell):
            by_id[cell.metadata.nbgrader["grade_id"]] = (index, cell)
    records = []
    for mc in master["cells"]:
        if not mc["grade"]:
            continue
        record = {
            "grade_id": mc["name"],
            "kind": "manual" if mc["solution"] or mc["cell_type"] != "code" else "test",
            "max_score": float(mc["points"]),
            "score": 0.0,
            "check": None,
            "diagnosis": None,
            "message": None,
            "comment": None,
        }
        if mc["name"] in by_id and executed:
            index, cell = by_id[mc["name"]]
            if cell.cell_type == "code" and index not in done:
                record["message"] = "not run: execution stopped before this cell"
            else:
                score, _ = utils.determine_grade(cell)
                record["score"] = None if score is None else float(score)
                if utils.is_solution(cell):
                    unchanged = cell.metadata.nbgrader.get("checksum") == utils.compute_checksum(
                        cell
                    )
                    record["comment"] = "No response." if unchanged else None
                elif cell.cell_type == "code" and record["score"] < record["max_score"]:
                    record["message"] = _test_message(cell)
                    tag = parse_diagnosis(record["message"] or "")
                    if tag is not None:
                        record["check"], record["diagnosis"] = tag
                        # the tag is for the report; feedback shows the message without it
                        record["message"] = _DIAGNOSIS.sub("", record["message"]).rstrip()
        elif record["kind"] == "manual":
            record["comment"] = "No response."
        records.append(record)
    return records


def _feedback_html(nb, task: dict, records: list[dict], problems: list[dict]) -> str:
    """Render nbgrader's feedback template without hidden tests or test-cell tracebacks."""
    import nbformat
    from nbgrader.preprocessors import ClearHiddenTests

    from .feedback import render_feedback

    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    nb, _ = ClearHiddenTests().preprocess(nb, {})
    by_id = {r["grade_id"]: r for r in records}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        record = by_id.get(meta.get("grade_id"))
        if record is None or not meta.get("grade"):
            continue
        meta["score"] = record["score"]
        meta["points"] = record["max_score"]
        meta["comment"] = record["comment"]
        if record["kind"] == "test":
            # The traceback quotes the hidden test lines; the checker's message says it all
            # (without its tag, which is for the report).
            for out in cell.get("outputs", []):
                if out.output_type == "error":
                    out.traceback = [_DIAGNOSIS.sub("", f"{out.ename}: {out.evalue}").rstrip()]
    return render_feedback(nb, task, records, problems)


def make_task(
    *,
    student: str,
    assignment: str,
    notebook: str,
    path: str | None,
    master: dict,
    timeout: int,
    seed: int,
    max_bytes: int = 20_000_000,
    max_output_chars: int = 20_000,
    feedback: bool = True,
    keep_notebook: bool = True,
    sandbox: bool = True,
    master_notebook: str | None = None,
) -> dict:
    """The plain-data task :func:`grade_submission` takes, for one submitted notebook.

    ``master`` is what :func:`lossutils.grading.masters.load_master` returns; the task carries
    the part of it for ``master_notebook`` (default: the notebook of the same name). ``path``
    is None for a missing notebook.
    """
    return {
        "student": student,
        "assignment": assignment,
        "notebook": notebook,
        "path": path,
        "master": {
            "hash": master["hash"],
            "files": master["files"],
            **master["notebooks"][master_notebook or notebook],
        },
        "timeout": timeout,
        "seed": seed,
        "max_bytes": max_bytes,
        "max_output_chars": max_output_chars,
        "feedback": feedback,
        "keep_notebook": keep_notebook,
        "sandbox": sandbox,
    }


def grade_submission(task: dict) -> dict:
    """Grade one submitted notebook and return the result as plain data.

    The function is pure in the sense that matters for distribution: everything it needs is in
    ``task``, everything it produces is in the returned dict (numbers, strings, lists, dicts);
    it writes only inside a private temporary folder that it removes, and it starts a fresh
    kernel, so no state passes from one submission to the next.

    Parameters
    ----------
    task : dict
        ``student``, ``assignment``, ``notebook`` (name without ``.ipynb``), ``path`` (the
        submitted file, or ``None`` when it is missing), ``master`` (from
        :func:`lossutils.grading.masters.load_master`: ``cells``, ``kernelspec``, ``files``,
        ``hash``), ``timeout`` (seconds per cell), ``seed`` (``LOSSUTILS_GRADING_SEED`` for the
        hidden checks), ``max_bytes`` (largest file read), ``max_output_chars`` (per output),
        ``feedback`` (render feedback HTML) and ``keep_notebook`` (return the executed notebook).

    Returns
    -------
    dict
        ``student``, ``assignment``, ``notebook``, ``hash`` (sha256 of the file), ``seed``,
        ``status`` (``"ok"`` or the first problem code), ``problems`` (list of ``{code,
        detail}``), ``cells`` (one record per grade cell: ``grade_id``, ``kind``, ``score``
        (``None`` = needs manual grading), ``max_score``, ``check``, ``diagnosis``,
        ``message``, ``comment``), ``score``, ``max_score``, ``autograded`` (the executed
        notebook as JSON text, hidden tests included: instructor only), ``feedback_html`` and
        ``seconds``.

    Notes
    -----
    Scores follow :func:`nbgrader.utils.determine_grade`: a test cell earns its points unless
    its output holds an error or stderr text (Python warnings are removed first); a manually
    graded answer left as released scores 0, otherwise it waits for a human. Cells that never
    ran (the kernel died or an uninterruptible cell timed out) score 0, unlike stock nbgrader.
    """
    start = time.monotonic()
    problems: list[dict] = []
    master = task["master"]
    result = {
        "student": task["student"],
        "assignment": task["assignment"],
        "notebook": task["notebook"],
        "seed": task["seed"],
        "master_hash": master["hash"],
        "autograded": None,
        "feedback_html": None,
    }
    nb = executed = None
    done: set[int] = set()
    try:
        nb, result["hash"] = _read_notebook(task, problems)
        if nb is not None:
            resources = {
                "nbgrader": {
                    "notebook": task["notebook"],
                    "assignment": task["assignment"],
                    "student": task["student"],
                    "db_url": None,
                }
            }
            try:
                nb, resources = _sanitize(nb, task, problems, resources)
            except Exception as exc:  # nbgrader's metadata validator raises on forged metadata
                problems.append(
                    _problem(
                        "wrong-format",
                        "nbgrader cell metadata is corrupted "
                        f"({(str(exc).strip().splitlines() or ['?'])[0][:200]}); start from a "
                        "fresh copy of the released notebook and paste the answers into it",
                    )
                )
                nb = None
        if nb is not None:
            zygote = _zygote(task)
            result["kernel"] = "forked" if zygote is not None else "started"
            with tempfile.TemporaryDirectory(
                prefix="lossutils-grade-", dir=zygote.slots if zygote else None
            ) as workdir:
                for rel, content in master.get("files", {}).items():
                    dest = os.path.join(workdir, rel)
                    os.makedirs(os.path.dirname(dest), exist_ok=True)
                    with open(dest, "wb") as fh:
                        fh.write(content)
                try:
                    done = _execute(nb, task, workdir, problems, resources, zygote)
                finally:
                    if zygote is not None:  # nothing of this kernel may outlive it
                        zygote.release_all()
            executed = True
            from nbgrader.preprocessors import LimitOutput

            _strip_warnings(nb)
            nb, _ = LimitOutput().preprocess(nb, {})
            _clip_outputs(nb, task["max_output_chars"])
        records = _score_cells(nb, master, done, bool(executed))
        if executed:
            from .verify import apply_verification

            # The final score of every checked exercise is the one verified outside the
            # student's kernel; disagreement is flagged as suspected tampering.
            folded = apply_verification(
                {"cells": records, "problems": problems}, nb, master["cells"],
                seed=task["seed"], sandbox=task.get("sandbox", True),
                call_timeout=task["timeout"],
            )
            result["scan"] = folded["scan"]
    except Exception as exc:  # a grader bug must cost one submission, never the batch
        problems.append(_problem("grader-error", f"{type(exc).__name__}: {exc}"[:500]))
        records = _score_cells(None, master, set(), False)
        nb = None
    result.setdefault("hash", "unknown")
    result["cells"] = records
    result["problems"] = problems
    order = list(PROBLEM_CODES)
    codes = sorted({p["code"] for p in problems}, key=order.index)
    result["status"] = codes[0] if codes else "ok"
    result["score"] = sum(r["score"] or 0.0 for r in records)
    result["max_score"] = sum(r["max_score"] for r in records)
    import nbformat

    if nb is not None and task.get("keep_notebook", True):
        result["autograded"] = nbformat.writes(nb)
    if task.get("feedback", True):
        # without a notebook (unreadable, missing, wrong format) the page says why it scored 0
        shown = nb if nb is not None else nbformat.v4.new_notebook()
        try:
            result["feedback_html"] = _feedback_html(shown, task, records, problems)
        except Exception as exc:  # feedback is a courtesy; the grade stands without it
            problems.append(_problem("grader-error", f"feedback failed: {exc}"[:500]))
    result["seconds"] = round(time.monotonic() - start, 3)
    return result
