"""Generate the student release (``course/``) from the instructor masters (``solutions/``).

The release is nbgrader's ``generate_assignment`` output, committed to git so that students can
download the course without nbgrader. This module wraps nbgrader, normalises the notebooks so
that regenerating gives byte-identical files, and verifies that no solution, hidden test or
mark scheme reached the release.

Run it as ``lossutils release [ID ...]`` or ``python -m lossutils.release [ID ...]``; with
``--check`` it regenerates into a temporary folder and reports whether the committed release is
in sync instead of writing.

nbgrader is imported lazily: importing it costs seconds, and the reference library never needs it.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

__all__ = [
    "LeakError",
    "assignments",
    "check_no_leak",
    "main",
    "normalise_notebook",
    "release",
]

SOURCE = "solutions"
RELEASE = "course"

#: Notebook-level metadata kept in git; everything else (widget state, editor settings) is dropped.
CANONICAL_METADATA = {
    "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}

#: Markers that must never appear in a release.
LEAK_MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS",
                "BEGIN MARK SCHEME", "END MARK SCHEME")

_REGION = re.compile(
    r"###\s*BEGIN (SOLUTION|HIDDEN TESTS)\s*\n(.*?)###\s*END \1", re.DOTALL
)


class LeakError(AssertionError):
    """A release notebook contains text that only the master may hold."""


def assignments(root: str | Path = ".") -> list[str]:
    """Ids of the assignments in ``solutions/``: folders ``<id>`` holding ``<id>.ipynb``."""
    src = Path(root) / SOURCE
    return sorted(p.name for p in src.iterdir() if (p / f"{p.name}.ipynb").is_file())


def normalise_notebook(path: str | Path) -> bool:
    """Strip outputs and volatile metadata from a notebook in place; return whether it changed.

    Cell metadata (nbgrader's included) is kept; execution counts and outputs are cleared; the
    notebook metadata is reduced to :data:`CANONICAL_METADATA`; the JSON is written by nbformat
    the way Jupyter writes it, so saving in JupyterLab and normalising agree and diffs stay small.
    """
    import nbformat

    path = Path(path)
    text = path.read_text(encoding="utf-8")
    nb = nbformat.reads(text, as_version=4)
    nb.metadata = nbformat.from_dict(json.loads(json.dumps(CANONICAL_METADATA)))
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        for volatile in ("execution", "collapsed", "scrolled"):
            cell.metadata.pop(volatile, None)
    nbformat.validate(nb)
    new = nbformat.writes(nb) + "\n"
    if new != text:
        path.write_text(new, encoding="utf-8")
        return True
    return False


def _cells_by_id(nb: dict) -> dict[str, dict]:
    return {
        c["metadata"]["nbgrader"]["grade_id"]: c
        for c in nb.get("cells", [])
        if "nbgrader" in c.get("metadata", {}) and "grade_id" in c["metadata"]["nbgrader"]
    }


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def check_no_leak(release_path: str | Path, master_path: str | Path | None = None) -> None:
    """Raise :class:`LeakError` if the release holds a solution, hidden test or mark scheme.

    Checks the region markers everywhere, and, given the master, that no non-trivial line of a
    master's solution or hidden-test region appears in the release cell with the same grade id,
    and that every manually graded answer cell was cleared.
    """
    release_nb = json.loads(Path(release_path).read_text(encoding="utf-8"))
    problems = []
    for i, cell in enumerate(release_nb.get("cells", [])):
        src = _source(cell)
        for marker in LEAK_MARKERS:
            if marker in src:
                problems.append(f"cell {i} contains the marker {marker!r}")
    if master_path is not None:
        master_nb = json.loads(Path(master_path).read_text(encoding="utf-8"))
        released = _cells_by_id(release_nb)
        for grade_id, mcell in _cells_by_id(master_nb).items():
            meta = mcell["metadata"]["nbgrader"]
            rcell = released.get(grade_id)
            if rcell is None:
                continue
            rsrc = _source(rcell)
            if mcell["cell_type"] == "markdown" and meta.get("solution"):
                if rsrc.strip() == _source(mcell).strip():
                    problems.append(f"answer cell {grade_id!r} still holds the model answer")
                continue
            for _kind, body in _REGION.findall(_source(mcell)):
                secret = [ln.strip() for ln in body.splitlines()]
                secret = [ln for ln in secret if len(ln) > 8 and not ln.startswith("#")]
                leaked = [ln for ln in secret if ln in rsrc]
                if leaked:
                    problems.append(f"cell {grade_id!r} leaks {leaked[0]!r}")
    if problems:
        raise LeakError(f"{release_path}: " + "; ".join(problems))


def _generate(ids: list[str], root: Path, release_dir: Path) -> None:
    """Run nbgrader's generate_assignment for ``ids`` into ``release_dir``.

    The gradebook nbgrader insists on writing goes to a temporary file.
    """
    from nbgrader.apps import NbGraderAPI
    from traitlets.config import Config

    from ._tools import ensure_scripts_on_path

    ensure_scripts_on_path()

    with tempfile.TemporaryDirectory(prefix="lossutils-release-") as tmp:
        config = Config()
        config.CourseDirectory.root = str(root.resolve())
        config.CourseDirectory.source_directory = SOURCE
        config.CourseDirectory.release_directory = str(release_dir.resolve())
        config.CourseDirectory.db_url = f"sqlite:///{Path(tmp) / 'gradebook.db'}"
        config.CourseDirectory.course_id = "lossutils"
        api = NbGraderAPI(config=config)
        for assignment_id in ids:
            result = api.generate_assignment(assignment_id, force=True, create=True)
            if not result.get("success"):
                raise RuntimeError(
                    f"nbgrader generate_assignment {assignment_id} failed:\n"
                    f"{result.get('error') or result.get('log')}"
                )


def release(
    ids: list[str] | None = None, root: str | Path = ".", out: str | Path | None = None
) -> list[Path]:
    """Regenerate the release of ``ids`` (default: every assignment); return the notebooks written.

    Masters are normalised first (outputs stripped), then nbgrader generates the release into
    ``out`` (default ``course/``), which is normalised and checked for leaks.
    """
    root = Path(root)
    ids = ids or assignments(root)
    known = set(assignments(root))
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise ValueError(
            f"unknown assignment(s) {unknown}; the masters in {root / SOURCE} are {sorted(known)}"
        )
    out = Path(out) if out is not None else root / RELEASE
    for assignment_id in ids:
        normalise_notebook(root / SOURCE / assignment_id / f"{assignment_id}.ipynb")
        shutil.rmtree(out / assignment_id, ignore_errors=True)
    _generate(ids, root, out)
    written = []
    for assignment_id in ids:
        nb_path = out / assignment_id / f"{assignment_id}.ipynb"
        normalise_notebook(nb_path)
        check_no_leak(nb_path, root / SOURCE / assignment_id / f"{assignment_id}.ipynb")
        written.append(nb_path)
    return written


def out_of_sync(ids: list[str] | None = None, root: str | Path = ".") -> list[str]:
    """Regenerate into a temporary folder; return the release files that differ from ``course/``."""
    root = Path(root)
    ids = ids or assignments(root)
    with tempfile.TemporaryDirectory(prefix="lossutils-release-check-") as tmp:
        fresh = release(ids, root, out=tmp)
        differ = []
        for path in fresh:
            committed = root / RELEASE / path.parent.name / path.name
            if not committed.exists() or not filecmp.cmp(path, committed, shallow=False):
                differ.append(str(committed))
        for assignment_id in ids:
            extra = {p.name for p in (root / RELEASE / assignment_id).glob("*")} - {
                p.name for p in (Path(tmp) / assignment_id).glob("*")
            }
            differ += [str(root / RELEASE / assignment_id / name) for name in sorted(extra)]
    return differ


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="lossutils release",
        description="Regenerate course/ (the student release) from solutions/ (the masters).",
    )
    parser.add_argument("ids", nargs="*", help="assignment ids (default: all)")
    parser.add_argument("--root", default=".", help="course root (default: current folder)")
    parser.add_argument(
        "--check", action="store_true",
        help="do not write; exit 1 if the committed release is out of sync with the masters",
    )
    args = parser.parse_args(argv)
    try:
        if args.check:
            differ = out_of_sync(args.ids or None, args.root)
            if differ:
                print("release out of sync with the masters (run `lossutils release`):")
                for path in differ:
                    print(f"  {path}")
                return 1
            print("release in sync with the masters")
            return 0
        for path in release(args.ids or None, args.root):
            print(f"wrote {path}")
    except (ValueError, LeakError, RuntimeError) as exc:
        print(f"lossutils release: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
