"""What verification runs: read from the master and the submission with :mod:`ast`.

The trusted grader never runs the student's copy of a test cell: :func:`check_calls` reads
which ``check("<exercise>", <function>)`` calls each test cell of the MASTER makes, and
:func:`code_to_verify` picks the student's solution cells (magics removed) and the few
definitions of the master's locked cells they need.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["NOT_IN_PRELUDE", "CheckCall", "check_calls", "code_to_verify", "master_cells",
           "strip_magics"]


@dataclass(frozen=True)
class CheckCall:
    """One ``check("<exercise>", <function>, hidden=..., <role>=<function>...)`` call.

    ``uses`` pairs each role with the name of the student's function the master passes for
    it (``train`` is checked with the student's own loss and optimizer step).
    """

    exercise: str
    function: str
    hidden: bool
    uses: tuple[tuple[str, str], ...] = ()



def _source(cell) -> str | None:
    src = cell.get("source") if isinstance(cell, Mapping) else None
    if isinstance(src, list) and all(isinstance(s, str) for s in src):
        return "".join(src)
    return src if isinstance(src, str) else None


def master_cells(master) -> list[dict]:
    """Normalise a master notebook (nbformat JSON as a dict), or a task's master cells
    (:class:`~lossutils.grading.task.MasterCell`), to records.

    Each record: ``grade_id``, ``cell_type``, ``source``, ``solution``, ``grade``.
    """
    if not isinstance(master, Mapping):
        return [{"grade_id": c.name, "cell_type": c.cell_type, "source": c.source,
                 "solution": c.solution, "grade": c.grade} for c in master]
    records = []
    for cell in master.get("cells", []):
        meta = cell.get("metadata", {}).get("nbgrader")
        if not meta:
            continue
        records.append({
            "grade_id": meta.get("grade_id"),
            "cell_type": cell.get("cell_type"),
            "source": _source(cell) or "",
            "solution": bool(meta.get("solution")),
            "grade": bool(meta.get("grade")),
        })
    return records


def check_calls(master) -> dict[str, list[CheckCall]]:
    """The ``check`` calls of each test cell of the master, read with :mod:`ast`.

    Parameters
    ----------
    master : dict or list
        The master notebook (nbformat JSON as a dict) or a task's master cells.

    Returns
    -------
    dict
        Test cell grade id to its calls, in order. Only literal calls count,
        ``check("<id>", <name>)`` with an optional literal ``hidden=True`` and optional
        ``<role>=<name>`` keywords naming the student's other functions, and only where
        ``check`` is the course's checker: imported ``from lossutils.checks`` in that cell or
        in an earlier code cell of the master, not redefined since (a master with a checker
        of its own is not verified). Cells without such a call are left out.

    Examples
    --------
    >>> cell = {"cell_type": "code", "metadata": {"nbgrader": {"grade": True, "grade_id":
    ...         "test_softmax", "solution": False}}, "source":
    ...         'from lossutils.checks import check\\ncheck("softmax", softmax)\\n'
    ...         'check("softmax", softmax, hidden=True)'}
    >>> check_calls({"cells": [cell]})["test_softmax"][1]
    CheckCall(exercise='softmax', function='softmax', hidden=True, uses=())
    """
    cells = tuple((c["cell_type"], c["source"], c["grade"], c["solution"], c["grade_id"])
                  for c in master_cells(master))
    return {grade_id: list(calls) for grade_id, calls in _check_calls(cells).items()}


@functools.lru_cache(maxsize=64)
def _check_calls(cells: tuple) -> dict[str, tuple[CheckCall, ...]]:
    """:func:`check_calls` of a master's cells (each worker parses a master once)."""
    found: dict[str, tuple[CheckCall, ...]] = {}
    real = False
    for cell_type, source, grade, solution, grade_id in cells:
        if cell_type != "code":
            continue
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        calls = []
        for statement in tree.body:
            real = _checker_after(statement, real)
            for node in ast.walk(statement):
                if not (real and isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                        and node.func.id == "check" and len(node.args) == 2
                        and isinstance(node.args[0], ast.Constant)
                        and isinstance(node.args[0].value, str)
                        and isinstance(node.args[1], ast.Name)):
                    continue
                hidden, uses = False, []
                for kw in node.keywords:
                    if kw.arg == "hidden" and isinstance(kw.value, ast.Constant):
                        hidden = bool(kw.value.value)
                    elif kw.arg not in (None, "hidden") and isinstance(kw.value, ast.Name):
                        uses.append((kw.arg, kw.value.id))
                    elif kw.arg == "given" and isinstance(kw.value, ast.Tuple) and all(
                            isinstance(e, ast.Name) for e in kw.value.elts):
                        # a step that follows from several earlier ones: one entry each
                        uses.extend((kw.arg, e.id) for e in kw.value.elts)
                calls.append(CheckCall(node.args[0].value, node.args[1].id, hidden,
                                       tuple(uses)))
        if calls and grade and not solution:
            found[grade_id] = tuple(calls)
    return found


def _checker_after(statement, real: bool) -> bool:
    """Whether the name ``check`` is the course's checker after this top-level statement."""
    if isinstance(statement, ast.ImportFrom):
        for alias in statement.names:
            if (alias.asname or alias.name) == "check":
                real = statement.module == "lossutils.checks" and alias.name == "check"
        return real
    for node in ast.walk(statement):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) \
                and node.name == "check":
            return False
        if isinstance(node, ast.Name) and node.id == "check" \
                and isinstance(node.ctx, ast.Store | ast.Del):
            return False
        if isinstance(node, ast.Import) and any((a.asname or a.name) == "check"
                                                for a in node.names):
            return False
    return real


