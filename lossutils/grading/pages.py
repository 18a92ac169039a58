"""Markdown a student wrote, as nbgrader's formgrader shows it: as text, never as markup.

The formgrader shows the autograded notebooks (the instructor's, in the instructor's browser)
with nbgrader's own template, which renders markdown cells with nbconvert's filter: raw HTML
passed through, ``javascript:`` links allowed, and MathJax 2 without its safe extension. The
output folder's ``nbgrader_config.py`` replaces that filter by :func:`markdown2html`: the
feedback page's rendering (:func:`lossutils._html.markdown_to_html`: raw HTML shown as text,
harmful links pointing nowhere), with the TeX commands by which MathJax makes links or loads
code (:func:`inert_tex`) made plain words.
"""

from __future__ import annotations

import functools
import json
import re

from jinja2 import pass_context

from lossutils._html import markdown_to_html

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
    return markdown_to_html(inert_tex(source), attachments=json.loads(attachments), path=path)


@pass_context
def markdown2html(context, source: str) -> str:
    r"""nbconvert's ``markdown2html`` filter with raw HTML shown as text and harmful links and
    MathJax commands removed.

    Cached by source, attachments and folder: most markdown cells are the master's, the same
    in every submission.

    Examples
    --------
    >>> from jinja2 import Environment
    >>> env = Environment()
    >>> env.filters["markdown2html"] = markdown2html
    >>> env.from_string("{{ s | markdown2html }}").render(
    ...     s="*hi* <img src=x onerror=alert(1)> [x](javascript:alert(1))")
    '<p><em>hi</em> &lt;img src=x onerror=alert(1)&gt; <a href="#harmful-link">x</a></p>'
    """
    cell = context.get("cell") or {}
    attachments = json.dumps(cell.get("attachments") or {}, sort_keys=True)
    path = (context.get("resources") or {}).get("metadata", {}).get("path", "")
    return _render(str(source), attachments, str(path))
