"""`lossutils grade` on the derivations of notebooks 01-06, verification included.

For every notebook: the release with the master's answers typed in earns every autograded
point, the untouched release earns none, and a release with one step of a derivation wrong
loses exactly that step's points (the step after it, which is right, keeps its own), with the
mistake's diagnosis in the results. The expected scores come from the masters' cell metadata.
"""

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

from lossutils.checks import exercises, get_exercise

ROOT = Path(__file__).resolve().parent.parent

# One wrong step per notebook, written as a student would: (solution cell, source, diagnosis).
WRONG_STEP = {
    "01-likelihood": ("p_hat", "p_hat = 1 - sp.Sum(y[m], (m, 1, M)) / M\n", "tails"),
    "02-gaussian-l2": ("beta_hat", "beta_hat = sp.Sum((y[m] - yhat[m]) ** 2, (m, 1, M)) / M\n",
                       "variance_not_precision"),
    "03-cross-entropy": ("dlogsoftmax",
                         "dlogsoftmax = -sp.exp(z[i]) / sp.Sum(sp.exp(z[j]), (j, 1, K))\n",
                         "missing_delta"),
    "04-kl-divergence": ("expected_sq", "expected_sq = sigma_p**2\n", "missing_shift"),
    "05-hinge-svm": ("xi_opt", "xi_opt = 1 - y_s[m_s] * w_s * x_s[m_s]\n", "no_max"),
    "06-optimization": ("correction", "correction = 1 - mu\n", "multiplies_one_minus_mu"),
}


def _module(name: str):
    """A sibling test module (the tests are not a package)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).parent / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _meta(cell: dict) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def _typed(source) -> str:
    text = "".join(source) if isinstance(source, list) else source
    return "\n".join(line for line in text.split("\n")
                     if not re.match(r"\s*### (BEGIN|END) SOLUTION", line))


def _points(master: dict) -> dict[str, float]:
    return {_meta(c)["grade_id"]: float(_meta(c)["points"]) for c in master["cells"]
            if c["cell_type"] == "code" and _meta(c).get("grade")}


def _answered(release: dict, master: dict, override: dict) -> dict:
    nb = json.loads(json.dumps(release))
    answers = {_meta(c)["grade_id"]: c["source"] for c in master["cells"]
               if _meta(c).get("solution")}
    for cell in nb["cells"]:
        grade_id = _meta(cell).get("grade_id")
        if _meta(cell).get("solution") and cell["cell_type"] == "code":
            cell["source"] = override.get(grade_id, _typed(answers[grade_id]))
    return nb


@pytest.fixture(scope="module")
def graded(tmp_path_factory, sandboxed):
    from lossutils.grading.run import grade

    base = tmp_path_factory.mktemp("derivations")
    expected = {}
    for assignment, (cell, source, _) in WRONG_STEP.items():
        master = _load(ROOT / "solutions" / assignment / f"{assignment}.ipynb")
        release = _load(ROOT / "course" / assignment / f"{assignment}.ipynb")
        points = _points(master)
        total = sum(points.values())
        for student, nb, score in [("correct", _answered(release, master, {}), total),
                                   ("untouched", release, 0.0),
                                   ("wrong-step", _answered(release, master, {cell: source}),
                                    total - points[f"test_{cell}"])]:
            folder = base / "submitted" / student / assignment
            folder.mkdir(parents=True)
            (folder / f"{assignment}.ipynb").write_text(json.dumps(nb), encoding="utf-8")
            expected[student, assignment] = score
    # The limit only bounds a broken run: no cell here comes near it.
    summary = grade(str(base / "submitted"), str(base / "out"), source=str(ROOT / "solutions"),
                    workers=2, timeout=120, seed=11, sandbox=sandboxed, progress=None)
    return summary, expected


@pytest.mark.grading
def test_every_derivation_scores_as_its_master_says(graded):
    summary, expected = graded
    got = {(r["student"], r["assignment"]): r["score"] for r in summary["results"]}
    why = {(r["student"], r["assignment"]): (r["status"], r["problems"])
           for r in summary["results"] if r["status"] != "ok" or r["problems"]}
    assert got == expected, why
    assert not why


@pytest.mark.grading
def test_the_wrong_step_is_diagnosed_after_verification(graded):
    summary, _ = graded
    for result in summary["results"]:
        if result["student"] != "wrong-step":
            continue
        cell, _, diagnosis = WRONG_STEP[result["assignment"]]
        [record] = [c for c in result["cells"] if c["grade_id"] == f"test_{cell}"]
        assert record["diagnosis"] == diagnosis, (result["assignment"], record)
        assert record["verified"]["passed"] is False
        assert not any(p["code"] == "tampering-suspected" for p in result["problems"])


@pytest.mark.grading
def test_no_feedback_page_or_message_shows_an_expected_expression(graded):
    import html

    derivations = _module("test_derivations")
    by_hand, forms_of, squeezed = derivations.BY_HAND, derivations._forms, derivations._squeezed
    summary, _ = graded
    out = Path(summary["out"])
    steps = [n for n in exercises() if getattr(get_exercise(n), "takes_value", False)]
    for result in summary["results"]:
        assignment = result["assignment"]
        forms = {squeezed(f) for n in steps if get_exercise(n).notebook == assignment
                 for f in forms_of(get_exercise(n).truth()) | set(by_hand[n])}
        messages = squeezed(" ".join(str(c.get("message") or "") for c in result["cells"]))
        assert not [f for f in forms if f in messages], result["student"]
        if result["student"] == "untouched":
            page = (out / "feedback" / "untouched" / assignment / f"{assignment}.html")
            text = squeezed(html.unescape(page.read_text(encoding="utf-8")))
            assert not [f for f in forms if f in text], assignment
