"""What the grader needs to know about a master notebook, derived by nbgrader itself.

:func:`load_master` runs nbgrader's ``generate_assignment`` on a copy of
``<source>/<assignment>/`` inside a scratch folder, against a gradebook database, and reads
back what nbgrader stored: every source cell (with hidden tests), its checksum, the points of
every grade cell, the kernelspec, and the released text of each test cell. The result is plain
data, so it travels to workers (local or remote) inside each task.

Running ``generate_assignment`` against the output gradebook is also what makes that gradebook
complete for ``nbgrader formgrader`` and ``nbgrader export``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile

from ._patches import install_alembic_head
from .task import Master, MasterCell, MasterNotebook

__all__ = [
    "COURSE_ID",
    "MasterMismatch",
    "list_masters",
    "load_master",
    "master_hash",
    "preload_for",
    "preload_modules",
]

#: The course id of the repository's nbgrader_config.py; formgrader filters by it.
COURSE_ID = "lossutils"


class MasterMismatch(RuntimeError):
    """The gradebook holds a different version of an assignment than the master on disk."""


def list_masters(source: str) -> dict[str, list[str]]:
    """Map each assignment id under ``source`` to its notebook names (without ``.ipynb``).

    Examples
    --------
    >>> list_masters("/nonexistent")
    {}
    """
    found = {}
    if not os.path.isdir(source):
        return found
    for name in sorted(os.listdir(source)):
        folder = os.path.join(source, name)
        if not os.path.isdir(folder):
            continue
        notebooks = sorted(
            f[:-6] for f in os.listdir(folder) if f.endswith(".ipynb") and not f.startswith(".")
        )
        if notebooks:
            found[name] = notebooks
    return found


def master_hash(folder: str) -> str:
    """sha256 over every file of a master folder (names and bytes), in a stable order."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = os.path.join(root, name)
            digest.update(os.path.relpath(path, folder).encode())
            with open(path, "rb") as fh:
                digest.update(hashlib.sha256(fh.read()).digest())
    return digest.hexdigest()


def _prepare_nbgrader() -> None:
    """Make a new nbgrader gradebook cheap to create (:func:`~lossutils.grading._patches.
    install_alembic_head`), and possible without ``PATH`` set up: the executable's folder goes
    on ``PATH``, for nbgrader code that still runs the ``alembic`` command."""
    install_alembic_head()
    bindir = os.path.dirname(sys.executable)
    path = os.environ.get("PATH", "")
    if bindir not in path.split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + path


def _generate(assignment: str, folder: str, scratch: str, db_url: str) -> str:
    """Run nbgrader's generate_assignment on a copy of ``folder``; return the release folder."""
    import logging

    from nbgrader.converters import GenerateAssignment
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config

    _prepare_nbgrader()
    shutil.copytree(
        folder, os.path.join(scratch, "source", assignment), ignore=shutil.ignore_patterns(".*")
    )
    config = Config()
    config.CourseDirectory.root = scratch
    config.CourseDirectory.source_directory = "source"
    config.CourseDirectory.release_directory = "release"
    config.CourseDirectory.db_url = db_url
    config.CourseDirectory.course_id = COURSE_ID
    config.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
    coursedir = CourseDirectory(config=config)
    coursedir.assignment_id = assignment
    app = GenerateAssignment(coursedir=coursedir, config=config)
    app.force = True
    app.create_assignment = True
    app.log.setLevel(logging.ERROR)
    app.start()
    return os.path.join(scratch, "release", assignment)


def _has_assignment(db_url: str, assignment: str) -> bool:
    from nbgrader.api import Gradebook, MissingEntry

    _prepare_nbgrader()
    with Gradebook(db_url, COURSE_ID) as gb:
        try:
            return len(gb.find_assignment(assignment).notebooks) > 0
        except MissingEntry:
            return False


