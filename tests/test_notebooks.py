"""The course notebooks under stock nbgrader: release in sync, nothing leaked, honest scores.

nbval executes every master separately (``pytest --nbval-lax solutions``, part of ``make test``).
Here each assignment is autograded by stock ``nbgrader autograde`` in a scratch course folder,
with three submissions: the master itself (must earn every autograded point), the untouched
release (must earn zero) and the release with exactly one exercise solved (must earn exactly
that exercise's points).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lossutils.release import assignments, check_no_leak, normalise_notebook, out_of_sync

pytestmark = pytest.mark.notebooks

# Another course root (a fork with its own notebooks) can be tested by pointing this variable at it.
ROOT = Path(os.environ.get("LOSSUTILS_COURSE_ROOT", Path(__file__).resolve().parents[1]))
IDS = assignments(ROOT)
BIN = Path(sys.executable).parent


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _src(cell: dict) -> str:
    src = cell["source"]
    return "".join(src) if isinstance(src, list) else src


def _nbg(cell: dict) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def _exercise_ids(cells: list[dict]) -> list[str]:
    """grade ids of the autograded solution cells, in notebook order."""
    code = [c for c in cells if c["cell_type"] == "code"]
    return [_nbg(c)["grade_id"] for c in code if _nbg(c).get("solution")]


def _test_cells(cells: list[dict]) -> dict[str, dict]:
    code = [c for c in cells if c["cell_type"] == "code"]
    return {_nbg(c)["grade_id"]: c for c in code if _nbg(c).get("grade")}


def _master(aid: str) -> Path:
    return ROOT / "solutions" / aid / f"{aid}.ipynb"


def _release(aid: str) -> Path:
    return ROOT / "course" / aid / f"{aid}.ipynb"


def test_every_master_has_a_release():
    assert len(IDS) >= 1, "no master notebooks found in solutions/"
    released = sorted(p.name for p in (ROOT / "course").iterdir() if p.is_dir())
    assert released == IDS


def test_release_is_in_sync_with_the_masters():
    assert out_of_sync(root=ROOT) == []


@pytest.mark.parametrize("aid", IDS)
def test_release_leaks_nothing(aid):
    check_no_leak(_release(aid), _master(aid))


@pytest.mark.parametrize("aid", IDS)
def test_notebooks_are_committed_normalised(aid, tmp_path):
    for path in (_master(aid), _release(aid)):
        copy = tmp_path / path.name
        shutil.copy(path, copy)
        assert not normalise_notebook(copy), f"{path} has outputs or volatile metadata"


@pytest.mark.parametrize("aid", IDS)
def test_every_exercise_has_a_locked_test_cell_with_hidden_checks(aid):
    cells = _load(_master(aid))["cells"]
    solutions = _exercise_ids(cells)
    tests = _test_cells(cells)
    assert len(solutions) >= 3
    for grade_id in solutions:
        test = tests.get(f"test_{grade_id}")
        assert test is not None, f"exercise {grade_id} has no test cell test_{grade_id}"
        assert _nbg(test)["locked"]
        assert _nbg(test)["points"] > 0
        source = _src(test)
        assert "BEGIN HIDDEN TESTS" in source
        assert "hidden=True" in source
    manual = [c for c in cells if c["cell_type"] == "markdown" and _nbg(c).get("grade")]
    assert manual, "at least one manually graded answer"


# --- stock nbgrader autograde ---------------------------------------------------------------

# Packages a notebook may use for extras but that a student's machine may lack.
OPTIONAL = {"ipywidgets"}


def _unguarded_optional_imports(source: str) -> list[str]:
    """Optional packages imported outside a ``try`` that catches ImportError."""
    tree = ast.parse(source)
    guarded = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
            for h in node.handlers
        ):
            guarded |= {id(inner) for stmt in node.body for inner in ast.walk(stmt)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        found += [n for n in names if n.split(".")[0] in OPTIONAL and id(node) not in guarded]
    return found


@pytest.mark.parametrize("aid", IDS)
def test_optional_packages_have_a_fallback(aid):
    # Run All must not stop on a machine without ipywidgets.
    for cell in _load(_master(aid))["cells"]:
        if cell["cell_type"] == "code":
            assert _unguarded_optional_imports(_src(cell)) == [], (aid, cell.get("id"))


def _strip_solution_markers(source: str) -> str:
    return "\n".join(
        ln for ln in source.split("\n") if not re.match(r"\s*### (BEGIN|END) SOLUTION", ln)
    )


def _first_exercise(master: dict) -> tuple[str, int]:
    exercises = _exercise_ids(master["cells"])
    assert exercises, "no exercise"
    return exercises[0], _nbg(_test_cells(master["cells"])[f"test_{exercises[0]}"])["points"]


# One interpreter generates and autogrades every assignment: nbgrader's import alone costs seconds.
_AUTOGRADE = """
import sys
from nbgrader.apps import NbGraderAPI
from traitlets.config import Config
config = Config()
config.CourseDirectory.root = sys.argv[1]
config.CourseDirectory.db_url = "sqlite:///" + sys.argv[1] + "/gradebook.db"
api = NbGraderAPI(config=config)
for aid in sys.argv[2:]:
    for step in (api.generate_assignment, lambda a: api.autograde(a, "master"),
                 lambda a: api.autograde(a, "blank"), lambda a: api.autograde(a, "one")):
        result = step(aid)
        if not result["success"]:
            sys.exit(f"{aid}: " + (result.get("error") or result.get("log") or "failed"))
