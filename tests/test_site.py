"""The course site (``make site``): built once per session from the real course, then checked

- for leaks: no solution region, model answer or hidden test of a master may appear in it,
  however it is escaped, highlighted or re-wrapped;
- in headless Chromium: every page loads offline with no console error and no request leaving
  the machine, its math is typeset, its images load and its internal links resolve.
"""

import html
import json
import re
import sys
from pathlib import Path

import nbformat
import pytest

from lossutils.site import build_site, plan_cells
from tests.conftest import ROOT, load_chromium

NOTEBOOKS = sorted(p.parent.name for p in (ROOT / "course").glob("*/*.ipynb")
                   if p.stem == p.parent.name)
# the site's pages, listed from the repository (not from the builder)
PAGES = (["index.html", "README.html", "SECURITY.html", "LICENSE-COURSE.html"]
         + [f"docs/{p.stem}.html" for p in sorted((ROOT / "docs").glob("*.md"))]
         + [f"course/{n}/{n}.html" for n in NOTEBOOKS])

chromium = load_chromium()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site") / "site"
    summary = build_site(str(out), str(ROOT), stream=sys.stderr)
    return out, summary


# -- what the builder does ---------------------------------------------------------------------


@pytest.mark.notebooks
def test_site_has_a_page_per_notebook_and_document_and_the_notebooks_to_download(site):
    out, summary = site
    assert sorted(summary["pages"]) == sorted(PAGES)
    for page in PAGES:
        assert (out / page).is_file(), page
    for name in NOTEBOOKS:  # the download is the release itself, byte for byte
        release = ROOT / "course" / name / f"{name}.ipynb"
        assert (out / "course" / name / f"{name}.ipynb").read_bytes() == release.read_bytes()
    # every cell that the plan says runs without a solution did run without an error
    assert summary["problems"] == []


