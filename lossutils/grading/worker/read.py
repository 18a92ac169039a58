"""Read a submitted file defensively: every way it can be broken becomes a named problem."""

from __future__ import annotations

import hashlib
import json
import os

from ..discover import Refused, open_submitted, unsafe_name
from ..problems import Problem
from ..task import Task

__all__ = ["read_notebook"]


def read_notebook(task: Task, problems: list[Problem]):
    """Read the submitted file defensively; return ``(notebook or None, sha256 or tag)``.

    Only a regular file of its own inside the submissions folder is read
    (:func:`~lossutils.grading.discover.open_submitted`), and only for a student whose name
    no browser or terminal would act on; anything else is ``suspicious-file``.
    """
    import nbformat

    reason = unsafe_name(task.student)
    if reason is not None:
        problems.append(Problem("suspicious-file", f"not graded: {reason}"))
        return None, "refused:name"
    if task.refused is not None:
        kind, why = task.refused
        problems.append(Problem("suspicious-file", f"not read: {why}"))
        return None, f"refused:{kind}"
    if task.path is None:
        problems.append(Problem("missing-notebook", f"no {task.notebook}.ipynb was submitted"))
        return None, "missing"
    try:
        fd = open_submitted(task.path, task.root)
    except FileNotFoundError:
        problems.append(Problem("missing-notebook", f"no {task.notebook}.ipynb was submitted"))
        return None, "missing"
    except Refused as exc:
        problems.append(Problem("suspicious-file", f"not read: {exc}"))
        return None, f"refused:{exc.kind}"
    except OSError as exc:  # O_NOFOLLOW's ELOOP: a link swapped in after the check
        problems.append(Problem("suspicious-file", f"not read: {exc.strerror}"))
        return None, "refused:symlink"
    with os.fdopen(fd, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > task.max_bytes:
            problems.append(Problem(
                "unreadable", f"the file is {size} bytes, over the {task.max_bytes}-byte limit"))
            return None, f"size:{size}"
        raw = fh.read(task.max_bytes + 1)
    if len(raw) > task.max_bytes:  # it grew while being read
        problems.append(Problem(
            "unreadable", f"the file is over the {task.max_bytes}-byte limit"))
        return None, f"size:{len(raw)}"
    digest = hashlib.sha256(raw).hexdigest()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.append(
            Problem(
                "unreadable", f"not valid UTF-8 (byte {raw[exc.start]:#04x} at offset {exc.start})"
            )
        )
        return None, digest
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        problems.append(
            Problem(
                "unreadable", f"corrupt JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
            )
        )
        return None, digest
    if not isinstance(data, dict) or ("cells" not in data and "worksheets" not in data):
        problems.append(
            Problem(
                "wrong-format",
                f"not a Jupyter notebook (top level is a JSON {type(data).__name__} without cells)",
            )
        )
        return None, digest
    major = data.get("nbformat")
    if not isinstance(major, int) or major < 3:
        problems.append(
            Problem("wrong-format", f"unsupported notebook format version {major!r} (need 3 or 4)")
        )
        return None, digest
    errors: dict = {}
    try:
        nb = nbformat.reads(text, as_version=4, capture_validation_error=errors)
        nbformat.validate(nb)
    except Exception as exc:  # nbformat raises many types on malformed structure
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        problems.append(Problem("wrong-format", f"invalid notebook structure: {first[:200]}"))
        return None, digest
    return nb, digest