"""


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A scratch course where stock nbgrader autograded three submissions of every assignment."""
    course = tmp_path_factory.mktemp("course")
    solved = {}
    for aid in IDS:
        shutil.copytree(ROOT / "solutions" / aid, course / "source" / aid)
        master = _load(_master(aid))
        release = _load(_release(aid))
        solved_id, solved_points = _first_exercise(master)
        solved[aid] = solved_points
        one = json.loads(json.dumps(release))
        master_cells = {_nbg(c).get("grade_id"): c for c in master["cells"]}
        for cell in one["cells"]:
            if _nbg(cell).get("grade_id") == solved_id:
                cell["source"] = _strip_solution_markers(_src(master_cells[solved_id]))
        for student, nb in {"master": master, "blank": release, "one": one}.items():
            folder = course / "submitted" / student / aid
            folder.mkdir(parents=True)
            (folder / f"{aid}.ipynb").write_text(json.dumps(nb), encoding="utf-8")
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(
        [sys.executable, "-c", _AUTOGRADE, str(course), *IDS],
        cwd=course, env=env, capture_output=True, text=True, timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return course, solved


@pytest.fixture(params=IDS)
def autograded(request, course):
    from nbgrader.api import Gradebook

    root, solved = course
    aid = request.param
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        scores = {s: gb.find_submission(aid, s).code_score for s in ("master", "blank", "one")}
        max_score = gb.find_assignment(aid).max_code_score
    graded_master = _load(root / "autograded" / "master" / aid / f"{aid}.ipynb")
    return {"id": aid, "scores": scores, "max": max_score, "solved_points": solved[aid],
            "master_nb": graded_master}


def test_master_earns_every_autograded_point(autograded):
    assert autograded["max"] > 0
    assert autograded["scores"]["master"] == autograded["max"]


def test_untouched_release_earns_zero(autograded):
    assert autograded["scores"]["blank"] == 0


def test_one_solved_exercise_earns_exactly_its_points(autograded):
    assert autograded["scores"]["one"] == autograded["solved_points"]


def test_master_writes_nothing_to_stderr(autograded):
    for i, cell in enumerate(autograded["master_nb"]["cells"]):
        for out in cell.get("outputs", []):
            assert not (out.get("output_type") == "stream" and out.get("name") == "stderr"), (
                f"{autograded['id']} cell {i} wrote to stderr: {out.get('text')!r}"
            )
            assert out.get("output_type") != "error", f"{autograded['id']} cell {i} raised"
