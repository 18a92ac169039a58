"""Gradescope: ``lossutils gradescope ASSIGNMENT --out autograder.zip`` and the grader it runs.

The zip follows Gradescope's autograder specification (docs "Autograder Specifications"):
``setup.sh`` (run once, as root, when Gradescope builds the image) and ``run_autograder`` (run
for every submission, in ``/autograder``) at its root, unpacked to ``/autograder/source``; the
student's files arrive in ``/autograder/submission`` and the grader writes
``/autograder/results/results.json``:

* ``score``: the autograded points; ``execution_time`` in seconds; ``output`` (shown to the
  student at once): what was graded, problems with the file, written answers left to
  Gradescope's manual grading, whether the notebook ran unsandboxed;
* ``tests``: per exercise whose test cell has hidden checks, an entry with the points
  (``score``, ``max_score``) and a verdict, ``visibility: after_published``, and an entry
  without points (``status`` passed/failed) holding what the checks of the student's own copy
  said, visible at once; exercises without hidden checks get one visible entry. Since some
  tests are hidden, Gradescope shows students their total only when grades are published.

Nothing student-facing is rendered as HTML (``output_format``/``test_output_format``
``text``): a student's printed text is shown as text. The grader's own log goes to
``run_autograder``'s standard output, which Gradescope shows to instructors only.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.metadata
import json
import os
import sys
import time
import traceback
import zipfile

from ._single import Outcome, grade_notebook, single_master

__all__ = ["build_autograder", "gradescope_results", "main", "run"]

CONFIG = "lossutils-autograder.json"
DEFAULT_ROOT = "/autograder"

_SETUP = """#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's image (network allowed).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends python3 python3-venv ca-certificates
PYTHON=python3
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    # lossutils needs Python 3.11+; Ubuntu 22.04 (Gradescope's default image) has 3.10
    apt-get install -y --no-install-recommends python3.11 python3.11-venv
    PYTHON=python3.11
fi
# bubblewrap sandboxes the student's code; where the container cannot run it, every result
# says that the notebook ran unsandboxed
apt-get install -y --no-install-recommends bubblewrap \\
    || echo "bubblewrap could not be installed: notebooks will run unsandboxed"
"$PYTHON" -m venv /autograder/venv
/autograder/venv/bin/python -m pip install --upgrade pip
/autograder/venv/bin/python -m pip install "/autograder/source/{wheel}[course]"
"""

_RUN = """#!/usr/bin/env bash
# Gradescope runs this for every submission; it writes $ROOT/results/results.json.
# LOSSUTILS_AUTOGRADER_ROOT and LOSSUTILS_PYTHON exist for testing this script elsewhere.
ROOT="${LOSSUTILS_AUTOGRADER_ROOT:-/autograder}"
exec "${LOSSUTILS_PYTHON:-/autograder/venv/bin/python}" -m lossutils.platforms.gradescope \\
    --root "$ROOT"
