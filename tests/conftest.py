"""What the tests share: the fixture course and its samples, and what this machine can run.

Tests that need a system tool or root carry a marker (``needs_bwrap``, ``needs_root``,
``needs_chromium``). Where the tool is missing they are skipped, with the reason, and the run
ends with one line saying what was not run and how to enable it. Grading tests that are not
about the sandbox take the ``sandboxed`` fixture and grade without the sandbox when bubblewrap
cannot run here, so that they still run.

Test modules import the plain helpers (``from tests.conftest import ...``): pytest's importlib
mode registers this file as ``tests.conftest``.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent

# The fixture course: one master with two autograded exercises and one written answer.
SOURCE = ROOT / "tests" / "fixtures" / "grading" / "solutions"
ASSIGNMENT = "00-fixture"
MASTER = SOURCE / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"


# --------------------------------------------------------------------------- the fixture course


def fixture_points() -> dict[str, float]:
    """Points of the fixture's autograded test cells, read straight from the JSON."""
    cells = json.loads(MASTER.read_text(encoding="utf-8"))["cells"]
    return {
        c["metadata"]["nbgrader"]["grade_id"]: float(c["metadata"]["nbgrader"]["points"])
        for c in cells
        if c["cell_type"] == "code" and c["metadata"]["nbgrader"].get("grade")
    }


@functools.cache
def fixture_master() -> dict:
    from lossutils.grading.masters import load_master

    return load_master(ASSIGNMENT, str(SOURCE))


def fixture_task(path, **overrides):
    """A worker task grading ``path`` (None: a missing notebook) against the fixture master."""
    from lossutils.grading.task import make_task

    options = {"student": "s", "assignment": ASSIGNMENT, "notebook": ASSIGNMENT, "timeout": 5,
               "seed": 1, "max_bytes": 10**7, "max_output_chars": 10**4, "feedback": False,
               "keep_notebook": False}
    return make_task(path=None if path is None else str(path), master=fixture_master(),
                     **{**options, **overrides})


@dataclass(frozen=True)
class Samples:
    """The fixture master's sample submissions (nbgrader's submitted layout) and their
    outcomes, ``student -> (score, status)``, as the sample generator derives them."""

    folder: Path
    outcomes: dict

    def notebook(self, student: str) -> Path:
        return self.folder / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"

    def copy(self, student: str, submitted: Path, as_student: str | None = None) -> None:
        """Copy one sample into the submitted folder ``submitted``, under another name if
        given."""
        shutil.copytree(self.folder / student, submitted / (as_student or student))


@pytest.fixture(scope="session")
def samples(tmp_path_factory) -> Samples:
    """Generated once per run: correct, untouched, one mistake per exercise, a dying kernel
    and an endless loop (``infinite-loop``, which only a cell timeout ends)."""
    from lossutils.grading.samples import generate_samples

    folder = tmp_path_factory.mktemp("samples")
    manifest = generate_samples(str(SOURCE), str(folder), extras=False, timeout_sample=True)
    return Samples(folder, {m["student"]: (m["score"], m["status"]) for m in manifest})


def with_first_cell(notebook: Path, source: str, into: Path) -> None:
    """Write ``notebook`` to ``into`` with a code cell of ``source`` put first."""
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    nb["cells"].insert(0, {"cell_type": "code", "id": "put-first", "metadata": {},
                           "execution_count": None, "outputs": [], "source": source})
    into.parent.mkdir(parents=True, exist_ok=True)
    into.write_text(json.dumps(nb), encoding="utf-8")


def wait_for_file_cell(flag: Path) -> str:
    """The source of a cell that waits until ``flag`` exists: a submission that cannot finish
    before the test lets it (visible only to a kernel outside the sandbox)."""
    return f"import os, time\nwhile not os.path.exists({str(flag)!r}):\n    time.sleep(0.05)\n"