_MAGIC = re.compile(r"^(\s*)(?:[%!]|[\w.\[\], ]+=\s*[%!])")


def strip_magics(source: str) -> str | None:
    """Make a cell plain Python: IPython magic and ``!`` shell lines become ``pass``.

    Returns the source unchanged when it already parses, None for a cell magic (``%%...``)
    or for a cell that is not Python even without its magic lines.

    Examples
    --------
    >>> strip_magics("%timeit f(1)\\nx = 1")
    'pass\\nx = 1'
    >>> strip_magics("files = !ls\\ny = 2")
    'pass\\ny = 2'
    >>> strip_magics("%%bash\\nrm -rf /") is None
    True
    """
    try:
        ast.parse(source)
        return source
    except SyntaxError:
        pass
    if source.lstrip().startswith("%%"):
        return None
    lines = []
    for line in source.splitlines():
        match = _MAGIC.match(line)
        lines.append(f"{match.group(1)}pass" if match else line)
    cleaned = "\n".join(lines)
    try:
        ast.parse(cleaned)
    except SyntaxError:
        return None
    return cleaned


def code_to_verify(student, master) -> tuple[list[str], list[tuple[str, str]]]:
    """The prelude (the master's imports) and the student's cells to run, in order.

    The student's cells are the solution cells whose grade id is one of the master's
    solution cells (the first of duplicates), and the definitions (functions, classes,
    imports, constants) of code cells the student added without nbgrader metadata. The
    master's locked cells are never taken from the student's notebook, and no locked cell
    runs as a whole: the prelude holds only those imports,
    function and class definitions and constant assignments of the master's locked code
    cells that the student's cells use, directly or through each other (imports of
    ``lossutils``, IPython and plotting libraries excepted).

    Returns
    -------
    prelude : list of str
        Statements of the master, in the master's order.
    cells : list of (label, source)
        ``label`` is the grade id or ``"cell <index>"``; magics are already removed; cells
        that are not Python are dropped.
    """
    records = master_cells(master)
    solution_ids = {c["grade_id"] for c in records if c["solution"]
                    and c["cell_type"] == "code"}
    given = []
    for cell in records:
        if cell["cell_type"] != "code" or cell["solution"] or cell["grade"]:
            continue
        try:
            tree = ast.parse(cell["source"])
        except SyntaxError:
            continue
        for node in tree.body:
            bound = _bound_names(node)
            if bound:
                given.append((node, bound))
    cells = []
    seen = set()
    student_cells = student.get("cells", []) if isinstance(student, Mapping) else []
    for index, cell in enumerate(student_cells if isinstance(student_cells, list) else []):
        if not isinstance(cell, Mapping) or cell.get("cell_type") != "code":
            continue
        metadata = cell.get("metadata")
        meta = metadata.get("nbgrader") if isinstance(metadata, Mapping) else None
        if meta:
            grade_id = meta.get("grade_id") if isinstance(meta, Mapping) else None
            if grade_id not in solution_ids or grade_id in seen:
                continue
            seen.add(grade_id)
            label = str(grade_id)
        else:
            label = f"cell {index}"
        source = _source(cell)
        cleaned = strip_magics(source) if source is not None else None
        if cleaned is not None and not meta:
            # A cell the student added: its definitions may serve the answers, its other
            # statements (a long experiment, a plot) only cost time here.
            kept = [node for node in ast.parse(cleaned).body
                    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
                                  | ast.Import | ast.ImportFrom) or _bound_names(node)]
            cleaned = "\n".join(ast.unparse(node) for node in kept) if kept else None
        if cleaned is not None:
            cells.append((label, cleaned))
    # Only what the student's code uses, directly or through a given helper: importing
    # sympy costs a second per process.
    needed = {name for _, source in cells for name in _used_names(ast.parse(source))}
    chosen: set[int] = set()
    grew = True
    while grew:
        grew = False
        for i, (node, bound) in enumerate(given):
            if i not in chosen and bound & needed:
                chosen.add(i)
                needed |= _used_names(node)
                grew = True
    prelude = [ast.unparse(node) for i, (node, _) in enumerate(given) if i in chosen]
    return prelude, cells


