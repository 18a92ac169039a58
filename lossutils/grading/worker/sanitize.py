"""nbgrader's sanitize steps on a submission, with deleted and edited test cells restored.

Runs ``ClearOutput``, ``DeduplicateIds``, ``OverwriteCells`` and ``CheckCellMetadata`` as
``nbgrader autograde`` does, but from the master's cells carried in the task instead of the
gradebook (workers never open it), and flags every test cell it restores.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict
from types import SimpleNamespace

from .._patches import metadata_validator
from ..problems import Problem
from ..task import MasterCell, Task

__all__ = ["sanitize"]


class _MasterCells:
    """The part of nbgrader's Gradebook that ``OverwriteCells`` reads, served from plain data.

    Workers must not open the gradebook, so the master's source cells travel in the task and this
    adapter answers ``find_source_cell``/``find_graded_cell`` exactly as the database would.
    """

    def __init__(self, cells: Iterable[MasterCell]):
        self._cells = {c.name: SimpleNamespace(**asdict(c), max_score=c.points) for c in cells}

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


def sanitize(nb, task: Task, problems: list[Problem], resources: dict):
    """nbgrader's sanitize step, plus the restoration and flagging of test cells."""
    from nbgrader.preprocessors import ClearOutput, DeduplicateIds, OverwriteCells

    master = task.master
    nb, resources = ClearOutput().preprocess(nb, resources)
    nb, resources = DeduplicateIds().preprocess(nb, resources)
    if master.kernelspec:
        nb.metadata["kernelspec"] = master.kernelspec

    # Flag what the student did to the test cells before nbgrader silently repairs it.
    submitted = {}
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid is not None:
            submitted[gid] = cell
    for mc in master.cells:
        if not mc.grade or mc.solution or mc.cell_type != "code":
            continue
        cell = submitted.get(mc.name)
        if cell is None:
            problems.append(
                Problem(
                    "test-cell-restored",
                    f"test cell {mc.name} was deleted; restored from the master",
                )
            )
        elif cell.source.strip() != mc.release_source.strip():
            problems.append(
                Problem(
                    "test-cell-restored",
                    f"test cell {mc.name} was edited; restored from the master",
                )
            )

    overwrite = OverwriteCells()
    overwrite.gradebook = _MasterCells(master.cells)
    overwrite.notebook_id = task.notebook
    overwrite.assignment_id = task.assignment
    # OverwriteCells' own preprocess would open the gradebook: run its per-cell work only
    nb, resources = super(OverwriteCells, overwrite).preprocess(nb, resources)
    _restore_missing(nb, master.cells, overwrite, set(submitted))
    metadata_validator().validate_nb(nb)
    return nb, resources


def _restore_missing(nb, master_cells: Sequence[MasterCell], overwrite, present: set[str]) -> None:
    """Put deleted grade cells back after the nearest master cell the student still has.

    nbgrader's own ``add_missing_grade_cells`` looks only at grade and solution cells for the
    anchor and fails when a deleted cell follows a locked narrative cell; this searches every
    master cell, in master order.
    """
    import nbformat

    order = [c.name for c in master_cells]
    for i, mc in enumerate(master_cells):
        if not mc.grade or mc.name in present:
            continue
        new = nbformat.from_dict(
            overwrite.missing_cell_transform(mc, mc.points, is_solution=mc.solution)
        )
        new.setdefault("id", f"restored-{mc.name}")
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
        present.add(mc.name)

