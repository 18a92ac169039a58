"""Read a submitted file defensively: every way it can be broken becomes a named problem."""

from __future__ import annotations

import hashlib
import json
import os

from ..problems import Problem
from ..task import Task

__all__ = ["read_notebook"]


def read_notebook(task: Task, problems: list[Problem]):
    """Read the submitted file defensively; return ``(notebook or None, sha256 or tag)``."""
    import nbformat

    path = task.path
    if path is None or not os.path.isfile(path):
        problems.append(Problem("missing-notebook", f"no {task.notebook}.ipynb was submitted"))
        return None, "missing"
    size = os.path.getsize(path)
    if size > task.max_bytes:
        problems.append(
            Problem(
                "unreadable", f"the file is {size} bytes, over the {task.max_bytes}-byte limit"
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