def _used_names(tree) -> set[str]:
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}


def _bound_names(node) -> set[str]:
    """Names a given (locked) top-level statement binds, if the prelude may run it.

    Imports (not of ``lossutils``, IPython or plotting), function and class definitions,
    assignments of literal constants, and SymPy symbols made from literals (``p =
    sp.Symbol("p", positive=True)``, which a derivation's answers are built from): master code
    that defines things without doing any work.
    """
    if isinstance(node, ast.Import | ast.ImportFrom):
        modules = [a.name for a in node.names] if isinstance(node, ast.Import) \
            else [node.module or ""]
        if any(m.split(".")[0] in NOT_IN_PRELUDE for m in modules):
            return set()
        return {a.asname or a.name.split(".")[0] for a in node.names}
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return {node.name}
    if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
        try:
            ast.literal_eval(node.value)
        except (ValueError, TypeError):  # not a literal; {[1]: 2} is a TypeError
            return _symbols_bound(node)
        return {t.id for t in node.targets}
    return _symbols_bound(node)


_SYMPY_CONSTRUCTORS = ("Symbol", "symbols", "IndexedBase")


def _symbols_bound(node) -> set[str]:
    """Names bound by ``a, b = sp.symbols("a b", real=True)`` and the like, with literal args."""
    if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)):
        return set()
    func = node.value.func
    called = func.attr if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) \
        else func.id if isinstance(func, ast.Name) else None
    if called not in _SYMPY_CONSTRUCTORS:
        return set()
    try:
        for value in (*node.value.args, *(k.value for k in node.value.keywords)):
            ast.literal_eval(value)
    except (ValueError, TypeError):
        return set()
    names = set()
    for target in node.targets:
        elements = target.elts if isinstance(target, ast.Tuple) else [target]
        if not all(isinstance(e, ast.Name) for e in elements):
            return set()
        names |= {e.id for e in elements}
    return names


# Display and notebook machinery has no place in a function under test, and the reference
# library must stay out of reach.
NOT_IN_PRELUDE = ("lossutils", "IPython", "ipywidgets", "matplotlib")
