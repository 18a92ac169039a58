"""Markdown a student wrote, as the grader's pages show it: as text, never as markup or script.

nbconvert renders markdown with raw HTML passed through and ``javascript:`` links allowed, and
nbgrader's feedback and formgrade templates show markdown cells without nbconvert's HTML
cleaner. :func:`markdown2html` replaces nbconvert's filter of that name: raw HTML is escaped
(``<script>`` shows as the text ``<script>``), links and images with a harmful protocol point
nowhere, and the TeX commands with which MathJax makes links or loads code lose their
backslash. The feedback page uses it, and the output folder's ``nbgrader_config.py`` gives it
to the formgrader (``c.HTMLExporter.filters``), which shows the autograded notebooks.
"""

from __future__ import annotations

import functools
import json
import re

from jinja2 import pass_context

__all__ = ["inert_tex", "markdown2html"]

# MathJax's links (\href, \url), HTML attributes (\class, \cssId, \style, \data), raw HTML
# (\unicode, \html) and extension loading (\require): none is needed for a derivation.
_TEX_ACTIONS = re.compile(r"\\(href|url|class|cssId|style|data|unicode|html|require)(?![A-Za-z])")


def inert_tex(text: str) -> str:
    r"""``text`` with MathJax's acting TeX commands made plain words.

    Examples
    --------
    >>> inert_tex(r"$\href{javascript:alert(1)}{x} + \frac{1}{2}$")
    '$href{javascript:alert(1)}{x} + \\frac{1}{2}$'
    """
    return _TEX_ACTIONS.sub(r"\1", text)


@functools.lru_cache(maxsize=4096)
def _render(source: str, attachments: str, path: str) -> str:
    from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath

    renderer = IPythonRenderer(escape=True, allow_harmful_protocols=False,
                               attachments=json.loads(attachments), path=path)
    return MarkdownWithMath(renderer=renderer).render(inert_tex(source))


@pass_context
def markdown2html(context, source: str) -> str:
    r"""nbconvert's ``markdown2html`` filter with raw HTML escaped and harmful links removed.

    Cached by source, attachments and folder: most markdown cells are the master's, the same
    in every submission.

    Examples
    --------
    >>> from jinja2 import Environment
    >>> env = Environment()
    >>> env.filters["markdown2html"] = markdown2html
    >>> env.from_string("{{ s | markdown2html }}").render(
    ...     s="*hi* <img src=x onerror=alert(1)> [x](javascript:alert(1))")
    '<p><em>hi</em> &lt;img src=x onerror=alert(1)&gt; <a href="#harmful-link">x</a></p>\n'
    """
    cell = context.get("cell") or {}
    attachments = json.dumps(cell.get("attachments") or {}, sort_keys=True)
    path = (context.get("resources") or {}).get("metadata", {}).get("path", "")
    return _render(str(source), attachments, str(path))