@pytest.mark.notebooks
def test_cells_shown_without_output_are_the_ones_that_fail_in_the_release(site, tmp_path):
    """Executing a release as it is, the cells that raise (NotImplementedError from an empty
    exercise, or a name an earlier failing cell never defined) must be exactly among those the
    site shows without output; and the site must show the outputs of all the others."""
    from nbclient import NotebookClient

    out, summary = site
    name = "01-likelihood"
    nb = nbformat.read(ROOT / "course" / name / f"{name}.ipynb", as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    plans = summary["notebooks"][name]
    failing = {i for i, c in enumerate(nb.cells) if c.cell_type == "code"
               and any(o.output_type == "error" for o in c.outputs)}
    assert failing, "the release's exercises should fail unsolved"
    shown = {i for i, p in enumerate(plans) if p.runs}
    assert not failing & shown
    assert all(plans[i].role in ("exercise", "check") or plans[i].needs for i in failing)
    page = (out / "course" / name / f"{name}.html").read_text(encoding="utf-8")
    figures = sum(1 for i in shown for o in nb.cells[i].outputs if "image/png" in o.get("data", {}))
    assert figures > 0
    assert len(re.findall(r"<img[^>]*src=\"data:image/png;base64,", page)) == figures


def test_a_cell_needs_an_exercise_through_names_and_changes_in_place():
    v4 = nbformat.v4
    solution = {"nbgrader": {"solution": True, "grade": False, "grade_id": "f"}}
    nb = v4.new_notebook(cells=[
        v4.new_code_cell("import numpy as np\nlog = []\nrng = np.random.default_rng(0)"),
        v4.new_code_cell("def f(x):\n    raise NotImplementedError", metadata=solution),
        v4.new_code_cell("def plot():\n    return f(1)"),       # reads f when called
        v4.new_code_cell("log.append(plot())"),                 # changes log in place
        v4.new_code_cell("print(log)"),
        v4.new_code_cell("np.sort(rng.normal(size=3))"),        # np is a module, not changed
        v4.new_code_cell("%matplotlib inline\ny = [f(0)][0]"),  # magics are understood
        v4.new_markdown_cell("YOUR ANSWER HERE", metadata=solution),
    ])
    got = [(p.role, p.runs, p.needs) for p in plan_cells(nb)]
    assert got == [
        ("code", True, ()), ("exercise", False, ("f",)), ("code", False, ("f",)),
        ("code", False, ("f",)), ("code", False, ("f",)), ("code", True, ()),
        ("code", False, ("f",)), ("answer", False, ()),
    ]


# -- nothing leaks -----------------------------------------------------------------------------


def _words(text: str) -> str:
    """A text as its words: the same for code escaped, highlighted or re-wrapped, and for
    markdown rendered to HTML."""
    return " " + " ".join(re.findall(r"\w+", text)) + " "


def _master_secrets() -> list[tuple[str, str, str, bool]]:
    """(kind, where, words, whole) of every solution region, model answer and hidden test;
    ``whole`` is False for one line of a solution region."""
    # what any release shows students anyway (a line of a solution may be a demo's line too)
    public = _words("\n".join(c.source for n in NOTEBOOKS for c in nbformat.read(
        ROOT / "course" / n / f"{n}.ipynb", as_version=4).cells))
    secrets = []
    for master in sorted((ROOT / "solutions").glob("*/*.ipynb")):
        nb = nbformat.read(master, as_version=4)
        for i, cell in enumerate(nb.cells):
            where = f"{master.parent.name} cell {i}"
            grading = cell.metadata.get("nbgrader", {})
            if cell.cell_type == "markdown" and grading.get("solution"):
                parts = [cell.source, *re.split(r"(?<=[.;:?!])\s+|\n", cell.source)]
                secrets += [("model answer", where, w, True) for w in map(_words, parts)
                            if len(w.split()) >= 6 and w not in public]
            for kind, body in re.findall(r"### BEGIN (SOLUTION|HIDDEN TESTS)\n(.*?)### END \1",
                                         cell.source, re.S):
                kind = "solution" if kind == "SOLUTION" else "hidden test"
                parts = [(body, True)]
                if kind == "solution":
                    parts += [(line, False) for line in body.splitlines()]
                secrets += [(kind, where, w, whole) for w, whole in
                            ((_words(part), whole) for part, whole in parts)
                            if len(w.split()) >= (4 if kind == "hidden test" else 5)
                            and w not in public]
    return secrets


def _haystacks(folder: Path) -> dict[str, str]:
    """Every file of a site as words: HTML without tags, notebooks by cell, the rest as text;
    MathJax's own files are not the course's."""
    texts = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if not path.is_file() or rel.startswith("_static/"):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if path.suffix == ".ipynb":
            nb = json.loads(text)
            text = "\n".join("".join(c["source"]) + json.dumps(c.get("outputs", []))
                             for c in nb["cells"])
        elif path.suffix == ".html":
            text = html.unescape(re.sub(r"<[^>]+>", " ", text))
        texts[rel] = _words(text)
    return texts


def _leaks(folder: Path) -> list[str]:
    found = []
    haystacks = _haystacks(folder)
    for kind, where, words, whole in _master_secrets():
        for rel, text in haystacks.items():
            # The docs state the form of a hidden test (with an example) and the contract of
            # each exercise (a line of it may read like a line of the solution): hidden tests
            # and single solution lines are looked for in what comes from the notebooks, whole
            # solutions and model answers everywhere.
            if (kind == "hidden test" or not whole) and not rel.startswith("course/"):
                continue
            if words in text:
                found.append(f"{kind} of {where} in {rel}: {words.strip()[:80]}")
    return found


def test_masters_have_secrets_to_look_for():
    kinds = {kind for kind, _, _, _ in _master_secrets()}
    assert kinds == {"solution", "model answer", "hidden test"}


@pytest.mark.notebooks
def test_site_leaks_no_solution_model_answer_or_hidden_test(site):
    out, _ = site
    assert _leaks(out) == []


def test_leak_search_finds_masters_rendered_as_html(tmp_path):
    """The search must see through nbconvert's HTML (escaping, highlighting, markdown)."""
    from nbconvert.exporters import HTMLExporter

    folder = tmp_path / "course" / "leaky"
    folder.mkdir(parents=True)
    master = ROOT / "solutions" / "01-likelihood" / "01-likelihood.ipynb"
    page, _ = HTMLExporter().from_notebook_node(nbformat.read(master, as_version=4))
    (folder / "leaky.html").write_text(page, encoding="utf-8")
    found = _leaks(tmp_path)
    kinds = {line.split(" of ")[0] for line in found}
    assert kinds == {"solution", "model answer", "hidden test"}


# -- in a browser ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    with chromium.Browser() as b:
        yield b


def _ids(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    return {html.unescape(i) for i in re.findall(r'\bid="([^"]*)"', text)}


@pytest.mark.notebooks
@pytest.mark.parametrize("page", [pytest.param(p, marks=pytest.mark.needs_chromium) for p in PAGES])
def test_page_loads_offline_with_math_images_and_links(site, browser, page):
    out, _ = site
    load = browser.load((out / page).as_uri())
    shown = browser.inspect()
    assert load.errors == []
    assert load.blocked == []
    assert all(chromium.is_local(url) for url in load.requests)
    assert shown["broken_images"] == []
    assert shown["raw_math"] == []
    if page.startswith("course/"):
        assert shown["math"] > 0
    here = (out / page).parent
    for link in shown["links"]:
        target, _, fragment = link.partition("#")
        if re.match(r"[a-z]+:", target):
            continue  # a link to the web: followed by a reader, never fetched by the page
        path = (here / target).resolve() if target else out / page
        assert path.is_file(), f"{page} links to {link}: no such file"
        if fragment and path.suffix == ".html":
            from urllib.parse import unquote

            assert {fragment, unquote(fragment)} & _ids(path), f"{page}: no anchor for {link}"


def test_build_refuses_a_folder_that_is_not_a_site(tmp_path):
    from lossutils.site import SiteError

    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SiteError, match="is not a site built here"):
        build_site(str(tmp_path), str(ROOT))
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_links_between_pages_are_rewritten_and_other_files_copied(tmp_path):
    from lossutils.site import SiteError, _Links

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "figure.png").write_bytes(b"png")
    (tmp_path / "notes.md").write_text("not a page")
    links = _Links(str(tmp_path), {"course/README.md", "docs/a.md", "course/01/01.ipynb"})
    page = ('<a href="a.md#two-words">a</a> <a href="../course/01/01.ipynb">nb</a> '
            '<img src="figure.png"> <a href="../notes.md">n</a> <a href="https://x.org/a.md">w</a>'
            ' <a href="#here">h</a> <a href="../course/README.md">home</a>')
    assert links.rewrite(page, "docs/b.md") == (
        '<a href="a.html#two-words">a</a> <a href="../course/01/01.html">nb</a> '
        '<img src="figure.png"> <a href="../notes.md">n</a> <a href="https://x.org/a.md">w</a>'
        ' <a href="#here">h</a> <a href="../index.html">home</a>')
    assert links.copies == {"docs/figure.png", "notes.md"}
    for bad in ("../solutions/01/01.ipynb", "missing.md"):
        with pytest.raises(SiteError, match="links to"):
            links.rewrite(f'<a href="{bad}">x</a>', "docs/b.md")
