"""Hostile submissions for the red-team tests, generated from a release notebook.

Every attack starts from the RELEASE notebook of an assignment (what a student receives),
fills each solution cell with the master's honest solution, then replaces the solution cell of
one target exercise (``softmax`` by default) with attack code whose own answer is WRONG (or
borrowed from somewhere it must not come from). A grader that is not fooled therefore gives
the target exercise zero points and every other exercise full points, unless the attack takes
the whole process down (``os._exit`` at the top level), which may cost the other exercises
too but must never earn a point.

:func:`code_attacks` returns the attacks on the solution code; :func:`file_attacks` returns
attacks on the notebook file itself (metadata, size, encoding, format) as bytes, for the
pipeline tests. SECURITY.md lists them.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["MARKER", "TRUSTED_CLASSES", "Attack", "TrustedAttack", "code_attacks", "file_attacks",
           "honest", "load", "plant_file_attacks", "submission", "trusted_side_attacks",
           "trusted_submission"]

TARGET = "softmax"
WRONG = "    return np.zeros_like(logits)\n"
HEADER = "def softmax(logits):\n"


@dataclass(frozen=True)
class Attack:
    """One hostile submission: replacement sources of solution cells and what it attempts.

    ``cells`` maps a solution cell's grade id to its new source; ``kills_process`` marks
    attacks that may take down every exercise of the submission, not only the target.
    """

    name: str
    attempt: str
    cells: dict
    kills_process: bool = False


def load(path) -> dict:
    """Read a notebook as plain JSON."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _cells(nb: dict, kind: str):
    for cell in nb["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell["cell_type"] == "code" and meta.get(kind):
            yield meta["grade_id"], cell


def _text(source) -> str:
    return "".join(source) if isinstance(source, list) else source


def submission(release: dict, master: dict, cells: dict | None = None) -> dict:
    """The release with the master's solutions filled in, then ``cells`` overriding some."""
    nb = copy.deepcopy(release)
    solutions = {gid: _text(c["source"]) for gid, c in _cells(master, "solution")}
    overrides = cells or {}
    for grade_id, cell in _cells(nb, "solution"):
        cell["source"] = overrides.get(grade_id, solutions[grade_id])
    return nb


def honest(release: dict, master: dict) -> dict:
    """The release completed with the master's solutions: full marks everywhere."""
    return submission(release, master)


def _target(body: str, prelude: str = "") -> dict:
    return {TARGET: prelude + HEADER + body}


def code_attacks(*, solutions_dir: str, outside_file: str, other_submission: str,
                 output_dir: str) -> list[Attack]:
    """The attacks on the solution code, with the paths they try to reach.

    Parameters
    ----------
    solutions_dir : str
        The repository's ``solutions/`` (master notebooks with every hidden test).
    outside_file : str
        A path outside the sandbox that the attack tries to create.
    other_submission : str
        Another student's submitted notebook.
    output_dir : str
        The grading output folder (gradebook, grades.csv).
    """
    master_path = f"{solutions_dir}/03-cross-entropy/03-cross-entropy.ipynb"
    copy_master = (
        "    import json\n"
        f"    nb = json.load(open({master_path!r}))\n"
        "    src = [''.join(c['source']) for c in nb['cells']\n"
        "           if c['metadata'].get('nbgrader', {}).get('grade_id') == 'softmax'][0]\n"
        "    ns = {'np': np}\n"
        "    exec(src, ns)\n"
        "    return ns['softmax'](logits)\n"
    )
    return [
        Attack("monkeypatch-numpy", "replace numpy's comparison functions by always-true ones",
               _target(WRONG, "np.allclose = lambda *a, **k: True\n"
                       "np.isclose = lambda a, b, *r, **k: np.ones(np.broadcast(a, b).shape, "
                       "bool)\nnp.array_equal = lambda *a, **k: True\n"
                       "np.testing.assert_allclose = lambda *a, **k: None\n")),
        Attack("patch-checker", "replace lossutils.checks.check and the judge by no-ops",
               _target(WRONG, "try:\n    import lossutils.checks as _c\n"
                       "    _c.check = lambda *a, **k: print('all cases passed')\n"
                       "    _c.run_check = lambda *a, **k: None\n"
                       "except ImportError:\n    pass\n")),
        Attack("input-transformer", "an IPython input transformer that deletes check() lines",
               _target(WRONG, "try:\n    get_ipython().input_transformers_cleanup.append(\n"
                       "        lambda lines: [l for l in lines if 'check(' not in l])\n"
                       "except NameError:\n    pass\n")),
        Attack("event-hook", "a pre_run_cell hook that defines check as a no-op",
               _target(WRONG, "try:\n    _ip = get_ipython()\n"
                       "    _ip.events.register('pre_run_cell', lambda info: "
                       "_ip.user_ns.update(check=lambda *a, **k: None))\n"
                       "except NameError:\n    pass\n")),
        Attack("always-equal", "return an object whose __eq__ is always true",
               _target("    class Anything(np.ndarray):\n"
                       "        def __eq__(self, other): return True\n"
                       "        def __ne__(self, other): return False\n"
                       "    return np.zeros_like(logits).view(Anything)\n")),
        Attack("always-equal-plain", "return a non-array object that equals everything",
               _target("    class Anything:\n        __eq__ = lambda s, o: True\n"
                       "        __array_priority__ = 1000\n    return Anything()\n")),
        Attack("reference-direct", "call the reference library directly",
               {TARGET: "from lossutils import softmax\n"}),
        Attack("reference-obfuscated", "reach the reference library through __import__",
               _target("    m = __import__('loss' + 'utils')\n"
                       "    return getattr(m, 'soft' + 'max')(logits)\n")),
        Attack("reference-importlib", "reach the reference library through importlib",
               _target("    import importlib\n    return importlib.import_module("
                       "'lossutils.classification').softmax(logits)\n")),
        Attack("read-solutions", "execute the master's solution read from solutions/",
               _target(copy_master)),
        Attack("read-other-student", "copy another student's submission",
               _target("    import json\n"
                       f"    nb = json.load(open({other_submission!r}))\n"
                       "    src = [''.join(c['source']) for c in nb['cells'] if "
                       "c['metadata'].get('nbgrader', {}).get('grade_id') == 'softmax'][0]\n"
                       "    ns = {'np': np}\n    exec(src, ns)\n"
                       "    return ns['softmax'](logits)\n")),
        Attack("write-outside", "write to a file outside the sandbox and to the output folder",
               _target(WRONG, "for _p in (" + repr(outside_file) + ", "
                       + repr(f"{output_dir}/grades.csv") + "):\n"
                       "    try:\n        open(_p, 'w').write('pwned')\n"
                       "    except OSError:\n        pass\n")),
        Attack("network", "fetch the answer over the network",
               _target("    import socket\n"
                       "    socket.create_connection(('1.1.1.1', 53), timeout=2).close()\n"
                       "    e = np.exp(logits - logits.max(axis=-1, keepdims=True))\n"
                       "    return e / e.sum(axis=-1, keepdims=True)\n")),
        Attack("os-exit-call", "os._exit(0) inside the function",
               _target("    import os\n    os._exit(0)\n")),
        Attack("os-exit-top", "os._exit(0) at the top level of the cell",
               _target(WRONG, "import os\nos._exit(0)\n"), kills_process=True),
        Attack("sys-exit", "sys.exit() inside the function",
               _target("    import sys\n    sys.exit(0)\n")),
        Attack("keyboard-interrupt", "raise KeyboardInterrupt inside the function",
               _target("    raise KeyboardInterrupt\n")),
        Attack("infinite-loop", "an infinite loop inside the function",
               _target("    while True:\n        pass\n")),
        Attack("memory-bomb", "allocate far more memory than the limit",
               _target("    hog = np.ones(2**36, dtype=np.uint8)\n    return hog\n")),
        Attack("fork-bomb", "fork processes until the system gives up",
               _target("    import os\n    while True:\n        try:\n"
                       "            os.fork()\n        except OSError:\n            pass\n")),
        Attack("print-100mb", "print 100 MB, then return a wrong answer",
               _target(WRONG, "print('x' * 100_000_000)\n")),
        Attack("frame-walk", "search the caller's frames for the expected answer",
               _target("    import sys\n    f = sys._getframe(1)\n    while f is not None:\n"
                       "        for v in f.f_locals.values():\n"
                       "            if type(v) is np.ndarray and v.shape == logits.shape "
                       "and v is not logits:\n"
                       "                return v\n        f = f.f_back\n"
                       "    return np.zeros_like(logits)\n")),
        Attack("forge-protocol", "write forged 'all passed' replies to every open descriptor",
               _target(WRONG, "import os\nfor _fd in range(3, 12):\n    try:\n"
                       "        os.write(_fd, b'{\"op\": \"result\", \"output\": {\"kind\": "
                       "\"other\"}}\\n')\n    except OSError:\n        pass\n"),
               kills_process=True),
        Attack("magics", "shell escapes and magics in the solution cell",
               _target(WRONG, "!cat /etc/passwd\n%load_ext autoreload\n")),
    ]


def file_attacks(release: dict, master: dict) -> dict[str, bytes]:
    """Attacks on the notebook file (bytes): metadata, test cells, size, encoding, format.

    Each starts from the honest submission except where noted, so the only way to lose or
    win points is the attack itself.
    """
    base = honest(release, master)
    out = {}

    def dump(nb) -> bytes:
        return json.dumps(nb, indent=1).encode()

    def test_cell(nb):
        return next(c for gid, c in _cells(nb, "grade") if gid == f"test_{TARGET}")

    nb = submission(release, master, {TARGET: HEADER + WRONG})
    test_cell(nb)["source"] = "print('skipped')\n"
    out["edit-test-cell"] = dump(nb)

    nb = submission(release, master, {TARGET: HEADER + WRONG})
    nb["cells"].remove(test_cell(nb))
    out["delete-test-cell"] = dump(nb)

    nb = submission(release, master, {TARGET: HEADER + WRONG})
    cell = test_cell(nb)
    cell["metadata"] = {}
    cell["source"] = "check = lambda *a, **k: None\n"
    out["retype-test-cell"] = dump(nb)

    nb = submission(release, master, {TARGET: HEADER + WRONG})
    for cell in nb["cells"]:
        cell["metadata"].pop("nbgrader", None)
    out["strip-metadata"] = dump(nb)

    nb = submission(release, master, {TARGET: HEADER + WRONG})
    cell = test_cell(nb)
    cell["metadata"]["nbgrader"].update(grade=False, solution=True, locked=False)
    cell["source"] = "pass\n"
    out["forge-metadata"] = dump(nb)

    nb = submission(release, master, {TARGET: HEADER + WRONG})
    cell = test_cell(nb)
    cell["metadata"]["nbgrader"]["points"] = 1000
    out["forge-points"] = dump(nb)

    nb = submission(release, master, {TARGET: HEADER + WRONG})
    duplicate = copy.deepcopy(test_cell(nb))
    duplicate["source"] = "pass\n"
    nb["cells"].insert(0, duplicate)
    out["duplicate-grade-id"] = dump(nb)

    big = copy.deepcopy(base)
    big["cells"][0]["source"] = "x" * (50 * 2**20)
    out["notebook-50mb"] = dump(big)

    out["invalid-utf8"] = dump(base).replace(b"def softmax", b"def softmax\xff\xfe", 1)

    old = {"nbformat": 3, "nbformat_minor": 0, "metadata": {},
           "worksheets": [{"cells": [{"cell_type": "code", "input": "print(1)",
                                      "language": "python", "outputs": []}]}]}
    out["old-nbformat"] = json.dumps(old).encode()
    return out


# --------------------------------------------------------------------------- the trusted side
#
# The attacks above aim at points. These aim at the grader's own code, which runs outside the
# sandbox as the instructor, on data the student controls: the submitted file itself, the
# verification replies, the kernel's output messages, the symbolic checker, the feedback page,
# the report and grades.csv. Each class names what must hold for it in tests/test_redteam.py.

#: The classes of :func:`trusted_side_attacks` (and of :func:`plant_file_attacks`).
TRUSTED_CLASSES = {
    "files": "a link, FIFO or hard link instead of the notebook",
    "replies": "verification replies that are not what the runner sends",
    "output": "more output than the grader keeps",
    "budget": "many cells each under the per-cell timeout",
    "judge": "an answer that keeps the trusted checker busy",
    "markup": "student text that imitates the grader's own text",
    "active": "script and event handlers in outputs and answers",
    "hidden": "hidden tests and the seed read from inside the kernel",
    "disagreement": "a kernel run that fails where verification passes",
}

#: What a hostile cell sets to prove that script ran (in the browser) or that a value leaked.
MARKER = "PWNED-2b6e"

@dataclass(frozen=True)
class TrustedAttack:
    """A hostile submission aimed at the grader's own side.

    ``cells`` replace solution cells (grade id to source, code or markdown); ``added`` are
    ``(cell_type, source)`` cells appended after the last cell. ``earns_target`` marks an
    attack whose answer to the target exercise is right outside the kernel.
    """

    name: str
    kind: str
    attempt: str
    assignment: str = "03-cross-entropy"
    cells: dict = field(default_factory=dict)
    added: tuple = ()
    earns_target: bool = False


def _forged_reply() -> str:
    """A verification reply the runner never sends: 400 arrays described without their data
    (64 MiB each if the trusted side made them), written to every descriptor of the process."""
    return (
        "    import json, os, sys\n"
        "    if 'ipykernel' not in sys.modules:\n"
        "        empty = {'kind': 'ndarray', 'dtype': '<f8', 'shape': [1 << 23]}\n"
        "        reply = {'op': 'result', 'output': {'kind': 'list', 'items': [empty] * 400},\n"
        "                 'error': None, 'warnings': [], 'stdout': '', 'modified': [],\n"
        "                 'exc': None, 'args': [], 'kwargs': {}, 'sympy': None}\n"
        "        line = (json.dumps(reply) + '\\n').encode()\n"
        "        for fd in range(3, 64):\n"
        "            try:\n"
        "                os.write(fd, line)\n"
        "            except OSError:\n"
        "                pass\n"
        "        os._exit(0)\n"
        + WRONG
    )


def _with_sleeps(master: dict, seconds: int) -> dict:
    solutions = {gid: _text(c["source"]) for gid, c in _cells(master, "solution")}
    return {gid: f"import time\ntime.sleep({seconds})\n{src}" for gid, src in solutions.items()}


def trusted_side_attacks(master: dict, *, sleep: int = 8) -> list[TrustedAttack]:
    """The attacks on the grader's own side that live in a notebook (the file attacks are
    planted by :func:`plant_file_attacks`).

    Parameters
    ----------
    master : dict
        The master notebook of ``03-cross-entropy``.
    sleep : int
        Seconds each cell of the ``budget`` attack sleeps: under the per-cell timeout.
    """
    honest_softmax = (
        HEADER + "    e = np.exp(logits - logits.max(axis=-1, keepdims=True))\n"
        "    return e / e.sum(axis=-1, keepdims=True)\n"
    )
    script = (
        f"<script>document.title = '{MARKER}-script'</script>"
        f"<img src=x onerror=\"document.title = '{MARKER}-onerror'\">"
        f"<a href=\"javascript:document.title = '{MARKER}-href'\">link</a>"
    )
    return [
        TrustedAttack(
            "reply-forged-arrays", "replies",
            "forge a reply of 400 data-less 64 MiB arrays on the verifier's descriptors",
            cells={TARGET: "import sys\n\n" + HEADER + _forged_reply()}),
        TrustedAttack(
            "output-flood", "output",
            "display 600 outputs of 1 MiB each before the target's test",
            cells={TARGET: "import sys\nif 'ipykernel' in sys.modules:\n"
                   "    for _ in range(600):\n"
                   "        display({'text/plain': 'x' * 2**20}, raw=True)\n\n" + HEADER + WRONG}),
        TrustedAttack(
            "slow-cells", "budget",
            f"every solution cell and fifteen added cells sleep {sleep} s, under the per-cell "
            "timeout, so that the notebook as a whole runs for minutes",
            cells=_with_sleeps(master, sleep),
            added=tuple(("code", f"import time\ntime.sleep({sleep})\n") for _ in range(15))),
        TrustedAttack(
            "symbolic-blowup", "judge",
            "set a derivation step to a SymPy power whose expansion has millions of terms "
            "(within the codec's size and degree limits)",
            assignment="02-gaussian-l2",
            cells={"nll_beta": "nll_beta = sum(sp.sin(i * beta) for i in range(1, 17)) ** 12\n"}),
        TrustedAttack(
            "forged-diagnosis", "markup",
            "an exception escaping the checker whose text imitates its diagnosis tag with "
            "math text that matplotlib cannot parse",
            cells={TARGET: "class Forged(KeyboardInterrupt):\n    pass\n\n\n" + HEADER
                   + "    raise Forged('[check: softmax; diagnosis: $\\\\frac{1}{$]')\n"}),
        TrustedAttack(
            "active-content", "active",
            "script, event handlers and javascript: links in HTML, SVG, JavaScript and "
            "markdown outputs, in the written answer and in added cells",
            cells={TARGET: HEADER + WRONG,
                   "answer_true_class": f"My answer. {script} [more]({'javascript:'}"
                                        f"document.title='{MARKER}-md')\n"},
            added=(
                ("code",
                 "from IPython.display import HTML, Javascript, Markdown, display\n"
                 f"display(HTML({script!r}))\n"
                 f"display(Javascript(\"document.title = '{MARKER}-js'\"))\n"
                 "display({'image/svg+xml': '<svg xmlns=\"http://www.w3.org/2000/svg\" "
                 f"onload=\"document.title = \\'{MARKER}-svg\\'\"><script>document.title = "
                 f"\\'{MARKER}-svgscript\\'</script></svg>'}}, raw=True)\n"
                 f"display(Markdown({script!r}))\n"),
                ("markdown", f"{script}\n\n[click](javascript:document.title='{MARKER}-md2')\n"),
                ("raw", script),
            )),
        TrustedAttack(
            "leak-hidden", "hidden",
            "record every cell's source with a pre_run_cell hook, then print it, In and the "
            "grading seed after the tests",
            cells={TARGET: "seen = []\ntry:\n    get_ipython().events.register(\n"
                   "        'pre_run_cell', lambda info: seen.append(info.raw_cell))\n"
                   "except NameError:\n    pass\n\n" + HEADER + WRONG},
            added=(("code", "print(In)\n"),
                   ("code", "import os\nprint(os.environ.get('LOSSUTILS_GRADING_SEED'))\n"),
                   ("code", "print(seen)\n"))),
        TrustedAttack(
            "kernel-only-failure", "disagreement",
            "a right answer outside the kernel and a wrong one inside it",
            cells={TARGET: "import sys\n\n" + honest_softmax.replace(
                "    e = ", "    if 'ipykernel' in sys.modules:\n"
                "        return np.zeros_like(logits)\n    e = ", 1)},
            earns_target=True),
    ]


def trusted_submission(release: dict, master: dict, attack: TrustedAttack) -> dict:
    """The release completed with the master's solutions, then the attack's cells."""
    nb = submission(release, master, {k: v for k, v in attack.cells.items()
                                      if k in dict(_cells(master, "solution"))})
    for cell in nb["cells"]:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if cell["cell_type"] == "markdown" and gid in attack.cells:
            cell["source"] = attack.cells[gid]
    for cell_type, source in attack.added:
        added = {"cell_type": cell_type, "metadata": {}, "source": source}
        if cell_type == "raw":  # shown as HTML by nbconvert
            added["metadata"] = {"raw_mimetype": "text/html"}
        if cell_type == "code":
            added.update(outputs=[], execution_count=None)
        nb["cells"].append(added)
    return nb


def plant_file_attacks(folder: Path, assignment: str, *, master: Path, honest: Path,
                       outside: Path) -> dict[str, str]:
    """Plant the attacks made of the submitted path itself in nbgrader's submitted layout.

    Parameters
    ----------
    folder : Path
        The ``submitted/`` folder.
    assignment : str
        The assignment (and notebook) id.
    master : Path
        The master notebook, with every hidden test and model answer.
    honest : Path
        Another student's folder (``<folder>/<student>``).
    outside : Path
        A folder outside ``folder`` on the same file system, where a copy of the master goes.

    Returns
    -------
    dict
        Student name to what the attack tries.
    """
    import os

    def notebook(student: str) -> Path:
        path = folder / student / assignment / f"{assignment}.ipynb"
        path.parent.mkdir(parents=True)
        return path

    notebook("file-symlink-master").symlink_to(master)
    (folder / "file-symlink-folder").symlink_to(honest, target_is_directory=True)
    outside.mkdir(exist_ok=True)
    copy = outside / "master-copy.ipynb"
    copy.write_bytes(master.read_bytes())
    os.link(copy, notebook("file-hardlink"))
    os.mkfifo(notebook("file-fifo"))
    return {
        "file-symlink-master": "the notebook is a symbolic link to the master",
        "file-symlink-folder": "the student's folder is a symbolic link to another student's",
        "file-hardlink": "the notebook is a hard link to a file outside the submissions",
        "file-fifo": "the notebook is a FIFO: a grader that opens it waits forever",
    }
