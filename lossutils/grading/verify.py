"""Verified scores: re-check every autograded exercise outside the student's kernel.

nbgrader runs the test cells in the student's own kernel, so code that ran before them
(``np.allclose = lambda *a, **k: True``, an IPython input transformer, a patched checker)
decides the grade. :func:`verify_submission` grades each exercise again where none of that
can reach:

1. The trusted grader reads, with :mod:`ast`, which ``check("<exercise>", <function>)`` calls
   each test cell of the MASTER makes (never the student's copy of the test cell).
2. A fresh sandboxed plain-Python process (:mod:`lossutils.grading._verify_runner`, no IPython,
   no ``lossutils``; forked from a verification zygote when the grader runs as root) runs the
   master's import lines and the student's own code cells, magics removed.
3. The trusted grader builds the cases (hidden ones with the run's seed) and drives the
   exercise's ``call`` itself, with a stand-in function that ships each call's arguments to the
   sandbox as JSON and replays what came back (return value, exception, warnings, printed
   text, modified arguments) as plain data, size-checked before it is rebuilt.
4. The exercise's own ``judge`` compares with the reference in the trusted process.

The grade of an exercise is the verified one: if verification cannot run to the end (the
process dies, times out, exceeds a limit, answers nonsense), the exercise scores zero with the
reason in :attr:`VerifiedScore.error`, so crashing the verifier never keeps a kernel score.
"""

from __future__ import annotations

import ast
import builtins
import functools
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from . import _verify_runner
from .sandbox import Limits, exit_signal, kill_tree, require_sandbox, sandbox_argv

__all__ = [
    "PROBLEM_CODES",
    "CheckCall",
    "VerifiedScore",
    "apply_verification",
    "check_calls",
    "code_to_verify",
    "reconcile",
    "strip_magics",
    "verify_submission",
]

# Verification runs small functions on small inputs: far tighter than a notebook's limits.
DEFAULT_LIMITS = Limits(memory_bytes=1 * 2**30, cpu_seconds=60, wall_seconds=120,
                        max_processes=16, max_output_bytes=4_000_000,
                        file_size_bytes=16 * 2**20, tmp_bytes=64 * 2**20)
_MAX_ARRAY_BYTES = 64 * 2**20


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


@dataclass
class VerifiedScore:
    """The verified result of one test cell.

    Attributes
    ----------
    grade_id : str
        The test cell's nbgrader grade id (``test_<solution id>``).
    passed : bool
        Every check call of the cell passed outside the kernel. False whenever verification
        could not complete (see ``error``).
    message : str
        The first failing check's message (hidden-test inputs included: instructor only), or
        a summary of the passed cases.
    diagnosis : str or None
        The checker's diagnosis id of that failure, if any.
    error : str or None
        Why verification could not run to the end: ``"timeout: ..."``, ``"memory: ..."``,
        ``"crashed: ..."``, ``"protocol: ..."``, ``"unverifiable: ..."``; None otherwise.
    exercises : list of str
        The exercise ids the cell checks.
    """

    grade_id: str
    passed: bool
    message: str = ""
    diagnosis: str | None = None
    error: str | None = None
    exercises: list[str] = field(default_factory=list)

    def to_plain(self) -> dict:
        """JSON-friendly form for the grading result."""
        return {"grade_id": self.grade_id, "passed": self.passed, "message": self.message,
                "diagnosis": self.diagnosis, "error": self.error,
                "exercises": list(self.exercises)}


# --------------------------------------------------------------------------- notebooks


def _source(cell) -> str | None:
    src = cell.get("source") if isinstance(cell, Mapping) else None
    if isinstance(src, list) and all(isinstance(s, str) for s in src):
        return "".join(src)
    return src if isinstance(src, str) else None


