"""Feedback HTML for one graded notebook, rendered with nbgrader's own feedback template.

:func:`feedback_html` removes hidden tests and test-cell tracebacks from the notebook, adds a
summary cell (score, what went wrong and why) at the top and renders the page the way
``nbgrader generate_feedback`` does, but from the worker's scores instead of the gradebook.

Two things differ from nbgrader's page. Everything the student wrote is shown as text, never run
(:mod:`lossutils._html`: markdown with raw HTML escaped, HTML outputs cleaned, JavaScript outputs
dropped; the notebook's and cells' metadata reduced to what the template needs; outputs that
showed hidden test code or the grading seed replaced by a note), and MathJax is loaded from
``assets/mathjax/`` of the output folder (:data:`MATHJAX`) instead of a CDN, so that the math
renders offline; a page copied to a student without that folder still loads it from the CDN.
"""

from __future__ import annotations

import functools
import html
import json
import os
import re

from lossutils._html import clean_html, markdown_code, markdown_literal, markdown_to_html
from lossutils._mathjax import mathjax_head

from .._patches import html_exporter_class
from ..problems import Problem
from ..task import CellRecord, Task
from .score import without_diagnosis

__all__ = ["MATHJAX", "exporter", "feedback_html", "plain_feedback", "render_feedback"]

#: The output folder's copy of MathJax (see :func:`lossutils._mathjax.copy_mathjax`).
MATHJAX = os.path.join("assets", "mathjax")
# nbgrader's template asks a CDN for MathJax 2; the page loads the local copy instead
_CDN_MATHJAX = re.compile(r'<script src="https?://[^"]*mathjax[^"]*">\s*</script>', re.I)


def _feedback_exporter_class():
    """nbconvert's HTML exporter (or the patched one) with markdown shown as text where it
    holds HTML: what a student writes in a markdown cell is never run in the page."""
    from jinja2 import pass_context

    markdown: dict = {}

    class _FeedbackExporter(html_exporter_class()):
        @pass_context
        def markdown2html(self, context, source):
            """Markdown shown as text where it holds HTML, cached: most markdown cells are the
            master's, in every submission (the rendering depends on the source, the cell's
            attachments and the notebook's folder, and on settings fixed for this exporter)."""
            cell = context.get("cell", {})
            key = (source, json.dumps(cell.get("attachments", {}), sort_keys=True),
                   context.get("resources", {}).get("metadata", {}).get("path", ""))
            if key not in markdown:
                if len(markdown) >= 4096:
                    markdown.clear()
                markdown[key] = markdown_to_html(
                    source, attachments=cell.get("attachments", {}), path=key[2],
                    anchor_link_text=self.anchor_link_text)
            return markdown[key]

    return _FeedbackExporter


@functools.cache
def exporter():
    """One HTML exporter per process: building it loads templates and takes most of a second."""
    import nbgrader
    from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
    from traitlets.config import Config

    HTMLExporter = _feedback_exporter_class()
    base = os.path.join(os.path.dirname(nbgrader.__file__), "server_extensions", "formgrader")
    config = Config()
    config.HTMLExporter.template_name = "feedback"
    # validate the notebook once after the preprocessors, not after each of the thirteen
    config.HTMLExporter.optimistic_validation = True
    config.HTMLExporter.extra_template_basedirs = [os.path.join(base, "templates")]
    config.HTMLExporter.extra_template_paths = [
        os.path.join(base, "static", "node_modules", "bootstrap", "dist", "css")
    ]
    # no JavaScript outputs or widgets, and HTML outputs through clean_html below
    config.HTMLExporter.sanitize_html = True
    made = HTMLExporter(config=config)
    made.register_filter("clean_html", clean_html)
    made.register_preprocessor(CSSHTMLHeaderPreprocessor(), enabled=True)
    return made


def _summary_cell(task: Task, records: list[CellRecord], problems: list[Problem]):
    from nbformat.v4 import new_markdown_cell

    lines = [
        f"**Grading summary for {markdown_code(task.student)}, "
        f"{markdown_code(task.assignment)}**",
        "",
    ]
    for record in records:
        if record.kind != "test":
            continue
        line = f"- `{record.grade_id}`: {record.score:g} / {record.max_score:g}"
        if record.message:
            line += " — " + markdown_literal(record.message.splitlines()[0][:300])
        lines.append(line)
    manual = [r for r in records if r.kind == "manual"]
    if manual:
        lines.append(f"- {len(manual)} written answer(s) are graded by hand later.")
    for problem in problems:
        lines.append(f"- **{problem.code}**: {markdown_literal(problem.detail)}")
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
    # the page is feedback/<student>/<assignment>/<notebook>.html in the output folder
    local = mathjax_head("../../../" + MATHJAX.replace(os.sep, "/") + "/tex-svg-full.js",
                         cdn_fallback=True)
    body, found = _CDN_MATHJAX.subn(lambda _: local, body, count=1)
    if not found:
        body = body.replace("</head>", local + "\n</head>", 1)
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
