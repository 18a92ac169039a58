"""Static scan of solution cells: patterns that have no place in an exercise answer.

The scan parses the student's code with :mod:`ast` and never runs it. Its findings go to a
human (the report, ``results.json``): they are reasons to look, not verdicts, and cost no
points by themselves; what decides the grade is verification (:mod:`lossutils.grading.verify`).

Each :class:`Finding` names the cell, the line, a stable pattern id from :data:`PATTERNS` and
one line of explanation. Aliases are followed (``import numpy as n; n.allclose = ...``,
``from importlib import import_module as im``), and string constants built with ``+`` are
folded, so ``__import__("loss" + "utils")`` is recognised.

Examples
--------
>>> [f.pattern for f in scan_source("import numpy as np\\nnp.allclose = lambda *a: True")]
['module-attribute-assignment']
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["CONVENTIONAL_ALIASES", "PATTERNS", "Finding", "scan_notebook", "scan_source"]

#: Pattern id to the one-line explanation shown to the instructor.
PATTERNS = {
    "ipython-internals": "uses IPython internals (get_ipython, input transformers, events, "
                         "the display hooks), which can rewrite or skip the test cells",
    "import-machinery": "uses the import machinery (importlib, __import__, sys.modules, "
                        "builtins), which can replace modules the checker relies on",
    "module-attribute-assignment": "assigns to an attribute of an imported module (e.g. "
                                   "np.allclose = ...), which changes it for the checker too",
    "reference-library": "uses lossutils, the reference library the checker compares with",
    "answer-library": "imports a library that computes the answer (scipy.special, torch, "
                      "sklearn, jax, tensorflow)",
    "file-access": "opens, lists or deletes files (open, os, pathlib, shutil, glob, io)",
    "process-access": "starts processes or touches the interpreter (subprocess, os.system, "
                      "multiprocessing, signal, ctypes, sys.settrace)",
    "network-access": "opens network connections (socket, urllib, http, requests)",
    "dynamic-code": "runs code built at run time (exec, eval, compile), which the scan "
                    "cannot see",
    "exit": "ends the interpreter (sys.exit, os._exit, exit, quit, raise SystemExit or "
            "KeyboardInterrupt)",
    "introspection": "inspects or rewrites running frames or objects (sys._getframe, "
                     "inspect, gc, globals(), __class__ / __dict__ / __code__ tricks)",
    "magic": "an IPython magic or shell (!) line: it does not belong in an answer",
    "syntax-error": "the cell is not valid Python even without magics: the scan could not "
                    "read it",
    "naive-without-loop": "a *_naive function (the exercise asks for explicit loops) has no "
                          "loop of its own or calls its vectorised version, or a *_vectorized "
                          "function calls the naive one",
    "vectorized-with-loop": "a *_vectorized function (the exercise asks for no Python loop) "
                            "loops (for, while, a comprehension, np.vectorize, "
                            "np.apply_along_axis)",
}

_MODULE_PATTERNS = {
    "IPython": "ipython-internals", "ipykernel": "ipython-internals",
    "importlib": "import-machinery", "builtins": "import-machinery",
    "imp": "import-machinery", "pkgutil": "import-machinery", "zipimport": "import-machinery",
    "lossutils": "reference-library",
    "scipy": "answer-library", "torch": "answer-library", "sklearn": "answer-library",
    "jax": "answer-library", "tensorflow": "answer-library", "optax": "answer-library",
    "os": "file-access", "pathlib": "file-access", "shutil": "file-access",
    "glob": "file-access", "io": "file-access", "tempfile": "file-access",
    "pickle": "file-access", "sqlite3": "file-access", "nbformat": "file-access",
    "subprocess": "process-access", "multiprocessing": "process-access",
    "ctypes": "process-access", "signal": "process-access", "threading": "process-access",
    "pty": "process-access", "resource": "process-access", "cffi": "process-access",
    "socket": "network-access", "urllib": "network-access", "http": "network-access",
    "requests": "network-access", "ssl": "network-access", "ftplib": "network-access",
    "smtplib": "network-access", "asyncio": "network-access",
    "inspect": "introspection", "gc": "introspection", "dis": "introspection",
    "types": "introspection",
}
# Where only some submodules compute the answer, or only some names are dangerous.
_SUBMODULE_ONLY = {"scipy": ("scipy.special", "scipy.stats", "scipy.optimize", "scipy.linalg")}

_CALL_PATTERNS = {
    "get_ipython": "ipython-internals", "__import__": "import-machinery",
    "exec": "dynamic-code", "eval": "dynamic-code", "compile": "dynamic-code",
    "open": "file-access", "exit": "exit", "quit": "exit",
    "globals": "introspection", "vars": "introspection", "setattr": None,
    "delattr": None, "breakpoint": "process-access", "input": "process-access",
}
_ATTRIBUTE_PATTERNS = {
    ("sys", "modules"): "import-machinery", ("sys", "meta_path"): "import-machinery",
    ("sys", "path_hooks"): "import-machinery", ("sys", "exit"): "exit",
    ("sys", "_getframe"): "introspection", ("sys", "settrace"): "process-access",
    ("sys", "setprofile"): "process-access", ("sys", "stdout"): "introspection",
    ("sys", "stderr"): "introspection", ("sys", "displayhook"): "ipython-internals",
    ("sys", "excepthook"): "ipython-internals", ("sys", "addaudithook"): "process-access",
    ("os", "_exit"): "exit", ("os", "system"): "process-access", ("os", "fork"):
    "process-access", ("os", "kill"): "process-access", ("os", "environ"): "file-access",
}
_DUNDERS = {"__class__", "__dict__", "__code__", "__globals__", "__builtins__",
            "__subclasses__", "__bases__", "__mro__", "__closure__", "__func__",
            "__getattribute__", "__eq__", "__ne__", "__array_ufunc__", "__array_function__"}
_IPYTHON_NAMES = {"input_transformers_cleanup", "input_transformers_post", "events",
                  "register_magic_function", "ast_transformers", "run_cell",
                  "set_custom_exc", "user_ns", "showtraceback"}
#: Names notebooks bind to modules by convention; the scan assumes them unless rebound.
CONVENTIONAL_ALIASES = {"np": "numpy", "sp": "sympy", "plt": "matplotlib.pyplot",
                        "math": "math"}
_MAGIC_LINE = re.compile(r"^\s*(?:[%!]|[\w.\[\], ]+=\s*[%!])")


@dataclass(frozen=True)
class Finding:
    """One suspicious construct: where it is, which pattern, and why it matters."""

    cell: str
    line: int
    pattern: str
    detail: str

    @property
    def explanation(self) -> str:
        """The one-line explanation of the pattern."""
        return PATTERNS[self.pattern]

    def to_plain(self) -> dict:
        """JSON-friendly form."""
        return {"cell": self.cell, "line": self.line, "pattern": self.pattern,
                "detail": self.detail, "explanation": self.explanation}


def _fold(node) -> str | None:
    """The value of a string expression made of constants and ``+``, else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _fold(node.left), _fold(node.right)
        if left is not None and right is not None:
            return left + right
    if isinstance(node, ast.JoinedStr):
        parts = [_fold(v) if not isinstance(v, ast.FormattedValue) else None
                 for v in node.values]
        if all(p is not None for p in parts):
            return "".join(parts)
    return None