def _master_cells(master) -> list[dict]:
    """Normalise a master notebook dict, or the grader's list of master cells, to records.

    Each record: ``grade_id``, ``cell_type``, ``source``, ``solution``, ``grade``.
    """
    cells = master.get("cells", []) if isinstance(master, Mapping) else master
    records = []
    for cell in cells:
        meta = cell.get("metadata", {}).get("nbgrader") if "metadata" in cell else cell
        if not meta:
            continue
        records.append({
            "grade_id": meta.get("grade_id", meta.get("name")),
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
        The master notebook (nbformat JSON as a dict) or the grader's list of master cells.

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
                  for c in _master_cells(master))
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
    master_cells = _master_cells(master)
    solution_ids = {c["grade_id"] for c in master_cells if c["solution"]
                    and c["cell_type"] == "code"}
    given = []
    for cell in master_cells:
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

    Imports (not of ``lossutils``, IPython or plotting), function and class definitions, and
    assignments of literal constants: master code that defines things without doing any work.
    """
    if isinstance(node, ast.Import | ast.ImportFrom):
        modules = [a.name for a in node.names] if isinstance(node, ast.Import) \
            else [node.module or ""]
        if any(m.split(".")[0] in _NOT_IN_PRELUDE for m in modules):
            return set()
        return {a.asname or a.name.split(".")[0] for a in node.names}
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return {node.name}
    if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
        try:
            ast.literal_eval(node.value)
        except ValueError:
            return set()
        return {t.id for t in node.targets}
    return set()


# Display and notebook machinery has no place in a function under test, and the reference
# library must stay out of reach.
_NOT_IN_PRELUDE = ("lossutils", "IPython", "ipywidgets", "matplotlib")


# --------------------------------------------------------------------------- the channel


class _Fatal(Exception):
    """The verification process cannot go on (timeout, crash, limit, malformed answer)."""


#: Why this process's verification zygote could not start (then every verification process
#: is started on its own, exactly as isolated).
_ZYGOTE_FAILED: list[str] = []


def _verification_zygote(limits: Limits, prelude: Sequence[str]):
    """This thread's verification zygote, preloading numpy and the prelude's imports; or None.

    Forking the verification process from it saves a Python start-up and numpy's import per
    submission. The zygote runs in a sandbox without ``lossutils`` and never imports it; each
    fork is isolated like a forked kernel (see :class:`~lossutils.grading.sandbox.KernelZygote`).
    """
    from .sandbox import ZygoteError, kernel_zygote, zygote_supported

    if not zygote_supported() or _ZYGOTE_FAILED:
        return None
    modules = ["numpy"]
    for source in prelude:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules.append(node.module)
    preload = [m for m in dict.fromkeys(modules) if m.split(".")[0] not in _NOT_IN_PRELUDE]
    try:
        return kernel_zygote(limits, preload, bare=True)
    except ZygoteError as exc:
        _ZYGOTE_FAILED.append(str(exc))
        return None


class _Runner:
    """One sandboxed verification process and its JSON-lines channel.

    Forked from ``zygote`` when one is given (see :func:`_verification_zygote`), else started
    as ``python -I -c <runner>`` in a sandbox of its own.
    """

    def __init__(self, *, limits: Limits, sandbox: bool, call_timeout: float, zygote=None):
        from .sandbox import ZygoteError, _sandbox_uid

        self.limits = limits
        self.call_timeout = call_timeout
        self.deadline = time.monotonic() + limits.wall_seconds
        self.buffer = bytearray()
        self.dead: str | None = None
        self.tmp = None
        if zygote is not None:
            try:
                self.proc = zygote.spawn(_sandbox_uid(), _RUNNER_SOURCE)
                return
            except ZygoteError as exc:  # start this one on its own; later ones too
                _ZYGOTE_FAILED.append(str(exc))
        self.tmp = tempfile.TemporaryDirectory(prefix="lossutils-verify-")
        workdir = self.tmp.name
        argv = [sys.executable, "-I", "-c", _RUNNER_SOURCE]
        if sandbox:
            cmd = sandbox_argv(argv, workdir=workdir, limits=limits, with_lossutils=False)
            env = None
        else:
            cmd = argv
            env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "HOME")}
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, cwd=workdir, env=env,
                                     start_new_session=True)

    def _kill(self) -> None:
        if self.tmp is None:  # forked: every process of its user id
            self.proc.kill()
        else:
            kill_tree(self.proc)

    def request(self, message: dict, timeout: float) -> dict:
        if self.dead:
            raise _Fatal(self.dead)
        try:
            self.proc.stdin.write(json.dumps(message).encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self._die("crashed")
        return self._read_line(min(time.monotonic() + timeout, self.deadline))

    def _read_line(self, deadline: float) -> dict:
        cap = int(self.limits.max_output_bytes)
        fd = self.proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self.buffer:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._die("timeout")
                if not sel.select(timeout=left):
                    continue
                data = os.read(fd, 1 << 20)
                if not data:
                    self._die("crashed")
                self.buffer += data
                if len(self.buffer) > cap:
                    self._die("output")
        line, _, rest = bytes(self.buffer).partition(b"\n")
        self.buffer = bytearray(rest)
        try:
            reply = json.loads(line)
        except (ValueError, RecursionError):
            self._die("protocol")
        if type(reply) is not dict:
            self._die("protocol")
        return reply

    def _die(self, kind: str):
        code = None
        if kind == "crashed":  # it closed its output: let it end, for its own exit status
            try:
                code = self.proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
        self._kill()
        if code is None:
            code = self.proc.wait()
        self.dead = _describe_death(kind, code, self.limits)
        raise _Fatal(self.dead)

    def close(self) -> None:
        # No polite "exit": the process holds nothing worth a clean shutdown, and Python's
        # finalisation (numpy's included) would cost every submission 30-70 ms.
        self._kill()
        self.proc.wait()
        if self.tmp is None:
            self.proc.close()
            return
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except OSError:  # the pipe broke when the process died
                pass
        self.tmp.cleanup()


def _describe_death(kind: str, code: int, limits: Limits) -> str:
    if kind == "timeout":
        return "timeout: the solution code ran past the time limit"
    if kind == "output":
        return f"output: an answer exceeded {limits.max_output_bytes} bytes"
    if kind == "protocol":
        return "protocol: the verification process sent a malformed answer"
    sig = exit_signal(code)
    if sig == signal.SIGXCPU:
        return f"cpu: the solution code used more than {limits.cpu_seconds} s of CPU time"
    if sig == signal.SIGKILL:
        return "memory: the process was killed (most likely out of memory)"
    if sig is not None:
        return f"crashed: the process died from signal {sig}"
    return f"crashed: the solution code ended the process (exit code {code})"


with open(_verify_runner.__file__, encoding="utf-8") as _fh:
    _RUNNER_SOURCE = _fh.read()


# The checker's modules that call the student's function and encode what it returned; they
# import only numpy, and the runner loads them in this order.
_CORE_MODULES = ("_given", "_plain", "_calling")


def _core_source() -> list[tuple[str, str]]:
    import importlib

    sources = []
    for name in _CORE_MODULES:
        module = importlib.import_module(f"lossutils.checks.{name}")
        with open(module.__file__, encoding="utf-8") as fh:
            sources.append((name, fh.read()))
    return sources


# --------------------------------------------------------------------------- plain data


def _validate_plain(data, depth: int = 0) -> None:
    """Refuse encoded values that would be costly or unsafe to rebuild (raise ValueError)."""
    if depth > 8 or type(data) is not dict:
        raise ValueError("malformed value")
    kind = data.get("kind")
    if kind == "ndarray":
        dtype = np.dtype(str(data["dtype"]))
        shape = data["shape"]
        if dtype.kind not in "biufc" or type(shape) is not list or len(shape) > 32 \
                or not all(type(n) is int and n >= 0 for n in shape):
            raise ValueError("malformed array")
        size = int(np.prod(shape, dtype=np.float64))
        if size * dtype.itemsize > _MAX_ARRAY_BYTES:
            raise ValueError("array too large")
        if "data" in data and (type(data["data"]) is not list or len(data["data"]) != size
                               or not all(type(v) in (int, float, bool)
                                          for v in data["data"])):
            raise ValueError("malformed array data")
    elif kind == "npscalar":
        if np.dtype(str(data["dtype"])).kind not in "biuf" \
                or type(data["value"]) not in (int, float, bool):
            raise ValueError("malformed scalar")
    elif kind in ("float", "int", "bool", "str"):
        if type(data.get("value")) is not {"float": float, "int": int, "bool": bool,
                                           "str": str}[kind] and kind != "float":
            raise ValueError("malformed number")
        if kind == "int" and abs(data["value"]) > 2**63:
            raise ValueError("integer too large")
    elif kind == "given":
        if type(data.get("formula")) is not str or len(data["formula"]) > 64:
            raise ValueError("malformed given function")
        _validate_plain(data.get("params"), depth + 1)
    elif kind == "student_function":
        if type(data.get("name")) is not str or len(data["name"]) > 200:
            raise ValueError("malformed function name")
    elif kind in ("tuple", "list"):
        if type(data.get("items")) is not list:
            raise ValueError("malformed sequence")
        for item in data["items"]:
            _validate_plain(item, depth + 1)
    elif kind == "dict":
        if type(data.get("items")) is not dict:
            raise ValueError("malformed dict")
        for item in data["items"].values():
            _validate_plain(item, depth + 1)
    elif kind not in ("NoneType", "other"):
        raise ValueError("unknown kind")


def _encode_arg(value):
    from lossutils.checks import to_plain

    if type(value).__module__.startswith("sympy"):
        return {"kind": "sympy", "tree": _verify_runner.encode_sympy(value)}
    return to_plain(value)


def _named(base: type, name) -> type:
    """A stand-in class carrying the student's exception or warning class name."""
    name = str(name)
    builtin = getattr(builtins, name, None)
    if isinstance(builtin, type) and issubclass(builtin, base) and builtin is not base \
            and not issubclass(builtin, KeyboardInterrupt | SystemExit | GeneratorExit):
        return builtin
    return type(name if name.isidentifier() else base.__name__, (base,), {})


def _write_back(given, after) -> None:
    """Make the trusted copy of an argument show the change the student made to theirs."""
    from lossutils.checks import from_plain

    if type(after) is not dict or after.get("kind") == "other":
        return
    new = from_plain(after)
    if type(given) is np.ndarray:
        if type(new) is np.ndarray and new.shape == given.shape:
            np.copyto(given, new, casting="unsafe")
        elif given.size:
            # Not representable in place: any change makes the checker report it.
            given.flat[0] = ~given.flat[0] if given.dtype == bool else given.flat[0] + 1
    elif type(given) is dict and type(new) is dict:
        given.clear()
        given.update(new)
    elif type(given) is list and type(new) is list:
        given[:] = new


class _Remote:
    """Stands in for the student's function in the trusted process."""

    def __init__(self, runner: _Runner, name: str, arg_names: Sequence[str]):
        self.runner, self.name, self.arg_names = runner, name, list(arg_names)

    def __call__(self, *args, **kwargs):
        from lossutils.checks import from_plain

        reply = self.runner.request({
            "op": "call", "name": self.name, "arg_names": self.arg_names,
            "args": [_encode_arg(a) for a in args],
            "kwargs": {k: _encode_arg(v) for k, v in kwargs.items()},
        }, self.runner.call_timeout)
        try:
            output = reply["output"]
            _validate_plain(output)
            for item in [*reply["args"], *reply["kwargs"].values()]:
                _validate_plain(item)
            stdout = str(reply["stdout"])[:10_000]
            texts = [str(w)[:1000] for w in reply["warnings"]][:100]
        except (KeyError, TypeError, ValueError, AttributeError):
            self.runner._die("protocol")
        for given, after in zip(args, reply["args"], strict=False):
            _write_back(given, after)
        for key, after in reply["kwargs"].items():
            if key in kwargs:
                _write_back(kwargs[key], after)
        if stdout:
            print(stdout, end="")
        for text in texts:
            category, _, message = text.partition(": ")
            warnings.warn(message, _named(Warning, category), stacklevel=2)
        if reply.get("error") is not None:
            exc = reply.get("exc") if type(reply.get("exc")) is dict else {}
            name = exc.get("type", "Exception")
            raise _named(Exception, name)(str(exc.get("text", ""))[:201])
        if reply.get("sympy") is not None:
            tree = reply["sympy"]
            if "error" in tree:
                raise _named(Exception, "UnsupportedExpression")(str(tree["error"])[:200])
            return _verify_runner.decode_sympy(tree)
        return from_plain(output)


# --------------------------------------------------------------------------- verification


def verify_submission(
    student_nb: Mapping,
    master_nb,
    *,
    seed: int,
    limits: Limits = DEFAULT_LIMITS,
    sandbox: bool = True,
    call_timeout: float = 20.0,
) -> dict[str, VerifiedScore]:
    """Grade every checked test cell again, outside the student's kernel.

    Parameters
    ----------
    student_nb : mapping
        The submitted notebook as parsed JSON (untrusted: any structure).
    master_nb : dict or list
        The master notebook as a dict, or the grader's list of master cells
        (``task["master"]["notebooks"][name]["cells"]``).
    seed : int
        The run's ``LOSSUTILS_GRADING_SEED``, for the hidden cases.
    limits : Limits
        Limits of the verification process (one per submission, restarted after a fatal
        error); ``wall_seconds`` bounds each process, ``call_timeout`` each call.
    sandbox : bool, default True
        Run the student's code in the sandbox. False is for ``--unsandboxed`` grading only.
    call_timeout : float
        Seconds one call of the student's function (or loading the cells) may take.

    Returns
    -------
    dict
        Test cell grade id to :class:`VerifiedScore`, for every test cell of the master
        that calls the course's ``check`` on registered exercises (see :func:`check_calls`).

    Raises
    ------
    SandboxUnavailable
        If ``sandbox`` is True and bubblewrap does not work here.
    """
    from lossutils.checks import StudentFunction, get_exercise, run_check

    if sandbox:
        require_sandbox()
    plan = check_calls(master_nb)
    prelude, cells = code_to_verify(student_nb, master_nb)
    names = sorted({name for calls in plan.values() for c in calls
                    for name in (c.function, *(n for _, n in c.uses))})
    results: dict[str, VerifiedScore] = {}
    runner = None
    loaded: dict = {}
    try:
        for grade_id, calls in plan.items():
            try:
                exercises = {c.exercise: get_exercise(c.exercise) for c in calls}
            except ValueError:
                # The master names an exercise this lossutils does not know: the kernel's
                # check fails the same way, and the student had no part in it.
                continue
            score = VerifiedScore(grade_id, True, exercises=[c.exercise for c in calls])
            results[grade_id] = score
            for call in calls:
                exercise = exercises[call.exercise]
                if runner is None or runner.dead:
                    if runner is not None:
                        runner.close()
                    runner = _Runner(limits=limits, sandbox=sandbox, call_timeout=call_timeout,
                                     zygote=_verification_zygote(limits, prelude)
                                     if sandbox else None)
                    try:
                        loaded = _load(runner, prelude, cells, names)
                    except _Fatal as exc:
                        score.passed, score.error = False, str(exc)
                        break
                broken = [(name, loaded["names"].get(name))
                          for name in (call.function, *(n for _, n in call.uses))
                          if loaded["names"].get(name) != "callable"]
                if broken:
                    name, status = broken[0]
                    score.passed = False
                    score.message = (f"{name} is "
                                     f"{'not defined' if status == 'missing' else 'not a function'}"
                                     " after running the solution cells"
                                     f"{_cell_errors(loaded)}.")
                    break
                remote = _Remote(runner, call.function, exercise.arg_names)
                # The student's other functions travel by name: the sandbox resolves them.
                uses = {role: StudentFunction(name) for role, name in call.uses}
                try:
                    result = run_check(call.exercise, remote, hidden=call.hidden,
                                       seed=seed if call.hidden else None, uses=uses)
                except Exception as exc:  # a judge that chokes on a returned value
                    score.passed = False
                    score.error = f"unverifiable: the checker failed ({type(exc).__name__})"
                    break
                if runner.dead:
                    score.passed, score.error = False, runner.dead
                    break
                if not result.passed:
                    score.passed, score.message = False, result.message
                    score.diagnosis = result.diagnosis
                    break
                score.message = result.message
    finally:
        if runner is not None:
            runner.close()
    return results


def _load(runner: _Runner, prelude, cells, names) -> dict:
    # each cell may take up to one call's time, as in the kernel; the load as a whole waits
    # for all of them
    reply = runner.request({"op": "load", "core": _core_source(), "prelude": prelude,
                            "cells": cells, "names": names,
                            "cell_timeout": runner.call_timeout},
                           runner.call_timeout * (len(cells) + 3))
    if reply.get("op") != "loaded" or type(reply.get("names")) is not dict \
            or type(reply.get("cells")) is not list:
        runner._die("protocol")
    reply["labels"] = [label for label, _ in cells]
    return reply


def _cell_errors(loaded: dict) -> str:
    for label, error in zip(loaded["labels"], loaded["cells"], strict=False):
        if type(error) is dict:
            return (f" (cell {label} raised {str(error.get('type'))[:60]}: "
                    f"{str(error.get('text'))[:120]})")
    return ""


# --------------------------------------------------------------------------- grading results

#: Problem codes this module adds to a grading result (for the worker's table of reasons).
PROBLEM_CODES = {
    "tampering-suspected": "the notebook's own test run gave points that verification "
                           "outside the kernel did not confirm",
    "verification-failed": "the solution code could not be verified outside the kernel "
                           "(timeout, memory, crash): the exercise scores 0",
    "review-suggested": "the static scan found code that has no place in an answer "
                        "(see the findings); no points were taken for it",
}


def reconcile(records: list[dict], verified: Mapping[str, VerifiedScore]) -> list[dict]:
    """Set each checked test cell's score to the verified one; return the problems found.

    Parameters
    ----------
    records : list of dict
        The worker's per-cell records (``grade_id``, ``kind``, ``score``, ``max_score``,
        ``message``, ...); changed in place: ``score`` becomes the verified score, and
        ``kernel_score`` and ``verified`` (the :meth:`VerifiedScore.to_plain` dict) are added.
    verified : mapping
        :func:`verify_submission`'s result.

    Returns
    -------
    list of dict
        ``{"code", "detail"}`` problems: ``tampering-suspected`` where the kernel gave more
        than verification (with the evidence), ``verification-failed`` where verification
        could not run to the end.

    Examples
    --------
    >>> records = [{"grade_id": "test_softmax", "kind": "test", "score": 3.0,
    ...             "max_score": 3.0, "message": None}]
    >>> problems = reconcile(records, {"test_softmax": VerifiedScore(
    ...     "test_softmax", False, "softmax: 0/13 cases passed", "wrong_shape")})
    >>> records[0]["score"], records[0]["kernel_score"], problems[0]["code"]
    (0.0, 3.0, 'tampering-suspected')
    """
    problems = []
    for record in records:
        score = verified.get(record.get("grade_id"))
        if score is None or record.get("kind") != "test":
            continue
        kernel = record.get("score") or 0.0
        record["kernel_score"] = kernel
        record["verified"] = score.to_plain()
        record["score"] = float(record["max_score"]) if score.passed else 0.0
        if not score.passed:
            record["message"] = record.get("message") or score.error or score.message
        if score.error is not None:
            problems.append({"code": "verification-failed",
                             "detail": f"{record['grade_id']}: {score.error}"})
        if kernel > record["score"]:
            reason = score.error or (score.message.splitlines() or ["failed"])[0]
            problems.append({"code": "tampering-suspected", "detail": (
                f"{record['grade_id']}: the notebook's test gave {kernel:g}/"
                f"{record['max_score']:g}, verification outside the kernel "
                f"{record['score']:g}: {reason}")[:500]})
    return problems


def apply_verification(
    result: dict,
    student_nb: Mapping,
    master,
    *,
    seed: int,
    sandbox: bool = True,
    limits: Limits = DEFAULT_LIMITS,
    call_timeout: float = 20.0,
) -> dict:
    """Verify a graded submission and fold the outcome into the worker's result.

    Runs the static scan (:func:`lossutils.grading.scan.scan_notebook`) and
    :func:`verify_submission`, then :func:`reconcile`; adds the problems, the scan findings
    (``result["scan"]``) and recomputes ``result["score"]``. ``result["status"]`` is left to
    the caller, who orders problem codes.

    Parameters
    ----------
    result : dict
        The worker's result, with ``cells`` (records) and ``problems``.
    student_nb : mapping
        The submitted notebook as parsed JSON.
    master : dict or list
        The master notebook, or the grader's list of master cells.
    seed : int
        The run's grading seed.
    sandbox : bool, default True
        False only for ``--unsandboxed`` grading.
    limits : Limits
        Limits of the verification process.
    call_timeout : float
        Seconds per call of the student's function.

    Returns
    -------
    dict
        ``result``, updated.
    """
    from .scan import scan_notebook

    solution_ids = [c["grade_id"] for c in _master_cells(master) if c["solution"]]
    findings = scan_notebook(student_nb, solution_ids)
    result["scan"] = [f.to_plain() for f in findings]
    verified = verify_submission(student_nb, master, seed=seed, limits=limits, sandbox=sandbox,
                                 call_timeout=call_timeout)
    problems = result.setdefault("problems", [])
    found = reconcile(result.get("cells", []), verified)
    # Evidence: what the scan saw in the solution cells that define the checked functions.
    plan = check_calls(master)
    defined_in = {}
    for label, source in code_to_verify(student_nb, master)[1]:
        for node in ast.parse(source).body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                defined_in[node.name] = label
    for problem in found:
        grade_id = problem["detail"].split(":", 1)[0]
        cells = {defined_in.get(c.function) for c in plan.get(grade_id, ())}
        seen = sorted({f"{f.pattern} ({f.cell} line {f.line})" for f in findings
                       if f.cell in cells})
        if problem["code"] == "tampering-suspected" and seen:
            problem["detail"] = f"{problem['detail']}; scan: {', '.join(seen)}"[:500]
    problems += found
    if findings:
        patterns = sorted({f.pattern for f in findings})
        problems.append({"code": "review-suggested", "detail": (
            f"{len(findings)} finding(s): {', '.join(patterns)}; first: "
            f"{findings[0].cell} line {findings[0].line}: {findings[0].detail}")[:500]})
    result["score"] = sum(r.get("score") or 0.0 for r in result.get("cells", []))
    return result
