"""What an instructor and a student see: ``report.html`` and the feedback pages in Chromium.

One grading run per session: the demo's samples of one assignment (every outcome: ok, a
mistake, a timeout, a dying kernel, an unreadable file) and one hostile submission whose
student name, printed output, HTML/JavaScript/SVG/markdown outputs and markdown cells carry
markup and script. Each page must load from disk with no console error and no request leaving
the machine (Chromium is offline here: a CDN would show as a refused request), typeset its math,
show its figures, and show what the student wrote as text without running any of it.
"""

import json
import shutil
from pathlib import Path

import nbformat
import pytest

from lossutils.grading.run import grade
from lossutils.grading.samples import generate_samples
from tests.conftest import ROOT, load_chromium

ASSIGNMENT = "01-likelihood"  # three figures before its first exercise

chromium = load_chromium()

pytestmark = [pytest.mark.grading, pytest.mark.needs_chromium]

# A student id is a folder name: anything but "/" and NUL. The grader refuses a name that is
# markup (nbgrader's formgrader shows names unescaped); the report still names the student.
HOSTILE = "<img src=x onerror=\"window.__pwned='name'\">"
# The student who writes markup and script everywhere else.
WRITER = "writer"
# (where it is planted, the text a reader must see)
PLANTED = {
    "markdown": "<script>window.__pwned='markdown'</script>",
    "markdown-img": "<img src=x onerror=\"window.__pwned='markdown img'\">",
    "stdout": "<script>window.__pwned='stdout'</script>",
    "html-output": "<script>window.__pwned='html output'</script>",
    "answer": "<script>window.__pwned='answer'</script>",
}
_PLANTED_CODE = f"""\
from IPython.display import HTML, SVG, Javascript, Markdown, display

print({PLANTED["stdout"]!r})
display(HTML("<b>bold</b><img src=x onerror=\\"window.__pwned='html img'\\">"
             + {PLANTED["html-output"]!r}))
display(Javascript("window.__pwned = 'javascript output'"))
display(SVG('<svg xmlns="http://www.w3.org/2000/svg" onload="window.__pwned=1">'
            '<circle r="4"/></svg>'))
display(Markdown("<img src=x onerror=\\"window.__pwned='markdown output'\\">"))
"""


def _plant(notebook: Path) -> None:
    """Markup and script in every place a student writes, into a correct submission."""
    nb = nbformat.read(notebook, as_version=4)
    text = nbformat.v4.new_markdown_cell(
        f"A note {PLANTED['markdown']} {PLANTED['markdown-img']} "
        "[a link](javascript:window.__pwned='link') ![a remote image](http://example.com/x.png)"
        " and math with a link: $\\href{javascript:window.__pwned='tex'}{x}$")
    code = nbformat.v4.new_code_cell(_PLANTED_CODE)
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = f"My answer: {PLANTED['answer']}"
    nb.cells[2:2] = [text, code]
    nbformat.write(nb, notebook)


@pytest.fixture(scope="module")
def graded(tmp_path_factory, sandboxed):
    base = tmp_path_factory.mktemp("browser")
    submitted, out = base / "submitted", base / "out"
    manifest = generate_samples(str(ROOT / "solutions"), str(submitted), [ASSIGNMENT])
    writer = submitted / WRITER / ASSIGNMENT
    shutil.copytree(submitted / "correct" / ASSIGNMENT, writer)
    _plant(writer / f"{ASSIGNMENT}.ipynb")
    shutil.copytree(writer, submitted / HOSTILE / ASSIGNMENT)
    summary = grade(str(submitted), str(out), source=str(ROOT / "solutions"), timeout=10,
                    seed=20240101, sandbox=sandboxed, progress=False)
    statuses = {r["student"]: r["status"] for r in summary["results"]}
    expected = {m["student"]: m["status"] for m in manifest}
    assert {s: statuses[s] for s in expected} == expected  # the outcomes the pages show
    return out, {r["student"]: r for r in summary["results"]}


