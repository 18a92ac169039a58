"""MathJax for pages read offline: the course site and the grader's feedback pages.

nbconvert's templates load MathJax from a CDN, so a page opened without internet access shows raw
TeX. The pages here load a local copy instead: MathJax 3's single-file TeX-to-SVG build
(``tex-svg-full.js``; SVG output needs no web fonts, which browsers refuse to load from
``file://`` pages) and its ``safe`` extension (no ``javascript:`` links or styles from TeX
written by a student). The files come from PyPI's ``django-static-mathjax``, a verbatim copy of
MathJax's own release: the only package on PyPI that ships MathJax 3 whole.
"""

from __future__ import annotations

import filecmp
import html
import importlib.util
import json
import os
import shutil

__all__ = ["FILES", "VERSION", "copy_mathjax", "mathjax_head"]

VERSION = "3.2.2"
#: What a page needs, relative to MathJax's ``es5`` folder (``ui/safe.js`` is loaded by
#: ``tex-svg-full.js`` from its own folder).
FILES = ("tex-svg-full.js", "ui/safe.js")
_CDN = f"https://cdn.jsdelivr.net/npm/mathjax@{VERSION}/es5/tex-svg-full.js"

# The delimiters and options of Jupyter's own MathJax set-up, so that a page shows the notebook's
# math as JupyterLab does.
_CONFIG = {
    "tex": {
        "inlineMath": [["$", "$"], ["\\(", "\\)"]],
        "displayMath": [["$$", "$$"], ["\\[", "\\]"]],
        "processEscapes": True,
        "processEnvironments": True,
        "tags": "ams",
    },
    "loader": {"load": ["ui/safe"]},
    "svg": {"fontCache": "global"},
}


def _source() -> str:
    """The folder of the installed MathJax ``es5`` build."""
    spec = importlib.util.find_spec("mathjax")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        es5 = os.path.join(folder, "static", "mathjax", "es5")
        if all(os.path.isfile(os.path.join(es5, name)) for name in FILES):
            return es5
    raise FileNotFoundError(
        "MathJax is not installed: pages would show raw TeX offline. Install the course "
        "dependencies (`make setup`, or `pip install django-static-mathjax`)."
    )


def copy_mathjax(dest: str) -> str:
    """Copy MathJax's files into ``dest`` (files already there and equal are kept).

    Returns
    -------
    str
        The path of the script to load, ``dest/tex-svg-full.js``.
    """
    source = _source()
    for name in FILES:
        target = os.path.join(dest, name)
        if os.path.isfile(target) and filecmp.cmp(os.path.join(source, name), target):
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        tmp = target + ".tmp"
        shutil.copyfile(os.path.join(source, name), tmp)
        os.replace(tmp, target)
    return os.path.join(dest, FILES[0])


def mathjax_head(url: str, *, cdn_fallback: bool = False) -> str:
    """The ``<script>`` tags that configure and load MathJax from ``url`` (page-relative).

    With ``cdn_fallback`` a page whose local copy is missing (a feedback page copied on its own
    to a student) loads MathJax from a CDN instead; with the copy present, nothing is fetched.

    >>> print(mathjax_head("../_static/mathjax/tex-svg-full.js").splitlines()[-1])
    <script defer src="../_static/mathjax/tex-svg-full.js"></script>
    """
    config = json.dumps(_CONFIG).replace("</", "<\\/")
    fallback = ""
    if cdn_fallback:
        fallback = html.escape(
            "var s=document.createElement('script');"
            f"s.src={json.dumps(_CDN)};document.head.appendChild(s)"
        )
        fallback = f' onerror="{fallback}"'
    return (
        f"<script>window.MathJax = {config};</script>\n"
        f'<script defer src="{html.escape(url)}"{fallback}></script>'
    )