def _read_cells(
    db_url: str, assignment: str, notebook: str, release_nb: dict, master_nb: dict
) -> tuple[dict | None, tuple[MasterCell, ...]]:
    """The kernelspec and the cells nbgrader stored for one notebook, in master order."""
    from nbgrader.api import Gradebook

    released = {}
    for cell in release_nb["cells"]:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if gid is not None:
            released[gid] = (
                "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            )
    with Gradebook(db_url, COURSE_ID) as gb:
        nb = gb.find_notebook(notebook, assignment)
        source = {c.name: c for c in nb.source_cells}
        points = {c.name: float(c.max_score) for c in nb.grade_cells}
        points.update({c.name: float(c.max_score) for c in nb.task_cells})
        solutions = {c.name for c in nb.solution_cells}
        tasks = {c.name for c in nb.task_cells}
        kernelspec = json.loads(nb.kernelspec) if nb.kernelspec else None
        cells = []
        # master order, so restored cells land where the author put them
        for mcell in master_nb["cells"]:
            gid = mcell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            if gid not in source:
                continue
            sc = source[gid]
            cells.append(
                MasterCell(
                    name=gid,
                    cell_type=sc.cell_type,
                    locked=bool(sc.locked),
                    checksum=sc.checksum,
                    source=sc.source,
                    points=points.get(gid),
                    grade=gid in points and gid not in tasks,
                    solution=gid in solutions,
                    task=gid in tasks,
                    release_source=released.get(gid, ""),
                )
            )
    return kernelspec, tuple(cells)


def preload_modules(nb: dict) -> list[str]:
    """The modules a notebook imports at the top level of its code cells, in order.

    The grader's kernel zygote imports them once per worker instead of once per submission
    (:class:`lossutils.grading.sandbox.KernelZygote`). Relative imports, ``__future__`` and
    cells that do not parse (magics) are skipped.

    Parameters
    ----------
    nb : dict
        A notebook as JSON (the master).

    Returns
    -------
    list of str

    Examples
    --------
    >>> cell = {"cell_type": "code", "source": "import numpy as np\\nfrom lossutils import checks"}
    >>> preload_modules({"cells": [cell]})
    ['numpy', 'lossutils']
    """
    import ast

    found: list[str] = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.Import):
                found += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module != "__future__":
                    found.append(node.module)
    return list(dict.fromkeys(found))


def load_master(assignment: str, source: str, db_url: str | None = None) -> Master:
    """Derive the grader's view of one assignment from its master folder.

    Parameters
    ----------
    assignment : str
        Assignment id, the name of the folder ``<source>/<assignment>/``.
    source : str
        nbgrader's source directory (``solutions`` in this repository).
    db_url : str, optional
        SQLAlchemy URL of the gradebook to complete. When the gradebook lacks the assignment,
        nbgrader's ``generate_assignment`` writes it there (so formgrader and export work);
        when it already holds it, the stored source cells must match the master (else
        :class:`MasterMismatch`). Without ``db_url`` a scratch database is used.

    Returns
    -------
    Master
        The hash of the master folder, its other files (relative path to bytes, copied next to
        each submission as nbgrader does) and each notebook's kernelspec, cells (nbgrader's
        source-cell fields plus the released text) and top-level imports.

    Raises
    ------
    FileNotFoundError
        If the master folder holds no notebook.
    MasterMismatch
        If ``db_url`` already holds a different version of the assignment.
    """
    folder = os.path.join(source, assignment)
    names = list_masters(source).get(assignment)
    if not names:
        raise FileNotFoundError(f"no master notebook in {folder}/")
    with tempfile.TemporaryDirectory(prefix="lossutils-master-") as scratch:
        # nbgrader writes the assignment straight into a gradebook that lacks it; one that
        # already holds it is compared with a fresh scratch generation instead
        fresh = db_url is None or not _has_assignment(db_url, assignment)
        target = (
            db_url
            if fresh and db_url is not None
            else "sqlite:///" + os.path.join(scratch, "master.db")
        )
        release = _generate(assignment, folder, scratch, target)
        read = {}
        for name in names:
            with open(os.path.join(release, name + ".ipynb"), encoding="utf-8") as fh:
                release_nb = json.load(fh)
            with open(os.path.join(folder, name + ".ipynb"), encoding="utf-8") as fh:
                master_nb = json.load(fh)
            kernelspec, cells = _read_cells(target, assignment, name, release_nb, master_nb)
            read[name] = (kernelspec, cells, tuple(preload_modules(master_nb)))
        if not fresh:
            for name, (_, cells, _) in read.items():
                ids = {"cells": [{"metadata": {"nbgrader": {"grade_id": c.name}}} for c in cells]}
                _, stored = _read_cells(db_url, assignment, name, {"cells": []}, ids)
                if [c.checksum for c in stored] != [c.checksum for c in cells]:
                    raise MasterMismatch(
                        f"the gradebook {db_url} holds another version of {assignment}/{name} "
                        "than the master on disk; grade into a new --out folder (or --db), or "
                        "delete that gradebook to start again"
                    )
    files = {}
    for root, dirs, filenames in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for filename in filenames:
            if filename.endswith(".ipynb") or filename.startswith("."):
                continue
            path = os.path.join(root, filename)
            with open(path, "rb") as fh:
                files[os.path.relpath(path, folder)] = fh.read()
    digest = master_hash(folder)
    notebooks = {
        name: MasterNotebook(digest, files, kernelspec, cells, preload)
        for name, (kernelspec, cells, preload) in read.items()
    }
    return Master(assignment, digest, files, notebooks)


def preload_for(source: str, assignments, masters: dict) -> list[str]:
    """The modules the masters of ``assignments`` import (what their zygotes preload)."""
    found: list[str] = []
    for assignment in assignments:
        for notebook in masters.get(assignment, ()):
            path = os.path.join(source, assignment, notebook + ".ipynb")
            try:
                with open(path, encoding="utf-8") as fh:
                    found += preload_modules(json.load(fh))
            except (OSError, ValueError):  # load_master reports a broken master
                pass
    return list(dict.fromkeys(found))
