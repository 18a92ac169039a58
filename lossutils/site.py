"""Build the course web site: every notebook as a page, with the README and the docs.

``make site`` (or ``python -m lossutils.site``) writes a static site into ``build/site/`` that
reads offline: nbconvert's HTML exporter with a template of ours, MathJax copied next to the
pages, no file fetched from anywhere else at build or view time. Each notebook page shows

- the lecture text and its math;
- the output of every code cell that runs without a student's solution, computed at build time
  by executing the student release (``course/``, never ``solutions/``): a cell that uses an
  exercise's function, or a name such a cell defined or changed, is shown without output and
  says which exercises it needs;
- the exercises and their check cells as the student gets them, and the written-answer cells
  as released ("YOUR ANSWER HERE");
- a link to download the notebook, how to run it locally (``make lab``), and an nbgitpuller
  link (a template, or a real link with ``--hub`` and ``--repo``) for a JupyterHub.

Relative links between the course README, the repository README and docs/ are rewritten to the
pages they point to (``.md`` and notebooks become ``.html``); any other file they link to is
copied. Nothing under ``solutions/`` is read or linked to.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import copy
import dataclasses
import glob
import html
import logging
import multiprocessing
import os
import posixpath
import re
import shutil
import symtable
import sys
import tempfile
import time
import urllib.parse

__all__ = ["CellPlan", "build_site", "main", "plan_cells"]

SOURCE = "solutions"
RELEASE = "course"
#: Markdown documents that become pages, besides the course README (the home page).
DOCUMENTS = ("README.md", "docs/*.md", "SECURITY.md", "LICENSE-COURSE.md")
HOME = "course/README.md"
MATHJAX = "_static/mathjax"

# Calls that change the object they are called on, in the libraries the notebooks use: a cell
# that needs an exercise and calls `history.append(...)` changes `history` for later cells.
_MUTATORS = frozenset({
    "append", "extend", "insert", "update", "add", "setdefault", "pop", "popitem", "remove",
    "discard", "clear", "sort", "reverse", "fill", "resize", "put", "itemset",
})

_DOC_LABELS = {"README.md": "about the project", "SECURITY.md": "security",
               "LICENSE-COURSE.md": "licence"}
_WIDGET = "application/vnd.jupyter.widget-view+json"


class SiteError(RuntimeError):
    """The site cannot be built as asked (a missing page, a link into solutions/)."""


# -- which cells need a student's solution ---------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CellPlan:
    """What the site does with one cell.

    ``role`` is ``"text"``, ``"answer"`` (a written answer, graded by hand), ``"exercise"`` (a
    cell the student completes), ``"check"`` (a test cell) or ``"code"``; ``runs`` says whether
    the site executes it; ``needs`` names the exercises whose solutions it depends on.
    """

    role: str
    runs: bool
    needs: tuple[str, ...] = ()


def _names(source: str) -> tuple[set[str], set[str], set[str], set[str]]:
    """Global names a cell reads, binds, changes in place, and imports.

    Reads include those made inside the functions it defines (calling them later reads them).
    """
    from IPython.core.inputtransformer2 import TransformerManager

    code = TransformerManager().transform_cell(source)
    table = symtable.symtable(code, "<cell>", "exec")
    reads, binds, imports = set(), set(), set()
    for symbol in table.get_symbols():
        if symbol.is_referenced():
            reads.add(symbol.get_name())
        if symbol.is_assigned() or symbol.is_imported():
            binds.add(symbol.get_name())
        if symbol.is_imported():
            imports.add(symbol.get_name())
    nested = list(table.get_children())
    while nested:
        scope = nested.pop()
        nested.extend(scope.get_children())
        for symbol in scope.get_symbols():
            if symbol.is_global() and symbol.is_referenced():
                reads.add(symbol.get_name())
            if symbol.is_declared_global() and symbol.is_assigned():
                binds.add(symbol.get_name())
    changes = set()
    for node in ast.walk(ast.parse(code)):
        target = None
        if isinstance(node, ast.Attribute | ast.Subscript) and isinstance(node.ctx,
                                                                          ast.Store | ast.Del):
            target = node.value
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in _MUTATORS):
            target = node.func.value
        while isinstance(target, ast.Attribute | ast.Subscript):
            target = target.value
        if isinstance(target, ast.Name):
            changes.add(target.id)
    return reads, binds, changes, imports


def plan_cells(nb) -> list[CellPlan]:
    """Decide, cell by cell, what the site shows of a released notebook.

    A code cell runs unless it reads a name that an exercise cell binds, or that an earlier
    cell needing an exercise bound or changed in place (``x.append(...)``, ``x[i] = ...``);
    imported modules are never counted as changed. Exercise and check cells never run.

    Examples
    --------
    >>> import nbformat.v4 as v4
    >>> nb = v4.new_notebook(cells=[
    ...     v4.new_code_cell("import numpy as np\\nhistory = []"),
    ...     v4.new_code_cell("def f(x):\\n    raise NotImplementedError",
    ...                      metadata={"nbgrader": {"solution": True, "grade": False}}),
    ...     v4.new_code_cell("check('f', f)", metadata={"nbgrader": {"grade": True}}),
    ...     v4.new_code_cell("history.append(f(np.ones(3)))"),
    ...     v4.new_code_cell("print(len(history))"),
    ...     v4.new_code_cell("print(np.pi)"),
    ... ])
    >>> [(p.role, p.runs, p.needs) for p in plan_cells(nb)]  # doctest: +NORMALIZE_WHITESPACE
    [('code', True, ()), ('exercise', False, ('f',)), ('check', False, ()),
     ('code', False, ('f',)), ('code', False, ('f',)), ('code', True, ())]
    """
    needs: dict[str, set[str]] = {}  # name -> exercises it depends on
    modules: set[str] = set()
    plans = []
    for i, cell in enumerate(nb.cells):
        grading = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code":
            role = "answer" if grading.get("solution") else "text"
            plans.append(CellPlan(role, False))
            continue
        try:
            reads, binds, changes, imports = _names(cell.source)
        except SyntaxError as exc:
            raise SiteError(f"code cell {i} is not valid Python: {exc}") from None
        modules |= imports
        if grading.get("solution"):
            for name in binds:
                needs[name] = {name}
            plans.append(CellPlan("exercise", False, tuple(sorted(binds))))
            continue
        if grading.get("grade"):
            plans.append(CellPlan("check", False))
            continue
        wanted = set().union(*(needs[name] for name in reads if name in needs))
        if wanted:
            for name in binds | (changes - modules):
                needs[name] = needs.get(name, set()) | wanted
        plans.append(CellPlan("code", not wanted, tuple(sorted(wanted))))
    return plans


# -- executing a release ---------------------------------------------------------------------


def _execute(path: str, timeout: int) -> tuple[object, list[CellPlan], list[str]]:
    """Run the cells of a release that need no solution; return the notebook with their
    outputs, the plan, and a line for every such cell that failed anyway (shown without
    output: the analysis missed a dependency, or the notebook is broken)."""
    import nbformat
    from nbclient import NotebookClient
    from traitlets.config import Config

    nb = nbformat.read(path, as_version=4)
    plans = plan_cells(nb)
    runnable = [i for i, plan in enumerate(plans) if plan.runs]
    part = nbformat.v4.new_notebook(metadata=copy.deepcopy(nb.metadata))
    part.cells = [copy.deepcopy(nb.cells[i]) for i in runnable]
    with tempfile.TemporaryDirectory(prefix="lossutils-site-") as work:
        # the notebook's folder, copied: whatever its cells write stays out of the repository
        folder = os.path.join(work, "nb")
        shutil.copytree(os.path.dirname(path), folder)
        # Unix sockets rather than TCP ports: nothing listens on the network while cells run
        config = Config()
        config.KernelManager.transport = "ipc"
        config.KernelManager.ip = os.path.join(work, "kernel")
        NotebookClient(part, config=config, kernel_name="python3", timeout=timeout,
                       allow_errors=True, resources={"metadata": {"path": folder}}).execute()
    problems = []
    for i, cell in zip(runnable, part.cells, strict=True):
        errors = [o for o in cell.outputs if o.output_type == "error"]
        if errors and "raises-exception" not in cell.metadata.get("tags", []):
            problems.append(f"{os.path.basename(path)}: cell {i} raised {errors[0].ename}: "
                            f"{errors[0].evalue}"[:300])
            plans[i] = CellPlan("code", False, ("?",))
            continue
        nb.cells[i].outputs = cell.outputs
        nb.cells[i].execution_count = cell.execution_count
    nb.metadata.pop("widgets", None)
    return nb, plans, problems


# -- links between pages ---------------------------------------------------------------------


def _site_path(source: str) -> str:
    """Where the page (or copy) of a repository file goes in the site."""
    if source == HOME:
        return "index.html"
    stem, ext = posixpath.splitext(source)
    return stem + ".html" if ext in (".md", ".ipynb") else source


def _github_slug(text: str) -> str:
    """The anchor GitHub gives a heading, so that ``file.md#heading`` links keep working.

    >>> _github_slug("Scale: measurement and projection")
    'scale-measurement-and-projection'
    """
    text = re.sub(r"<[^>]+>", "", html.unescape(text)).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


_HEADING = re.compile(r'<h([1-6]) id="([^"]*)">(.*?)</h\1>', re.S)
_LINK = re.compile(r'\b(href|src)="([^"]*)"')


class _Links:
    """Rewrites the relative links of rendered markdown and collects the files they need."""

    def __init__(self, root: str, pages: set[str]):
        self.root = root
        self.pages = pages  # repository paths that become pages
        self.copies: set[str] = set()  # other repository files linked to

    def rewrite(self, rendered: str, source: str) -> str:
        here = posixpath.dirname(source)
        page_dir = posixpath.dirname(_site_path(source))

        def fix(match):
            attr, url = match.group(1), html.unescape(match.group(2))
            parts = urllib.parse.urlsplit(url)
            if parts.scheme or parts.netloc or not parts.path or url.startswith("/"):
                return match.group(0)
            target = posixpath.normpath(posixpath.join(here, urllib.parse.unquote(parts.path)))
            if target.split("/")[0] in (SOURCE, "..", ".git"):
                raise SiteError(f"{source} links to {url}, outside what the site may publish")
            if target in self.pages:
                target = _site_path(target)
            elif os.path.isfile(os.path.join(self.root, target)):
                self.copies.add(target)
            else:
                raise SiteError(f"{source} links to {url}, which does not exist")
            new = posixpath.relpath(target, page_dir or ".")
            if parts.fragment:
                new += "#" + parts.fragment
            return f'{attr}="{html.escape(new)}"'

        def anchor(match):  # GitHub's anchor next to nbconvert's
            slug = _github_slug(match.group(3))
            extra = f'<a class="site-anchor" id="{slug}"></a>' if slug != match.group(2) else ""
            return extra + match.group(0)

        return _HEADING.sub(anchor, _LINK.sub(fix, rendered))


# -- rendering -------------------------------------------------------------------------------


def _exporter(links: _Links):
    from jinja2 import pass_context
    from nbconvert.exporters import HTMLExporter
    from traitlets.config import Config

    class _SiteExporter(HTMLExporter):
        @pass_context
        def markdown2html(self, context, source):
            rendered = super().markdown2html(context, source)
            return links.rewrite(rendered, context["resources"]["site"]["source"])

    config = Config()
    config.HTMLExporter.template_name = "site"
    config.HTMLExporter.extra_template_basedirs = [
        os.path.join(os.path.dirname(__file__), "templates")]
    config.TemplateExporter.exclude_input_prompt = True
    config.TemplateExporter.exclude_output_prompt = True
    exporter = _SiteExporter(config=config)
    # nbconvert warns for every figure without alt text and gives each a generic one
    exporter.log.setLevel(logging.ERROR)
    return exporter


def _title(text: str, fallback: str) -> str:
    match = re.search(r"^#\s+(.+?)\s*$", text, re.M)
    return match.group(1).strip() if match else fallback


def _note(plan: CellPlan) -> str | None:
    if plan.role == "exercise":
        return "Exercise: complete this cell in the notebook."
    if plan.role == "check":
        return "Check: run this cell in the notebook to test your function."
    if plan.role == "answer":
        return "Written answer, graded by hand: write it in the notebook."
    if plan.role == "code" and not plan.runs:
        if plan.needs == ("?",):
            return "Run this cell yourself: it failed when the site was built."
        names = ", ".join(f"<code>{html.escape(n)}</code>" for n in plan.needs)
        return f"Run this cell yourself: its output needs your solution of {names}."
    return None


def _mark(nb, plans: list[CellPlan]) -> None:
    """Tag each cell with its role and note for the template; replace widget outputs."""
    for cell, plan in zip(nb.cells, plans, strict=True):
        note = _note(plan)
        if note:
            cell.metadata["lossutils_site"] = {"role": plan.role, "note": note}
            cell.metadata.setdefault("tags", []).append(f"site-{plan.role}")
        if cell.cell_type != "code":
            continue
        if not plan.runs:
            cell.outputs = []
            continue
        for i, output in enumerate(cell.outputs):
            if _WIDGET in output.get("data", {}):
                import nbformat

                cell.outputs[i] = nbformat.v4.new_output(
                    "display_data", data={"text/markdown": (
                        "*An interactive control: run the notebook to use it.*")})


def _hub_link(notebook: str, hub: str | None, repo: str | None, branch: str) -> str:
    """nbgitpuller's link for a notebook: real with ``hub`` and ``repo``, else a template.

    >>> _hub_link("course/01/01.ipynb", "https://hub.example.edu", "https://git.example.edu/c.git",
    ...           "main")  # doctest: +ELLIPSIS
    'https://hub.example.edu/hub/user-redirect/git-pull?repo=https%3A%2F%2Fgit.example...%2F01.ipynb'
    """
    folder = posixpath.basename((repo or "REPOSITORY").rstrip("/")).removesuffix(".git")
    query = urllib.parse.urlencode({
        "repo": repo or "REPOSITORY-URL", "branch": branch,
        "urlpath": f"lab/tree/{folder}/{notebook}"})
    return f"{(hub or 'https://YOUR-HUB').rstrip('/')}/hub/user-redirect/git-pull?{query}"


def _render(exporter, nb, *, source: str, title: str, nav: list[dict], extra: dict) -> str:
    from lossutils._mathjax import mathjax_head

    page = _site_path(source)
    up = posixpath.relpath(".", posixpath.dirname(page) or ".")
    prefix = "" if up == "." else up + "/"
    site = {
        "source": source,
        "title": title,
        "home": prefix + "index.html",
        "mathjax": mathjax_head(prefix + MATHJAX + "/tex-svg-full.js"),
        "nav": [dict(item, href=posixpath.relpath(item["page"], posixpath.dirname(page) or "."),
                     current=item["page"] == page) for item in nav],
        **extra,
    }
    nb.metadata["title"] = title
    body, _ = exporter.from_notebook_node(nb, resources={"site": site})
    return body


def _notebook_ids(root: str) -> list[str]:
    base = os.path.join(root, RELEASE)
    return sorted(name for name in os.listdir(base)
                  if os.path.isfile(os.path.join(base, name, f"{name}.ipynb")))


def build_site(out: str = "build/site", root: str = ".", *, hub: str | None = None,
               repo: str | None = None, branch: str = "main", timeout: int = 120,
               jobs: int | None = None, stream=sys.stderr) -> dict:
    """Build the site into ``out`` (replaced) from the repository at ``root``.

    Parameters
    ----------
    out : str
        The site's folder; an earlier site there is replaced (any other folder is refused).
    root : str
        The repository root (``course/``, ``README.md``, ``docs/``).
    hub, repo : str, optional
        A JupyterHub's URL and the repository's clone URL: the notebook pages then carry a
        working nbgitpuller link instead of a template.
    branch : str
        The branch nbgitpuller pulls.
    timeout : int
        Seconds per cell when the releases are executed.
    jobs : int, optional
        Notebooks executed at once (default: one per core, at most 4).
    stream : file
        Where progress lines go.

    Returns
    -------
    dict
        ``pages`` (site paths), ``notebooks`` (id to the plan of its cells), ``problems`` (cells
        that should have run and failed) and ``seconds``.
    """
    import nbformat

    from lossutils._mathjax import copy_mathjax

    start = time.monotonic()
    if os.path.isdir(out) and os.listdir(out) and not os.path.isdir(os.path.join(out, MATHJAX)):
        raise SiteError(f"{out} exists and is not a site built here; pass another --out")
    ids = _notebook_ids(root)
    if not ids:
        raise SiteError(f"no notebooks in {os.path.join(root, RELEASE)}/")
    documents = [HOME]
    for pattern in DOCUMENTS:
        documents += sorted(os.path.relpath(p, root).replace(os.sep, "/")
                            for p in glob.glob(os.path.join(root, pattern)))
    notebooks = [f"{RELEASE}/{i}/{i}.ipynb" for i in ids]
    links = _Links(root, set(documents) | set(notebooks))
    exporter = _exporter(links)

    titles = {}
    for doc in documents:
        with open(os.path.join(root, doc), encoding="utf-8") as fh:
            titles[doc] = _title(fh.read(), posixpath.basename(doc))
    stream.write(f"site: executing {len(ids)} notebooks (cells that need no solution)\n")
    workers = jobs or min(4, os.cpu_count() or 1, len(notebooks))
    # processes of their own: nbclient's kernel clients cannot be shut down cleanly in threads,
    # and a fresh interpreter forks nothing of the caller's (a test's browser, say)
    with concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        executed = dict(zip(notebooks, pool.map(
            _execute, [os.path.join(root, nb) for nb in notebooks],
            [timeout] * len(notebooks)), strict=True))
    for nb_path, (nb, _, _) in executed.items():
        first = next((c.source for c in nb.cells if c.cell_type == "markdown"), "")
        titles[nb_path] = _title(first, posixpath.basename(nb_path))

    nav = [{"page": _site_path(HOME), "label": "Course", "title": titles[HOME], "kind": "home"}]
    nav += [{"page": _site_path(n), "label": i.replace("-", " ", 1), "title": titles[n],
             "kind": "notebook"} for i, n in zip(ids, notebooks, strict=True)]
    nav += [{"page": _site_path(d), "label": _DOC_LABELS.get(d, posixpath.basename(d)[:-3]),
             "title": titles[d], "kind": "doc"} for d in documents[1:]]

    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    copy_mathjax(os.path.join(out, MATHJAX))

    pages, plans, problems = [], {}, []
    for k, nb_path in enumerate(notebooks):
        nb, plan, failed = executed[nb_path]
        problems += failed
        plans[ids[k]] = plan
        _mark(nb, plan)
        name = posixpath.basename(nb_path)
        extra = {
            "notebook": {
                "download": name,
                "path": nb_path,
                "hub_link": _hub_link(nb_path, hub, repo, branch),
                "hub_is_template": not (hub and repo),
                "repo": repo,
            },
            "prev": posixpath.relpath(_site_path(notebooks[k - 1]), posixpath.dirname(
                _site_path(nb_path))) if k else None,
            "next": posixpath.relpath(_site_path(notebooks[k + 1]), posixpath.dirname(
                _site_path(nb_path))) if k + 1 < len(notebooks) else None,
        }
        _write(out, _site_path(nb_path), _render(exporter, nb, source=nb_path,
                                                   title=titles[nb_path], nav=nav, extra=extra))
        folder = os.path.dirname(os.path.join(root, nb_path))
        for entry in os.listdir(folder):  # the notebook to download, and any file it reads
            if not entry.startswith(".") and os.path.isfile(os.path.join(folder, entry)):
                dest = os.path.join(out, posixpath.dirname(nb_path), entry)
                shutil.copyfile(os.path.join(folder, entry), dest)
        pages.append(_site_path(nb_path))
    for doc in documents:
        with open(os.path.join(root, doc), encoding="utf-8") as fh:
            nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(fh.read())])
        _write(out, _site_path(doc), _render(exporter, nb, source=doc, title=titles[doc],
                                             nav=nav, extra={}))
        pages.append(_site_path(doc))
    for target in sorted(links.copies):
        dest = os.path.join(out, target)
        os.makedirs(os.path.dirname(dest) or out, exist_ok=True)
        shutil.copyfile(os.path.join(root, target), dest)
    seconds = round(time.monotonic() - start, 1)
    for problem in problems:
        stream.write(f"site: warning: {problem}\n")
    stream.write(f"site: {len(pages)} pages in {out}/ ({seconds} s); open "
                 f"{os.path.join(out, 'index.html')}\n")
    return {"pages": pages, "notebooks": plans, "problems": problems, "seconds": seconds}


def _write(out: str, rel: str, text: str) -> None:
    path = os.path.join(out, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lossutils.site",
        description="Build the course web site (static, readable offline) from course/, the "
        "README and docs/.")
    parser.add_argument("--out", default="build/site", help="output folder (default: build/site)")
    parser.add_argument("--root", default=".", help="repository root (default: .)")
    parser.add_argument("--hub", help="a JupyterHub URL, for working nbgitpuller links")
    parser.add_argument("--repo", help="the repository's clone URL, for nbgitpuller links")
    parser.add_argument("--branch", default="main", help="branch nbgitpuller pulls (main)")
    args = parser.parse_args(argv)
    try:
        build_site(args.out, args.root, hub=args.hub, repo=args.repo, branch=args.branch)
    except (SiteError, FileNotFoundError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