"""

# A fixed time for every zip entry: the same inputs give the same zip.
_ZIP_TIME = (2020, 1, 1, 0, 0, 0)


def _wheel() -> tuple[str, dict[str, bytes]]:
    """This installed lossutils as a wheel: its package files and its own metadata.

    Built from the installed files rather than by a build backend, so that it needs neither
    the source tree nor the network; pip installs it like any wheel.
    """
    import lossutils

    dist = importlib.metadata.distribution("lossutils")
    version = dist.version
    info = f"lossutils-{version}.dist-info"
    files: dict[str, bytes] = {}
    package = os.path.dirname(os.path.abspath(lossutils.__file__))
    for root, dirs, names in os.walk(package):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
        for name in sorted(names):
            if name.endswith((".pyc", ".pyo")) or name.startswith("."):
                continue
            path = os.path.join(root, name)
            arc = os.path.join("lossutils", os.path.relpath(path, package)).replace(os.sep, "/")
            with open(path, "rb") as fh:
                files[arc] = fh.read()
    files[f"{info}/METADATA"] = dist.read_text("METADATA").encode()
    entry_points = dist.read_text("entry_points.txt")
    if entry_points:
        files[f"{info}/entry_points.txt"] = entry_points.encode()
    for item in dist.files or ():
        if str(item).startswith(f"{info}/licenses/"):
            files[str(item)] = item.read_binary()
    files[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: lossutils gradescope\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n"
    )
    record = []
    for arc, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{arc},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    return f"lossutils-{version}-py3-none-any.whl", files


def _add(zf: zipfile.ZipFile, name: str, data: bytes, executable: bool = False) -> None:
    entry = zipfile.ZipInfo(name, _ZIP_TIME)
    entry.compress_type = zipfile.ZIP_DEFLATED
    entry.external_attr = (0o755 if executable else 0o644) << 16
    zf.writestr(entry, data)


def build_autograder(assignment: str, out: str, *, source: str = "solutions",
                     timeout: int = 60) -> dict:
    """Write a Gradescope autograder zip for ``assignment``; return what went in.

    Parameters
    ----------
    assignment : str
        Assignment id (``<source>/<assignment>/<notebook>.ipynb``, one notebook).
    out : str
        The zip to write.
    source : str
        Folder with the masters (the zip carries the master: hidden tests included, so keep
        the zip to instructors; Gradescope never shows it to students).
    timeout : int
        Seconds each cell may run.

    Returns
    -------
    dict
        ``assignment``, ``notebook``, ``wheel``, ``points`` (autograded) and ``manual``
        (points of written answers left to manual grading).

    Raises
    ------
    ValueError
        If the master is missing or has more than one notebook.
    """
    import nbformat

    notebook = single_master(source, assignment)
    master = nbformat.read(os.path.join(source, assignment, notebook + ".ipynb"), as_version=4)
    points = manual = 0.0
    for cell in master.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade"):
            if cell.cell_type == "code" and not meta.get("solution"):
                points += float(meta.get("points", 0))
            else:
                manual += float(meta.get("points", 0))
    wheel_name, wheel_files = _wheel()
    folder = os.path.join(source, assignment)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = out + ".tmp"
    with zipfile.ZipFile(tmp, "w") as zf:
        _add(zf, "setup.sh", _SETUP.format(wheel=wheel_name).encode(), executable=True)
        _add(zf, "run_autograder", _RUN.encode(), executable=True)
        config = {"assignment": assignment, "notebook": notebook, "timeout": timeout}
        _add(zf, CONFIG, (json.dumps(config, indent=1) + "\n").encode())
        for root, dirs, names in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(n for n in names if not n.startswith(".")):
                path = os.path.join(root, name)
                with open(path, "rb") as fh:
                    rel = os.path.relpath(path, source).replace(os.sep, "/")
                    _add(zf, f"solutions/{rel}", fh.read())
        wheel_path = tmp + ".whl"
        with zipfile.ZipFile(wheel_path, "w") as wf:
            for arc, data in wheel_files.items():
                _add(wf, arc, data)
        with open(wheel_path, "rb") as fh:
            _add(zf, wheel_name, fh.read())
        os.remove(wheel_path)
    os.replace(tmp, out)
    return {"assignment": assignment, "notebook": notebook, "wheel": wheel_name,
            "points": points, "manual": manual}


def gradescope_results(outcome: Outcome) -> dict:
    """The ``results.json`` Gradescope reads, from a graded notebook.

    Student-visible fields (``output``, and tests with ``visibility: visible``) hold only text
    from the run without hidden checks, the checks' catalogue, or the grader's own words.
    """
    lines = []
    if outcome.notebook:
        lines.append(f"Graded {outcome.notebook} as {outcome.assignment}.")
    lines += outcome.messages
    tests = []
    for ex in outcome.exercises:
        if ex.has_hidden:
            tests.append({
                "name": f"{ex.name}: the checks in your notebook",
                "status": "passed" if ex.visible_passed else "failed",
                "output": ex.visible_output,
                "visibility": "visible",
            })
            tests.append({
                "name": ex.name,
                "score": ex.points,
                "max_score": ex.max_points,
                "output": ex.verdict,
                "visibility": "after_published",
            })
        else:
            tests.append({
                "name": ex.name,
                "score": ex.points,
                "max_score": ex.max_points,
                "output": ex.verdict if ex.visible_passed
                else ex.verdict + "\n\n" + ex.visible_output,
                "visibility": "visible",
            })
    if outcome.hidden_messages:
        tests.append({
            "name": "problems while running the hidden checks",
            "status": "failed",
            "output": "\n".join(outcome.hidden_messages),
            "visibility": "after_published",
        })
    if any(ex.has_hidden for ex in outcome.exercises):
        lines.append("Your points include hidden checks drawn at grading time: they appear "
                     "when your instructor publishes the grades.")
    if outcome.written:
        names = ", ".join(f"{gid} ({pts:g} point{'s' if pts != 1 else ''})"
                          for gid, pts in outcome.written)
        lines.append(f"Written answers are graded by hand in Gradescope, not here: {names}.")
    if not outcome.sandboxed:
        lines.append("Your notebook ran without the grader's sandbox: bubblewrap cannot run in "
                     "this container, so the container is the only isolation.")
    return {
        "score": outcome.score,
        "execution_time": round(outcome.seconds),
        "output": "\n".join(lines),
        "output_format": "text",
        "test_output_format": "text",
        "test_name_format": "text",
        "stdout_visibility": "hidden",
        "tests": tests,
    }


def _write(path: str, results: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(results, fh, indent=1)
    os.replace(tmp, path)


def run(root: str = DEFAULT_ROOT, stream=sys.stdout) -> int:
    """Grade ``<root>/submission`` and write ``<root>/results/results.json``; return 0.

    A results file is written whatever happens: a grader failure becomes a score of 0 with a
    message for the student and the traceback on ``stream`` (the instructor's log).
    """
    results_path = os.path.join(root, "results", "results.json")
    start = time.monotonic()
    try:
        with open(os.path.join(root, "source", CONFIG), encoding="utf-8") as fh:
            config = json.load(fh)
        outcome = grade_notebook(
            os.path.join(root, "submission"),
            source=os.path.join(root, "source", "solutions"),
            assignment=config["assignment"],
            timeout=int(config["timeout"]),
        )
        results = gradescope_results(outcome)
        stream.write(
            f"{config['assignment']}: {outcome.status}, {outcome.score:g}/{outcome.max_score:g} "
            f"autograded points, seed {outcome.seed}, "
            f"{'sandboxed' if outcome.sandboxed else 'UNSANDBOXED'}, {outcome.seconds:.1f} s\n"
        )
        for ex in outcome.exercises:
            stream.write(f"  {ex.grade_id}: {ex.points:g}/{ex.max_points:g}  {ex.detail[:500]}\n")
        for line in outcome.instructor + outcome.hidden_messages:
            stream.write(f"  {line}\n")
    except Exception:
        stream.write(traceback.format_exc())
        results = {
            "score": 0.0,
            "execution_time": round(time.monotonic() - start),
            "output": "The autograder itself failed on this submission; your instructor has "
                      "the details. Please tell them.",
            "output_format": "text",
            "stdout_visibility": "hidden",
            "tests": [],
        }
    _write(results_path, results)
    return 0


def main(argv=None) -> int:
    """``python -m lossutils.platforms.gradescope [--root /autograder]``: what
    ``run_autograder`` runs."""
    parser = argparse.ArgumentParser(
        prog="python -m lossutils.platforms.gradescope",
        description="Grade a Gradescope submission with the course's checks.",
    )
    parser.add_argument("--root", default=DEFAULT_ROOT,
                        help=f"Gradescope's autograder folder (default: {DEFAULT_ROOT})")
    args = parser.parse_args(argv)
    return run(args.root)


if __name__ == "__main__":
    sys.exit(main())
