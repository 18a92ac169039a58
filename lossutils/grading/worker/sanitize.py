"""nbgrader's sanitize steps on a submission, with deleted and edited test cells restored.

Runs ``ClearOutput``, ``DeduplicateIds``, ``OverwriteCells`` and ``CheckCellMetadata`` as
``nbgrader autograde`` does, but from the master's cells carried in the task instead of the
gradebook (workers never open it), and flags every test cell it restores.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

from ..problems import problem

__all__ = ["sanitize"]


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


def sanitize(nb, task: dict, problems: list[dict], resources: dict):
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
                problem(
                    "test-cell-restored",
                    f"test cell {mc['name']} was deleted; restored from the master",
                )
            )
        elif cell.source.strip() != mc["release_source"].strip():
            problems.append(
                problem(
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

