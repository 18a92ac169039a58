"""HTML from text a student wrote: shown as text, never run as markup or script.

The feedback pages render a student's notebook: markdown cells, outputs, the names in the
summary. nbconvert renders markdown with raw HTML passed through and ``javascript:`` links
allowed, and its ``clean_html`` escapes headings and tables along with scripts. Here:

- markdown is rendered with raw HTML escaped (``<script>`` shows as the text ``<script>``) and
  harmful link protocols replaced, then cleaned like an HTML output;
- an HTML output keeps formatting and tables, loses scripts, event handlers, styles and
  ``javascript:`` links, and its disallowed tags are shown as text;
- images may only be inline data (a student's remote image would be a request from the
  instructor's browser to a server of the student's choosing);
- names go into markdown as code spans, messages with their markdown punctuation escaped.
"""

from __future__ import annotations

import re

__all__ = ["clean_html", "markdown_code", "markdown_literal", "markdown_to_html"]

_TAGS = frozenset({
    "a", "abbr", "b", "blockquote", "br", "caption", "code", "col", "colgroup", "dd", "del",
    "details", "div", "dl", "dt", "em", "figcaption", "figure", "h1", "h2", "h3", "h4", "h5",
    "h6", "hr", "i", "img", "ins", "kbd", "li", "mark", "ol", "p", "pre", "q", "s", "samp",
    "small", "span", "strong", "sub", "summary", "sup", "table", "tbody", "td", "tfoot", "th",
    "thead", "tr", "u", "ul", "var",
})
_DATA_IMAGE = re.compile(r"data:image/(png|jpeg|gif|webp);base64,[A-Za-z0-9+/=\s]*\Z")


def _attribute(tag: str, name: str, value: str) -> bool:
    if name in ("class", "id", "title"):
        return True
    if tag == "a" and name == "href":
        return value.startswith(("http://", "https://", "mailto:", "#"))
    if tag == "img":
        if name == "src":
            return bool(_DATA_IMAGE.match(value))
        return name in ("alt", "width", "height")
    return tag in ("td", "th") and name in ("colspan", "rowspan", "align")


def clean_html(fragment) -> str:
    """Keep formatting, drop anything that runs or fetches; show other tags as text.

    >>> clean_html('<b>ok</b><img src=x onerror="alert(1)"><script>alert(2)</script>')
    '<b>ok</b><img>&lt;script&gt;alert(2)&lt;/script&gt;'
    """
    import bleach

    text = fragment.decode() if isinstance(fragment, bytes) else str(fragment)
    return bleach.clean(text, tags=_TAGS, attributes=_attribute,
                        protocols={"http", "https", "mailto", "data"}, strip_comments=True)


def markdown_to_html(source: str, *, attachments: dict | None = None, path: str = "",
                     anchor_link_text: str = "¶") -> str:
    """Markdown (with math left for MathJax) to HTML; raw HTML in it is shown as text.

    >>> print(markdown_to_html("*hi* <img src=x onerror=alert(1)> [x](javascript:alert(1))"))
    <p><em>hi</em> &lt;img src=x onerror=alert(1)&gt; <a href="#harmful-link">x</a></p>
    """
    from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath

    renderer = IPythonRenderer(escape=True, allow_harmful_protocols=False,
                               attachments=attachments or {}, path=path,
                               anchor_link_text=anchor_link_text)
    return clean_html(MarkdownWithMath(renderer=renderer).render(source)).strip()


def markdown_code(text: str) -> str:
    """``text`` as a markdown code span: literal, and left alone by MathJax.

    >>> markdown_code("a`b"), markdown_code("plain")
    ('`` a`b ``', '`plain`')
    """
    text = " ".join(str(text).split())
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if fence != "`" or text.startswith(("`", " ")) or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def markdown_literal(text: str) -> str:
    r"""``text`` with its markdown punctuation escaped, so that it renders as written.

    >>> markdown_literal("*not* [a link](x)")
    '\\*not\\* \\[a link\\]\\(x\\)'
    """
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~])", r"\\\1", str(text))