def _helper_module(name: str, path: Path):
    """A helper file of the tests as a module, loaded once (test files cannot import each
    other under the importlib import mode)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # (its dataclasses look themselves up in sys.modules)
    return sys.modules[name]


def load_attacks():
    """tests/redteam/attacks.py, the generator of hostile submissions."""
    return _helper_module("redteam_attacks", ROOT / "tests" / "redteam" / "attacks.py")


def load_chromium():
    """tests/chromium.py, headless Chromium for the browser tests."""
    return _helper_module("lossutils_tests_chromium", ROOT / "tests" / "chromium.py")


def free_port() -> int:
    """A loopback port nobody listens on (once the probing socket is closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- system tools


@functools.cache
def _sandbox_problem() -> str | None:
    """Why the grading sandbox cannot run here and how to change that, or None."""
    from lossutils.grading.sandbox import SandboxUnavailable, require_sandbox

    try:
        require_sandbox()
    except SandboxUnavailable as exc:
        if shutil.which("bwrap") is None:
            return "bubblewrap missing: apt-get install bubblewrap, or run make test as root"
        return (f"bubblewrap cannot run here ({exc.reason}): allow unprivileged user "
                "namespaces, or run make test as root")
    return None


@functools.cache
def _root_problem() -> str | None:
    """Why the grader's root-only paths (a fresh user id per sandbox, kernels forked from a
    zygote) cannot be tested here, or None."""
    from lossutils.grading.sandbox import zygote_supported

    if zygote_supported():
        return None
    if os.geteuid() == 0:
        return "LOSSUTILS_NO_ZYGOTE is set: unset it"
    return "they need a root grader: run make test as root"


def _chromium_problem() -> str | None:
    if load_chromium().chromium_path() is not None:
        return None
    return "chromium missing: apt-get install chromium, or run make test as root"


# marker -> (what its tests are called in the summary, why they cannot run here or None)
_NEEDS = {
    "needs_bwrap": ("sandbox", _sandbox_problem),
    "needs_root": ("root-grader", _root_problem),
    "needs_chromium": ("browser", _chromium_problem),
}
# What a test's reports carry to the process that writes the summary (with pytest-xdist, the
# controller: the tests run in worker processes), and what that process gathers from them.
_SKIPPED_FOR = "lossutils-not-run"  # (the marker whose tool is missing, the reason)
_UNSANDBOXED = "lossutils-unsandboxed"
_not_run: dict[str, tuple[str, list[str]]] = {}  # marker -> (reason, ids of the tests skipped)
_unsandboxed: set[str] = set()  # ids of the grading tests that ran without the sandbox


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    # In marker order: a test needing bubblewrap and a root grader counts as a sandbox test.
    for marker, (_, problem) in _NEEDS.items():
        if item.get_closest_marker(marker) is None:
            continue
        reason = problem()
        if reason is not None:
            item.user_properties.append((_SKIPPED_FOR, (marker, reason)))
            pytest.skip(reason)


def pytest_runtest_logreport(report):
    # Called where the summary is written, for the reports of every process.
    if report.when != "setup":
        return
    properties = dict(report.user_properties)
    if _SKIPPED_FOR in properties and report.skipped:
        marker, reason = properties[_SKIPPED_FOR]
        _not_run.setdefault(marker, (reason, []))[1].append(report.nodeid)
    if _UNSANDBOXED in properties:
        _unsandboxed.add(report.nodeid)


@pytest.fixture(scope="session")
def sandboxed() -> bool:
    """Whether grading tests grade in the sandbox: yes when bubblewrap runs here, else they
    grade without it (what ``--unsandboxed`` does) rather than not run at all."""
    return _sandbox_problem() is None


def unsandboxed_flag(sandboxed: bool) -> list[str]:
    """The ``lossutils grade`` arguments that go with the ``sandboxed`` fixture's answer."""
    return [] if sandboxed else ["--unsandboxed"]


@pytest.fixture(autouse=True)
def _count_unsandboxed(request):
    if "sandboxed" in request.fixturenames and _sandbox_problem() is not None:
        request.node.user_properties.append((_UNSANDBOXED, True))


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' * (count != 1)}"


def _not_run_line(not_run: dict, unsandboxed: int) -> str | None:
    """The one summary line: what was not run, why, and how to run it; None if all ran.

    ``not_run`` maps a marker to the reason and the tests skipped for it; ``unsandboxed``
    counts the grading tests that ran without the sandbox.
    """
    parts = [f"{_plural(len(not_run[marker][1]), kind + ' test')} ({not_run[marker][0]})"
             for marker, (kind, _) in _NEEDS.items() if marker in not_run]
    if not parts:
        return None
    if unsandboxed:
        parts.append(f"{_plural(unsandboxed, 'grading test')} ran unsandboxed instead")
    return "not run: " + "; ".join(parts)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter, config):
    # Outermost wrapper: the line comes after pytest's own summary, just before the totals.
    result = yield
    line = _not_run_line(_not_run, len(_unsandboxed))
    if line is not None:
        terminalreporter.write_line(line, yellow=True, bold=True)
    return result
