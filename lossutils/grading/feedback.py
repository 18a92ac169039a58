"""Feedback HTML for one graded notebook, rendered with nbgrader's own feedback template.

The worker has already removed hidden tests and test-cell tracebacks from the notebook; this
module adds a summary cell (score, what went wrong and why) at the top and renders the page the
way ``nbgrader generate_feedback`` does, but from the worker's scores instead of the gradebook.

Two things differ from nbgrader's page. Everything the student wrote is shown as text, never run
(:mod:`lossutils._html`: markdown with raw HTML escaped, HTML outputs cleaned, JavaScript outputs
dropped), and MathJax is loaded from ``assets/mathjax/`` of the output folder (:data:`MATHJAX`)
instead of a CDN, so that the math renders offline; a page copied to a student without that
folder still loads it from the CDN.
"""

from __future__ import annotations

import functools
import json
import os
import re

from lossutils._html import clean_html, markdown_code, markdown_literal, markdown_to_html
from lossutils._mathjax import mathjax_head

__all__ = ["MATHJAX", "render_feedback"]

#: The output folder's copy of MathJax (see :func:`lossutils._mathjax.copy_mathjax`).
MATHJAX = os.path.join("assets", "mathjax")
# nbgrader's template asks a CDN for MathJax 2; the page loads the local copy instead
_CDN_MATHJAX = re.compile(r'<script src="https?://[^"]*mathjax[^"]*">\s*</script>', re.I)


_IMG_WITHOUT_ALT = re.compile(r"<img(?![^>]*\balt=)")


def _fast_html_exporter():
    """nbconvert's HTMLExporter without its BeautifulSoup pass over the finished page.

    That pass parses the whole page (half the rendering time of a notebook with figures) to
    add ``alt`` text to images and ``tabindex`` to JupyterLab-template elements; the feedback
    template is the classic one, so only the ``alt`` text applies, and a regular expression
    adds it. Code highlighting and markdown are cached by source, since most cells are the
    same in every submission. If nbconvert's internals differ from what this expects, the
    stock path runs.
    """
    from nbconvert.exporters import HTMLExporter, TemplateExporter
    from nbconvert.filters.highlight import Highlight2HTML
    from nbconvert.filters.widgetsdatatypefilter import WidgetsDataTypeFilter

    class _CachedHighlight(Highlight2HTML):
        """Pygments costs ~15 ms a cell; most cells are the same in every submission."""

        @functools.lru_cache(maxsize=4096)  # noqa: B019 (one exporter per process)
        def _cached(self, source, language):
            return super().__call__(source, language)

        def __call__(self, source, language=None, metadata=None):
            # the cell's metadata only matters through "magics_language" (nbgrader's own
            # metadata is in every graded cell and changes nothing)
            if metadata and "magics_language" in metadata:
                return super().__call__(source, language, metadata)
            return self._cached(source, language)

    from jinja2 import pass_context

    highlighters: dict = {}
    markdown: dict = {}

    class _Exporter(HTMLExporter):
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

        def from_notebook_node(self, nb, resources=None, **kw):
            try:
                langinfo = nb.metadata.get("language_info", {})
                lexer = langinfo.get("pygments_lexer", langinfo.get("name", None))
                if lexer not in highlighters:
                    highlighters[lexer] = _CachedHighlight(pygments_lexer=lexer, parent=self)
                self.register_filter("highlight_code", self.filters.get(
                    "highlight_code", highlighters[lexer]))
                resources = self._init_resources(resources)
                self.register_filter("filter_data_type", WidgetsDataTypeFilter(
                    notebook_metadata=self._nb_metadata, parent=self, resources=resources))
                body, resources = TemplateExporter.from_notebook_node(self, nb, resources, **kw)
            except (AttributeError, TypeError):  # another nbconvert: take its own route
                return super().from_notebook_node(nb, resources, **kw)
            alt = '<img alt="No description has been provided for this image"'
            return _IMG_WITHOUT_ALT.sub(alt, body), resources

    return _Exporter


@functools.cache
def _exporter():
    """One HTML exporter per process: building it loads templates and takes most of a second."""
    import nbgrader
    from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
    from traitlets.config import Config

    HTMLExporter = _fast_html_exporter()
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
    exporter = HTMLExporter(config=config)
    exporter.register_filter("clean_html", clean_html)
    exporter.register_preprocessor(CSSHTMLHeaderPreprocessor(), enabled=True)
    return exporter


def _summary_cell(task: dict, records: list[dict], problems: list[dict]):
    from nbformat.v4 import new_markdown_cell

    lines = [
        f"**Grading summary for {markdown_code(task['student'])}, "
        f"{markdown_code(task['assignment'])}**",
        "",
    ]
    for record in records:
        if record["kind"] != "test":
            continue
        line = f"- `{record['grade_id']}`: {record['score']:g} / {record['max_score']:g}"
        if record["message"]:
            line += " — " + markdown_literal(record["message"].splitlines()[0][:300])
        lines.append(line)
    manual = [r for r in records if r["kind"] == "manual"]
    if manual:
        lines.append(f"- {len(manual)} written answer(s) are graded by hand later.")
    for problem in problems:
        lines.append(f"- **{problem['code']}**: {markdown_literal(problem['detail'])}")
    cell = new_markdown_cell("\n".join(lines))
    cell.id = "lossutils-grading-summary"
    return cell


def render_feedback(nb, task: dict, records: list[dict], problems: list[dict]) -> str:
    """Render the feedback page of one graded notebook.

    Parameters
    ----------
    nb : nbformat.NotebookNode
        The executed notebook with hidden tests and test tracebacks already removed and
        ``score``/``points`` set in every grade cell's nbgrader metadata.
    task : dict
        The worker's task (``student``, ``assignment``, ``notebook``).
    records : list of dict
        The worker's per-grade-cell records.
    problems : list of dict
        The worker's problems (``code``, ``detail``), shown at the top of the page.

    Returns
    -------
    str
        A standalone HTML page.
    """
    nb.cells.insert(0, _summary_cell(task, records, problems))
    score = sum(r["score"] or 0.0 for r in records)
    resources = {
        "nbgrader": {
            "student": task["student"],
            "assignment": task["assignment"],
            "notebook": task["notebook"],
            "score": score,
            "max_score": sum(r["max_score"] for r in records),
            "late_penalty": 0,
        }
    }
    body, _ = _exporter().from_notebook_node(nb, resources=resources)
    # the page is feedback/<student>/<assignment>/<notebook>.html in the output folder
    local = mathjax_head("../../../" + MATHJAX.replace(os.sep, "/") + "/tex-svg-full.js",
                         cdn_fallback=True)
    body, found = _CDN_MATHJAX.subn(lambda _: local, body, count=1)
    if not found:
        body = body.replace("</head>", local + "\n</head>", 1)
    return body