@pytest.fixture(scope="module")
def browser():
    with chromium.Browser() as b:
        yield b


def _feedback(out: Path, student: str) -> Path:
    return out / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html"


def _assert_offline(load) -> None:
    assert load.errors == []
    assert load.blocked == []
    assert load.failed == []
    assert all(chromium.is_local(url) for url in load.requests), load.requests


def test_report_loads_offline_with_its_figures_and_names_as_text(graded, browser):
    out, _ = graded
    load = browser.load((out / "report.html").as_uri())
    shown = browser.inspect()
    _assert_offline(load)
    assert shown["images"] == 2
    assert shown["broken_images"] == []
    assert HOSTILE in shown["text"]
    assert browser.evaluate("window.__pwned === undefined")


@pytest.mark.parametrize(("outcome", "student"), [
    ("ok", "correct"), ("mistake", "mistake-1"), ("timeout", "infinite-loop"),
    ("kernel-died", "kernel-dies"), ("unreadable", "corrupt-json"),
])
def test_feedback_page_of_each_outcome_loads_offline_with_math_and_figures(
        graded, browser, outcome, student):
    out, results = graded
    load = browser.load(_feedback(out, student).as_uri())
    shown = browser.inspect()
    _assert_offline(load)
    assert shown["broken_images"] == []
    assert shown["raw_math"] == []
    assert f"Grading summary for {student}" in shown["text"]
    if outcome == "unreadable":  # no notebook to show: the page says why it scored 0
        assert "unreadable: corrupt JSON" in shown["text"]
        return
    assert shown["math"] > 0
    # the notebook's figures drawn before the kernel stopped, or all of them
    assert shown["images"] >= (2 if outcome == "kernel-died" else 3)
    for problem in results[student]["problems"]:
        assert problem["code"] in shown["text"]


def test_feedback_shows_what_the_student_wrote_as_text_and_runs_none_of_it(graded, browser):
    out, results = graded
    assert results[HOSTILE]["status"] == "suspicious-file"
    assert results[WRITER]["status"] in ("ok", "review-suggested")
    load = browser.load(_feedback(out, WRITER).as_uri())
    shown = browser.inspect()
    _assert_offline(load)  # no request for the remote image or for src=x
    assert browser.evaluate("window.__pwned === undefined")
    for where, text in PLANTED.items():
        assert text in shown["text"], where
    handlers = browser.evaluate(
        "[...document.querySelectorAll('body *:not(script)')].flatMap(e => [...e.attributes]"
        ".filter(a => a.name.startsWith('on')).map(a => e.tagName + ' ' + a.name))")
    assert handlers == []
    assert not [link for link in shown["links"] if link.lower().startswith("javascript:")]
    # only MathJax's own scripts: nothing from the notebook became a script element
    assert all(s == "inline" or "/assets/mathjax/" in s for s in shown["scripts"])
    assert sum(s == "inline" for s in shown["scripts"]) == 2  # MathJax's configuration


def test_feedback_page_copied_alone_loads_mathjax_from_the_cdn(graded, browser, tmp_path):
    """A student sent only their page (nbgrader's release_feedback copies the HTML file) gets
    the math from the CDN; with the output folder's copy present nothing is fetched."""
    out, _ = graded
    alone = tmp_path / "page.html"
    shutil.copyfile(_feedback(out, "correct"), alone)
    load = browser.load(alone.as_uri())
    assert [url for url in load.blocked if "mathjax" in url.lower()] == load.blocked
    assert len(load.blocked) == 1


def test_results_record_the_feedback_page_of_an_unreadable_submission(graded):
    out, _ = graded
    results = json.loads((out / "results.json").read_text())["submissions"]
    [row] = [r for r in results if r["student"] == "corrupt-json"]
    assert row["feedback"] == f"feedback/corrupt-json/{ASSIGNMENT}/{ASSIGNMENT}.html"