def _root(node) -> ast.Name | None:
    while isinstance(node, ast.Attribute | ast.Subscript | ast.Call):
        node = node.value if not isinstance(node, ast.Call) else node.func
    return node if isinstance(node, ast.Name) else None


def _dotted(node) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


class _Scanner(ast.NodeVisitor):
    def __init__(self, cell: str, aliases: dict[str, str]):
        self.cell = cell
        # Name bound in the notebook -> the module (or module.attribute) it stands for.
        self.aliases = aliases
        self.findings: list[Finding] = []

    def add(self, node, pattern: str, detail: str) -> None:
        self.findings.append(Finding(self.cell, getattr(node, "lineno", 0), pattern, detail))

    def module_pattern(self, module: str) -> str | None:
        top = module.split(".")[0]
        if top in _SUBMODULE_ONLY:
            return _MODULE_PATTERNS[top] if module.startswith(_SUBMODULE_ONLY[top]) else None
        return _MODULE_PATTERNS.get(top)

    def flag_module(self, node, module: str, how: str) -> None:
        pattern = self.module_pattern(module)
        if pattern:
            self.add(node, pattern, f"{how} {module}")

    def resolve(self, node) -> str | None:
        """The module path an expression stands for, following import aliases."""
        dotted = _dotted(node)
        if dotted is None:
            return None
        head, _, rest = dotted.partition(".")
        if head in self.aliases:
            return self.aliases[head] + ("." + rest if rest else "")
        return None

    def visit_Import(self, node):
        for alias in node.names:
            self.aliases[alias.asname or alias.name.split(".")[0]] = (
                alias.name if alias.asname else alias.name.split(".")[0])
            self.flag_module(node, alias.name, "imports")

    def visit_ImportFrom(self, node):
        module = node.module or ""
        for alias in node.names:
            full = f"{module}.{alias.name}" if module else alias.name
            self.aliases[alias.asname or alias.name] = full
            self.flag_module(node, full if self.module_pattern(full) else module, "imports")

    def visit_Call(self, node):
        func = node.func
        name = func.id if isinstance(func, ast.Name) else None
        target = self.resolve(func)
        if name in _CALL_PATTERNS and name not in self.aliases:
            pattern = _CALL_PATTERNS[name]
            if name in ("setattr", "delattr"):
                self.check_setattr(node)
            elif pattern:
                self.add(node, pattern, f"calls {name}()")
        if target is not None:
            self.check_target(node, target, "calls")
        if name in ("__import__",) or (target or "").endswith(("import_module", "__import__")):
            if node.args:
                value = _fold(node.args[0])
                if value is not None:
                    self.flag_module(node, value, "imports dynamically")
        if name == "getattr" and len(node.args) >= 2:
            attr = _fold(node.args[1])
            if attr is not None and (attr in _DUNDERS or attr in _IPYTHON_NAMES
                                     or attr in ("modules", "_exit", "system")):
                self.add(node, "introspection", f"getattr(..., {attr!r})")
        self.generic_visit(node)

    def check_setattr(self, node):
        if node.args:
            module = self.resolve(node.args[0])
            if module is not None:
                self.add(node, "module-attribute-assignment",
                         f"{node.func.id}() on {module}")

    def check_target(self, node, target: str, how: str) -> None:
        parts = target.split(".")
        for i in range(1, len(parts) + 1):
            pair = tuple(parts[i - 2:i]) if i >= 2 else None
            if pair in _ATTRIBUTE_PATTERNS:
                self.add(node, _ATTRIBUTE_PATTERNS[pair], f"{how} {'.'.join(pair)}")
                return

    def visit_Attribute(self, node):
        if node.attr in _IPYTHON_NAMES:
            self.add(node, "ipython-internals", f"uses .{node.attr}")
        elif node.attr in _DUNDERS:
            self.add(node, "introspection", f"uses .{node.attr}")
        target = self.resolve(node)
        if target is not None and isinstance(node.ctx, ast.Load):
            self.check_target(node, target, "uses")
        self.generic_visit(node)

    def visit_FunctionDef(self, node):
        if node.name in _DUNDERS:
            self.add(node, "introspection", f"defines {node.name}")
        self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Name(self, node):
        if node.id in ("__builtins__", "__loader__", "__spec__"):
            self.add(node, "import-machinery", f"uses {node.id}")
        # The reference library imported by a given cell (06's setup does): calling it, even
        # on SymPy symbols to obtain a derivation's expression, is using the reference.
        target = self.aliases.get(node.id)
        if isinstance(node.ctx, ast.Load) and target is not None \
                and target.split(".")[0] == "lossutils" \
                and not target.startswith("lossutils.checks"):
            self.add(node, "reference-library", f"uses {target}")
        self.generic_visit(node)

    def assigned(self, target, node) -> None:
        for sub in ast.walk(target):
            if isinstance(sub, ast.Attribute | ast.Subscript) \
                    and isinstance(getattr(sub, "ctx", None), ast.Store | ast.Del):
                root = _root(sub)
                module = self.resolve(sub.value) if root is not None else None
                if module is not None:
                    self.add(node, "module-attribute-assignment",
                             f"assigns to {_dotted(sub) or module + '[...]'}")

    def visit_Assign(self, node):
        for target in node.targets:
            self.assigned(target, node)
        self.generic_visit(node)

    def visit_AugAssign(self, node):
        self.assigned(node.target, node)
        self.generic_visit(node)

    def visit_Delete(self, node):
        for target in node.targets:
            self.assigned(target, node)
        self.generic_visit(node)

    def visit_Raise(self, node):
        exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
        if isinstance(exc, ast.Name) and exc.id in ("SystemExit", "KeyboardInterrupt"):
            self.add(node, "exit", f"raises {exc.id}")
        self.generic_visit(node)


