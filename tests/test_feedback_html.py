"""Pieces of the feedback page without a browser: what the HTML keeps of a student's text,
and the output limits that must not break a figure (tests/test_browser.py loads the pages)."""

import base64

import nbformat
import pytest

from lossutils._html import clean_html, markdown_code, markdown_to_html
from lossutils.grading.worker.execute import MAX_IMAGE_CHARS, clip_outputs


def test_clean_html_keeps_formatting_and_tables_and_shows_other_tags_as_text():
    table = "<table><thead><tr><th>a</th></tr></thead><tbody><tr><td>1</td></tr></tbody></table>"
    assert clean_html(f"<h2>Results</h2>{table}") == f"<h2>Results</h2>{table}"
    cleaned = clean_html('<p style="color:red" onclick="x()">hi</p><iframe src="x"></iframe>'
                         '<a href="javascript:x()">a</a><a href="https://example.org">b</a>')
    assert cleaned == ('<p>hi</p>&lt;iframe src="x"&gt;&lt;/iframe&gt;<a>a</a>'
                       '<a href="https://example.org">b</a>')


def test_markdown_images_only_inline_data():
    png = "iVBORw0KGgo="
    page = markdown_to_html(f"![remote](http://example.com/x.png) ![local](x.png) "
                            f"![inline](data:image/png;base64,{png})")
    assert page == (f'<p><img alt="remote"> <img alt="local"> '
                    f'<img src="data:image/png;base64,{png}" alt="inline"></p>')


def test_markdown_keeps_math_and_structure_for_mathjax():
    page = markdown_to_html("## Loss\n\nThe mean of $(y - \\hat y)^2 < 1$:\n\n- one\n- two")
    assert "$(y - \\hat y)^2 &lt; 1$" in page
    assert "<h2" in page
    assert "<li>two</li>" in page


@pytest.mark.parametrize("name", ["ada", "a`b", "``x", "$\\frac{1}{2}$ *b* [c](d)"])
def test_a_name_becomes_one_code_span_of_its_own_text(name):
    page = markdown_to_html(markdown_code(name))
    inner = page.removeprefix("<p><code>").removesuffix("</code></p>")
    assert page.count("<code>") == 1
    assert inner.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">") == name


def test_clip_outputs_keeps_figures_whole_and_cuts_text():
    figure = base64.b64encode(b"\x89PNG" + bytes(30_000)).decode()
    huge = "A" * (MAX_IMAGE_CHARS + 4)
    cell = nbformat.v4.new_code_cell("plot()")
    cell.outputs = [
        nbformat.v4.new_output("display_data", data={"image/png": figure,
                                                     "text/plain": "<Figure>"}),
        nbformat.v4.new_output("display_data", data={"image/png": huge}),
        nbformat.v4.new_output("stream", name="stdout", text="x" * 50_000),
    ]
    nb = nbformat.v4.new_notebook(cells=[cell])
    clip_outputs(nb, 10_000)
    kept, dropped, text = cell.outputs
    assert kept.data["image/png"] == figure  # longer than the text limit, kept whole
    assert "image/png" not in dropped.data
    assert "not shown" in dropped.data["text/plain"]
    assert text.text.startswith("x" * 10_000)
    assert len(text.text) < 10_100
