"""Feedback HTML for one graded notebook, rendered with nbgrader's own feedback template.

:func:`feedback_html` removes hidden tests and test-cell tracebacks from the notebook, adds a
summary cell (score, what went wrong and why) at the top and renders the page the way
``nbgrader generate_feedback`` does, but from the worker's scores instead of the gradebook.
The page runs nothing the student wrote: nbconvert's own sanitising is on (HTML outputs
cleaned, JavaScript and widgets not rendered), markdown is rendered with its raw HTML escaped
(:func:`lossutils.grading.pages.markdown2html`), the notebook's and cells' metadata are
reduced to what the template needs, and outputs that showed hidden test code or the grading
seed are replaced by a note.
"""

from __future__ import annotations

import functools
import html
import json
import os

from .._patches import html_exporter_class
from ..pages import markdown2html
from ..problems import Problem
from ..task import CellRecord, Task
from .score import without_diagnosis

__all__ = ["exporter", "feedback_html", "plain_feedback", "render_feedback"]


@functools.cache
def exporter():
    """One HTML exporter per process: building it loads templates and takes most of a second."""
    import nbgrader
    from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
    from traitlets.config import Config

    HTMLExporter = html_exporter_class()
    base = os.path.join(os.path.dirname(nbgrader.__file__), "server_extensions", "formgrader")
    config = Config()
    config.HTMLExporter.template_name = "feedback"
    # HTML outputs through nbconvert's cleaner, no JavaScript or widget output; markdown (which
    # nbgrader's template shows without the cleaner) with its raw HTML escaped
    config.HTMLExporter.sanitize_html = True
    config.HTMLExporter.filters = {"markdown2html": markdown2html}
    # validate the notebook once after the preprocessors, not after each of the thirteen
    config.HTMLExporter.optimistic_validation = True
    config.HTMLExporter.extra_template_basedirs = [os.path.join(base, "templates")]
    config.HTMLExporter.extra_template_paths = [
        os.path.join(base, "static", "node_modules", "bootstrap", "dist", "css")
    ]
    made = HTMLExporter(config=config)
    made.register_preprocessor(CSSHTMLHeaderPreprocessor(), enabled=True)
    return made


def _summary_cell(task: Task, records: list[CellRecord], problems: list[Problem]):
    from nbformat.v4 import new_markdown_cell

    lines = [
        f"**Grading summary for {html.escape(task.student)}, {html.escape(task.assignment)}**",
        "",
    ]
    for record in records:
        if record.kind != "test":
            continue
        line = f"- `{record.grade_id}`: {record.score:g} / {record.max_score:g}"
        if record.message:
            line += " — " + html.escape(record.message.splitlines()[0][:300])
        lines.append(line)
    manual = [r for r in records if r.kind == "manual"]
    if manual:
        lines.append(f"- {len(manual)} written answer(s) are graded by hand later.")
    for problem in problems:
        lines.append(f"- **{problem.code}**: {html.escape(problem.detail)}")
    cell = new_markdown_cell("\n".join(lines))
    cell.id = "lossutils-grading-summary"
    return cell


_ATTACHMENTS = ("image/png", "image/jpeg", "image/gif")


def _inert(nb, leaks) -> None:
    """Reduce a student's notebook to what the page shows: no metadata of theirs beyond
    nbgrader's (restored from the master for graded cells), only image attachments, and a
    note in place of each output in ``leaks``."""
    from nbformat.v4 import new_output

    nb.metadata = {k: v for k, v in nb.metadata.items() if k in ("kernelspec", "language_info")}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader")
        cell.metadata = {"nbgrader": meta} if meta else {}
        if "attachments" in cell:
            cell.attachments = {name: {k: v for k, v in item.items() if k in _ATTACHMENTS}
                                for name, item in cell.attachments.items()
                                if isinstance(item, dict)}
    for cell_index, output_index in leaks:
        nb.cells[cell_index].outputs[output_index] = new_output("stream", name="stdout", text=(
            "[output removed by the grader: it showed hidden test code or the grading seed]\n"))


def feedback_html(nb, task: Task, records: list[CellRecord], problems: list[Problem],
                  leaks=()) -> str:
    """Render nbgrader's feedback template without hidden tests or test-cell tracebacks, and
    without the outputs ``leaks`` lists (``(cell index, output index)``)."""
    import nbformat
    from nbgrader.preprocessors import ClearHiddenTests

    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    _inert(nb, leaks)
    nb, _ = ClearHiddenTests().preprocess(nb, {})
    by_id = {r.grade_id: r for r in records}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        record = by_id.get(meta.get("grade_id"))
        if record is None or not meta.get("grade"):
            continue
        meta["score"] = record.score
        meta["points"] = record.max_score
        meta["comment"] = record.comment
        if record.kind == "test":
            # The traceback quotes the hidden test lines; the checker's message says it all
            # (without its tag, which is for the report).
            for out in cell.get("outputs", []):
                if out.output_type == "error":
                    out.traceback = [without_diagnosis(f"{out.ename}: {out.evalue}")]
    return render_feedback(nb, task, records, problems)


def render_feedback(nb, task: Task, records: list[CellRecord], problems: list[Problem]) -> str:
    """Render the feedback page of one graded notebook.

    Parameters
    ----------
    nb : nbformat.NotebookNode
        The executed notebook with hidden tests and test tracebacks already removed and
        ``score``/``points`` set in every grade cell's nbgrader metadata.
    task : Task
        The worker's task (its ``student``, ``assignment`` and ``notebook``).
    records : list of CellRecord
        The worker's per-grade-cell records.
    problems : list of Problem
        The worker's problems, shown at the top of the page.

    Returns
    -------
    str
        A standalone HTML page.
    """
    nb.cells.insert(0, _summary_cell(task, records, problems))
    score = sum(r.score or 0.0 for r in records)
    resources = {
        "nbgrader": {
            "student": task.student,
            "assignment": task.assignment,
            "notebook": task.notebook,
            "score": score,
            "max_score": sum(r.max_score for r in records),
            "late_penalty": 0,
        }
    }
    body, _ = exporter().from_notebook_node(nb, resources=resources)
    return body


def plain_feedback(task: Task, records: list[CellRecord], problems: list[Problem]) -> str:
    """A page with only the scores and the problems, for a notebook whose page could not be
    rendered within its limits: made of the grader's own text and escaped names, so it
    cannot fail or take long."""
    rows = "".join(
        f"<tr><td>{html.escape(r.grade_id)}</td><td>"
        f"{'waits for a human' if r.score is None else f'{r.score:g}'} / {r.max_score:g}"
        "</td></tr>" for r in records)
    listed = "".join(f"<li><b>{html.escape(p.code)}</b>: {html.escape(p.detail)}</li>"
                     for p in problems)
    score = sum(r.score or 0.0 for r in records)
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>"
        f"{html.escape(task.notebook)}</title></head><body>"
        f"<h1>{html.escape(task.assignment)}: {html.escape(task.notebook)}</h1>"
        f"<p>Student <code>{html.escape(task.student)}</code>: {score:g} / "
        f"{sum(r.max_score for r in records):g}</p><table>{rows}</table><ul>{listed}</ul>"
        "</body></html>\n")