def scan_source(source: str, cell: str = "cell", aliases: dict | None = None) -> list[Finding]:
    """Scan one cell's source; ``aliases`` carries imports across cells (updated in place).

    Parameters
    ----------
    source : str
        The cell's code; magic and ``!`` lines are reported, then read as ``pass``.
    cell : str
        Label of the cell in the findings (its grade id).
    aliases : dict, optional
        Names bound to modules by earlier cells.

    Returns
    -------
    list of Finding
        In source order.

    Examples
    --------
    >>> [f.pattern for f in scan_source('m = __import__("loss" + "utils")')]
    ['import-machinery', 'reference-library']
    >>> scan_source("def softmax(z):\\n    e = np.exp(z - z.max())\\n    return e / e.sum()")
    []
    """
    aliases = dict(CONVENTIONAL_ALIASES) if aliases is None else aliases
    findings = []
    lines = source.splitlines()
    for number, line in enumerate(lines, 1):
        if _MAGIC_LINE.match(line):
            findings.append(Finding(cell, number, "magic", line.strip()[:80]))
    try:
        tree = ast.parse(source)
    except SyntaxError:
        cleaned = "\n".join("pass" if _MAGIC_LINE.match(line) else line for line in lines)
        try:
            tree = ast.parse(cleaned)
        except SyntaxError as exc:
            findings.append(Finding(cell, exc.lineno or 0, "syntax-error", str(exc.msg)))
            return findings
    scanner = _Scanner(cell, aliases)
    scanner.visit(tree)
    findings += scanner.findings
    findings += _naive_and_vectorized(tree, cell)
    # One finding per pattern and line: ``os._exit(0)`` is a call of and a use of os._exit.
    unique = {(f.line, f.pattern): f for f in reversed(findings)}
    return sorted(unique.values(), key=lambda f: (f.line, f.pattern))


_LOOPS = (ast.For, ast.AsyncFor, ast.While, ast.ListComp, ast.SetComp, ast.DictComp,
          ast.GeneratorExp)


def _naive_and_vectorized(tree, cell: str) -> list[Finding]:
    """A ``<name>_naive`` must loop by itself, a ``<name>_vectorized`` must not loop at all, and
    neither may call the other.

    Examples
    --------
    >>> source = "def f_naive(W, X):\\n    return f_vectorized(W, X)"
    >>> [(f.pattern, f.detail) for f in _naive_and_vectorized(ast.parse(source), "f_naive")]
    [('naive-without-loop', 'f_naive has no loop; f_naive calls f_vectorized')]
    >>> source = "def f_vectorized(W, X):\\n    return sum(W[i] for i in range(3))"
    >>> [(f.pattern, f.detail) for f in _naive_and_vectorized(ast.parse(source), "f")]
    [('vectorized-with-loop', 'f_vectorized loops (a generator expression, line 2)')]
    """
    findings = []
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        base, _, style = node.name.rpartition("_")
        if not base or style not in ("naive", "vectorized"):
            continue
        other = f"{base}_{'vectorized' if style == 'naive' else 'naive'}"
        called = {n.func.id for n in ast.walk(node)
                  if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        problems = []
        # A body that returns nothing (the release's `raise NotImplementedError()`) fails
        # its check anyway: nothing to review.
        answers = any(isinstance(n, ast.Return) and n.value is not None for n in ast.walk(node))
        if style == "naive" and answers and not any(isinstance(n, _LOOPS)
                                                    for n in ast.walk(node)):
            problems.append(f"{node.name} has no loop")
        if other in called:
            problems.append(f"{node.name} calls {other}")
        if problems:
            findings.append(Finding(cell, node.lineno, "naive-without-loop",
                                    "; ".join(problems)))
        if style == "vectorized" and answers:
            loop = _first_loop(node)
            if loop is not None:
                what, line = loop
                findings.append(Finding(cell, line, "vectorized-with-loop",
                                        f"{node.name} loops ({what}, line {line})"))
    return findings


_LOOP_NAMES = {ast.For: "a for loop", ast.AsyncFor: "a for loop", ast.While: "a while loop",
               ast.ListComp: "a list comprehension", ast.SetComp: "a set comprehension",
               ast.DictComp: "a dict comprehension", ast.GeneratorExp: "a generator expression"}
# numpy's helpers that loop in Python behind a vectorised look
_LOOPING_CALLS = ("vectorize", "apply_along_axis", "apply_over_axes", "frompyfunc")


def _first_loop(function) -> tuple[str, int] | None:
    """What the first loop in ``function``'s body is, and its line, or None."""
    for node in sorted(ast.walk(function), key=lambda n: getattr(n, "lineno", 0)):
        if isinstance(node, _LOOPS):
            return _LOOP_NAMES[type(node)], node.lineno
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in _LOOPING_CALLS:
                return f"np.{name}", node.lineno
    return None


def scan_notebook(nb: Mapping, solution_ids: Iterable[str] | None = None) -> list[Finding]:
    """Scan the student's code cells of a notebook (untrusted JSON: any structure).

    Parameters
    ----------
    nb : mapping
        The submitted notebook as parsed JSON.
    solution_ids : iterable of str, optional
        The master's solution cell grade ids; when given, only those cells and code cells
        without nbgrader metadata (added by the student) are scanned. By default every code
        cell marked ``solution`` or without nbgrader metadata is.

    Returns
    -------
    list of Finding
        Imports in one cell are followed into later cells.

    Examples
    --------
    >>> nb = {"cells": [{"cell_type": "code", "metadata": {}, "source": "import os"}]}
    >>> [(f.cell, f.pattern) for f in scan_notebook(nb)]
    [('cell 0', 'file-access')]
    """
    wanted = set(solution_ids) if solution_ids is not None else None
    aliases = dict(CONVENTIONAL_ALIASES)
    findings = []
    cells = nb.get("cells") if isinstance(nb, Mapping) else None
    for index, cell in enumerate(cells if isinstance(cells, list) else []):
        if not isinstance(cell, Mapping) or cell.get("cell_type") != "code":
            continue
        source = cell.get("source")
        if isinstance(source, list):
            source = "".join(s for s in source if isinstance(s, str))
        if not isinstance(source, str):
            continue
        metadata = cell.get("metadata")
        meta = metadata.get("nbgrader") if isinstance(metadata, Mapping) else None
        if isinstance(meta, Mapping) and meta:
            grade_id = meta.get("grade_id")
            if (wanted is not None and grade_id not in wanted) or (
                    wanted is None and not meta.get("solution")):
                # A given cell: only the names its imports bind matter.
                _learn_imports(source, aliases)
                continue
            label = str(grade_id)
        else:
            label = f"cell {index}"
        findings += scan_source(source, label, aliases)
    return findings


def _learn_imports(source: str, aliases: dict) -> None:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return
    learner = _Scanner("", aliases)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            learner.visit(node)
