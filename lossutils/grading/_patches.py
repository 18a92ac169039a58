"""Every change the grader makes to the inside of a third-party package, in one place.

Part of the grader's speed comes from changing how some of its dependencies work inside:
private functions replaced, internal caches cleared, methods that rely on undocumented
behaviour. Each such change is a :class:`Patch` listed in :data:`PATCHES`, and each one

- is written for the private internals of one range of versions of one package
  (:attr:`Patch.versions`; ``pyproject.toml`` pins the package below the range's end), and
  checks that the internals it needs are there (:attr:`Patch.needs`). Outside the range, or
  when they are gone, it does nothing and the package's own code runs: grading still works,
  only slower;
- can be switched off: ``LOSSUTILS_NO_PATCHES=all`` or a comma-separated list of names, in
  the environment of the grader (its local workers inherit it; kernel zygotes get it passed
  into their sandbox; set it on Dask workers too);
- has tests in ``tests/test_patches.py`` that fail when the package changes the internals the
  patch relies on, and that show it changes nothing but the time taken.

To move a pin: install the new version, run ``tests/test_patches.py`` (and the grading
tests), fix or drop what fails, then extend :attr:`Patch.versions` and the pin together.

Not here, because they are not optional: the worker drives nbgrader's ``OverwriteCells``
with the master's cells instead of a gradebook (:mod:`lossutils.grading.worker.sanitize`),
and the gradebook writer uses nbgrader's ORM classes (:mod:`lossutils.grading.gradebook`);
nbgrader is pinned to one exact version for them, and the grading tests cover both.

This module imports nothing from its packages at import time (the grading package applies
one patch as it is imported, and the kernel zygote imports this module before any kernel).
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ENV",
    "PATCHES",
    "Patch",
    "alembic_head",
    "block_rfc3987_syntax",
    "enabled",
    "fast_reconnect",
    "head_revision",
    "html_exporter_class",
    "install_alembic_head",
    "kernel_client_class",
    "metadata_validator",
    "share_mathtext_parser",
    "switch_env",
    "switched_off",
    "wait_until_ready",
    "warm_matplotlib",
]

#: The environment variable that switches patches off: ``all`` or names, comma-separated.
ENV = "LOSSUTILS_NO_PATCHES"


@dataclass(frozen=True)
class Patch:
    """One change to a package's internals.

    Attributes
    ----------
    name : str
        The name that switches it off (:data:`ENV`).
    package : str
        The distribution whose internals it relies on.
    versions : tuple
        ``(first, end)``: the versions it was written and tested for, ``first <= v < end``,
        each a tuple of ints.
    what : str
        What it changes, and what that saves.
    needs : callable
        Whether the internals it relies on are there (imports the package, except where
        noted).
    """

    name: str
    package: str
    versions: tuple[tuple[int, ...], tuple[int, ...]]
    what: str
    needs: Callable[[], bool]


def _version(text: str) -> tuple[int, ...]:
    """The numeric release of a version string: ``"3.11.2rc1"`` -> ``(3, 11, 2)``.

    Examples
    --------
    >>> _version("3.11.2rc1"), _version("8.10.0")
    ((3, 11, 2), (8, 10, 0))
    """
    match = re.match(r"\d+(?:\.\d+)*", text)
    return tuple(int(part) for part in match.group().split(".")) if match else ()


@functools.cache
def _installed(package: str) -> tuple[int, ...] | None:
    try:
        return _version(importlib.metadata.version(package))
    except importlib.metadata.PackageNotFoundError:
        return None


def switched_off() -> set[str]:
    """The names :data:`ENV` switches off (``all`` for every patch).

    Raises
    ------
    ValueError
        If it names a patch that does not exist (a typo would otherwise leave the patch on
        while the user believes it off).
    """
    names = {n.strip() for n in os.environ.get(ENV, "").split(",") if n.strip()}
    unknown = names - {"all", *PATCHES}
    if unknown:
        raise ValueError(
            f"{ENV} names no patch called {', '.join(sorted(unknown))}; use 'all' or some "
            f"of: {', '.join(PATCHES)}"
        )
    return names


def enabled(name: str) -> bool:
    """Whether patch ``name`` applies here: not switched off (see :func:`switched_off`), a
    version it was written for, and the internals it needs present."""
    patch = PATCHES[name]
    off = switched_off()
    if "all" in off or name in off:
        return False
    version = _installed(patch.package)
    first, end = patch.versions
    return version is not None and first <= version < end and _needs(name)


@functools.cache
def _needs(name: str) -> bool:
    try:
        return bool(PATCHES[name].needs())
    except Exception:  # an import or attribute that moved: the patch does not apply
        return False


def switch_env() -> dict[str, str]:
    """The off switch as set here, for a process whose environment is built from scratch."""
    return {ENV: os.environ[ENV]} if os.environ.get(ENV) else {}


# --------------------------------------------------------------------------- jsonschema


def _jsonschema_imports_rfc3987_syntax() -> bool:
    # read, not imported: the patch must act before jsonschema is imported
    spec = importlib.util.find_spec("jsonschema")
    source = Path(spec.origin).with_name("_format.py").read_text(encoding="utf-8")
    return "from rfc3987_syntax import" in source


def block_rfc3987_syntax() -> None:
    """Keep jsonschema from importing ``rfc3987_syntax``.

    jsonschema (pulled in by nbformat) imports rfc3987_syntax when it is installed, which
    builds a parser at import time: seconds of CPU in every grading process, for a string
    format that no notebook schema uses. With the import blocked, jsonschema skips that one
    format check, as it does whenever the optional package is missing.
    """
    try:
        wanted = enabled("jsonschema-rfc3987-syntax")
    except ValueError:  # a misspelt switch: stock behaviour here, the grader reports it
        wanted = False
    if wanted and "rfc3987_syntax" not in sys.modules:
        sys.modules["rfc3987_syntax"] = None


# --------------------------------------------------------------------------- nbgrader


#: nbgrader's own schema lookup, kept when :func:`install_alembic_head` replaces it.
_STOCK_ALEMBIC_VERSION: list[Callable[[], str]] = []


def _nbgrader_has_alembic_lookup() -> bool:
    import nbgrader.api

    return callable(nbgrader.api.get_alembic_version) and _alembic_folder().is_dir()


def _alembic_folder() -> Path:
    import nbgrader

    return Path(nbgrader.__file__).parent / "alembic" / "versions"


def install_alembic_head() -> None:
    """Make a new nbgrader gradebook cheap to create.

    nbgrader's ``Gradebook`` records its schema version when it creates a database, by
    running the ``alembic heads`` command in a subprocess: a second Python start-up that
    imports alembic and SQLAlchemy, 1-5 s of every grading run. :func:`alembic_head` reads the
    same version from nbgrader's migration files in this process.
    """
    import nbgrader.api

    if nbgrader.api.get_alembic_version is alembic_head or not enabled("nbgrader-alembic-head"):
        return
    _STOCK_ALEMBIC_VERSION[:] = [nbgrader.api.get_alembic_version]
    nbgrader.api.get_alembic_version = alembic_head


@functools.cache
def alembic_head() -> str:
    """The revision nbgrader's ``alembic heads`` prints: its newest schema, read from its files.

    Falls back to running the command, as nbgrader does, when :func:`head_revision` cannot
    tell.
    """
    import nbgrader.api

    stock = (_STOCK_ALEMBIC_VERSION or [nbgrader.api.get_alembic_version])[0]
    return head_revision(str(_alembic_folder())) or stock()


def head_revision(folder: str) -> str | None:
    """The one revision of an alembic ``versions`` folder that no other revision follows.

    Each migration file names its ``revision`` and the ``down_revision`` it follows. None if
    there is not exactly one head, or a file lacks those lines.

    Examples
    --------
    >>> head_revision("/nonexistent") is None
    True
    """
    pattern = re.compile(
        r"""^(down_revision|revision)\s*=\s*(?:None|'([0-9a-f]+)'|"([0-9a-f]+)")\s*$""",
        re.MULTILINE,
    )
    revisions, parents = set(), set()
    try:
        for path in Path(folder).glob("*.py"):
            found = {m[1]: m[2] or m[3] for m in pattern.finditer(path.read_text("utf-8"))}
            if found.get("revision") is None or "down_revision" not in found:
                return None
            revisions.add(found["revision"])
            parents.add(found["down_revision"])
    except OSError:
        return None
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _nbgrader_validates_per_cell() -> bool:
    from nbgrader.nbgraderformat import MetadataValidator
    from nbgrader.nbgraderformat.common import BaseMetadataValidator

    return (issubclass(MetadataValidator, BaseMetadataValidator)
            and isinstance(MetadataValidator().schema, dict)
            and isinstance(MetadataValidator.schema_version, int))


def metadata_validator():
    """nbgrader's cell metadata validator (what ``CheckCellMetadata`` runs), with its JSON
    schema checked once instead of once per cell where the patch applies.

    Stock nbgrader calls ``jsonschema.validate(metadata, schema)`` for every cell, which
    first validates the schema itself against the JSON Schema meta-schema: 0.1-0.2 s per
    notebook. Here a validator class sits between nbgrader's version-3 validator and its base
    class, so every check and message of nbgrader's stays, and only that repeated work goes.
    """
    from nbgrader.nbgraderformat import MetadataValidator

    if not enabled("nbgrader-metadata-schema-once"):
        return MetadataValidator()
    return _schema_once_validator()


@functools.cache
def _schema_once_validator():
    import jsonschema
    from nbgrader.nbgraderformat import MetadataValidator
    from nbgrader.nbgraderformat.common import BaseMetadataValidator

    class _SchemaOnce(BaseMetadataValidator):
        def __init__(self):
            super().__init__()  # reads the schema
            cls = jsonschema.validators.validator_for(self.schema)
            cls.check_schema(self.schema)
            self._checked = cls(self.schema)

        def validate_cell(self, cell):
            meta = cell.metadata.get("nbgrader") if "nbgrader" in cell.metadata else None
            if meta is None or meta.get("schema_version", 0) != self.schema_version:
                return super().validate_cell(cell)  # nothing to check, or nbgrader's error
            error = jsonschema.exceptions.best_match(self._checked.iter_errors(meta))
            if error is not None:
                raise error

    class _Validator(MetadataValidator, _SchemaOnce):
        pass

    return _Validator()


# --------------------------------------------------------------------------- nbconvert


def _nbconvert_exporter_internals() -> bool:
    from nbconvert.exporters import HTMLExporter, TemplateExporter
    from nbconvert.filters.highlight import Highlight2HTML
    from nbconvert.filters.widgetsdatatypefilter import WidgetsDataTypeFilter

    return (callable(getattr(HTMLExporter, "_init_resources", None))
            and "from_notebook_node" in vars(TemplateExporter)
            and callable(Highlight2HTML) and callable(WidgetsDataTypeFilter))


def html_exporter_class():
    """nbconvert's ``HTMLExporter``, or where the patch applies, a subclass that skips its
    BeautifulSoup pass over the finished page and caches code highlighting.

    That pass parses the whole page (half the rendering time of a notebook with figures) to
    add ``alt`` text to images and ``tabindex`` to JupyterLab-template elements; the feedback
    template is the classic one, so only the ``alt`` text applies, and a regular expression
    adds it. Code highlighting is cached by source, since most cells are the same in every
    submission. If nbconvert's internals differ from what this expects at render time, the
    stock path runs.
    """
    from nbconvert.exporters import HTMLExporter

    if not enabled("nbconvert-feedback-html"):
        return HTMLExporter
    return _fast_html_exporter()


# The look-ahead stops at the next "<" too: with only ">" a page full of "<img" (a student's
# output) made every match scan to the end of the page, quadratic in the page's size.
_IMG_WITHOUT_ALT = re.compile(r"<img(?![^<>]*\balt=)")


@functools.cache
def _fast_html_exporter():
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

    highlighters: dict = {}

    class _Exporter(HTMLExporter):
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


# --------------------------------------------------------------------------- jupyter_client


def _jupyter_client_internals() -> bool:
    from jupyter_client.asynchronous import AsyncKernelClient

    return (callable(getattr(AsyncKernelClient, "_handle_kernel_info_reply", None))
            and callable(getattr(AsyncKernelClient, "wait_for_ready", None)))


def kernel_client_class():
    """The kernel client class for a new sandboxed kernel: jupyter_client's
    ``AsyncKernelClient``, or where the patch applies, a subclass that waits for a new kernel
    with :func:`wait_until_ready` and retries its first connections every 10 ms instead of
    ZeroMQ's 100 ms."""
    from jupyter_client.asynchronous import AsyncKernelClient

    if not enabled("jupyter-client-kernel-ready"):
        return AsyncKernelClient
    return _ready_client()


def fast_reconnect(context) -> None:
    """Make the sockets of a ZeroMQ ``context`` retry a connection every 10 ms (where the
    kernel-ready patch applies): a client connects before a new kernel has bound its sockets,
    and ZeroMQ's default retries every 100 ms."""
    import zmq

    if enabled("jupyter-client-kernel-ready"):
        context.setsockopt(zmq.RECONNECT_IVL, 10)


@functools.cache
def _ready_client():
    from jupyter_client.asynchronous import AsyncKernelClient

    class _ReadyClient(AsyncKernelClient):
        """nbclient's kernel client, waiting for a new kernel without fixed pauses."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            # The client makes a context of its own; the kernel manager's, set the same way,
            # serves only the manager's control socket.
            fast_reconnect(self.context)

        async def wait_for_ready(self, timeout=None):
            await wait_until_ready(self, timeout)

    return _ReadyClient


async def wait_until_ready(client, timeout: float | None = None) -> None:
    """Wait for a new kernel to answer, with no fixed pause: ``wait_for_ready`` for nbclient.

    Ready means the kernel answered a ``kernel_info_request`` on the shell channel and a first
    message arrived on IOPub, which proves the IOPub subscription is connected (ZeroMQ drops
    what is published before it is; ipykernel greets each new subscriber with
    ``iopub_welcome``). Without an IOPub message within 0.2 s the request is sent again.
    jupyter_client's own wait does the same and then drains IOPub until 0.2 s pass without a
    message: an idle pause paid by every submission, which on a machine whose cores are all
    grading is a core doing nothing.

    Messages left on IOPub are harmless: nbclient keeps only the messages whose parent is the
    request it is waiting for.
    """
    import time
    from queue import Empty

    deadline = time.monotonic() + (float("inf") if timeout is None else timeout)

    async def next_message(channel, seconds: float):
        until = min(deadline, time.monotonic() + seconds)
        try:
            return await channel.get_msg(timeout=max(0.0, until - time.monotonic()))
        except Empty:
            return None

    while True:
        request = client.kernel_info()
        reply = None
        while reply is None and (msg := await next_message(client.shell_channel, 1.0)):
            if (msg["parent_header"].get("msg_id") == request
                    and msg["msg_type"] == "kernel_info_reply"):
                reply = msg
        if reply is not None and await next_message(client.iopub_channel, 0.2) is not None:
            client._handle_kernel_info_reply(reply)
            return
        if not await client.is_alive():
            raise RuntimeError("Kernel died before replying to kernel_info")
        if time.monotonic() > deadline:
            raise RuntimeError(f"Kernel didn't respond in {timeout} seconds")


# --------------------------------------------------------------------------- matplotlib
# Both run in the kernel zygote (lossutils.grading.sandbox._zygote), before it forks any
# kernel: that is where a kernel's matplotlib state is made once for all of them.


def _matplotlib_font_caches() -> bool:
    from matplotlib import font_manager, mathtext

    return (callable(getattr(font_manager._get_font, "cache_clear", None))
            and callable(getattr(mathtext.MathTextParser._parse_cached, "cache_clear", None)))


def warm_matplotlib() -> bool:
    """Draw one throw-away figure, so every kernel forked afterwards starts with matplotlib's
    state built; return whether it was drawn.

    The first figure a process draws imports matplotlib's drawing modules, builds the mathtext
    grammar and looks up its fonts (about 0.3 s); forked from here, each kernel finds them
    done. Drawn with the Agg canvas directly: pyplot and the kernel's inline backend are not
    touched, and no state of any student's exists yet.

    The fonts themselves must not survive: each kernel closes every inherited descriptor, and a
    font object left from here would later read, or on its deletion close, whatever file the
    kernel has opened under the same number. So matplotlib's private font caches are emptied
    and the figure collected; the zygote checks that no file opened here is still open.
    """
    if not enabled("matplotlib-warm-figure"):
        return False
    import gc
    import io

    from matplotlib import font_manager, mathtext
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 2.5))
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    grid = [0.0, 0.5, 1.0]
    left.plot(grid, grid, label="line")
    left.scatter(grid, grid, label="points")
    left.bar(grid, grid, width=0.2)
    left.fill_between(grid, grid, alpha=0.2)
    left.axhline(0.5, ls="--")
    left.annotate("note", (0.5, 0.5), xytext=(0.2, 0.8), arrowprops={"arrowstyle": "->"})
    left.set(xlabel=r"$\hat{p} = \frac{k}{M}$", ylabel=r"$\log L(\mathbf{w})$", title="warm")
    left.legend()
    levels = right.contourf([[0.0, 1.0], [1.0, 2.0]])
    right.clabel(right.contour([[0.0, 1.0], [1.0, 2.0]]))
    fig.colorbar(levels, ax=right)
    right.set_xscale("log")
    fig.savefig(io.BytesIO(), format="png", bbox_inches="tight")
    del fig, left, right, levels
    font_manager._get_font.cache_clear()
    mathtext.MathTextParser._parse_cached.cache_clear()  # its results hold fonts too
    gc.collect()  # the figure's renderer and mathtext fonts are in reference cycles
    return True


def _agg_renderer_parser() -> bool:
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.mathtext import MathTextParser

    parser = getattr(RendererAgg(1, 1, 72), "mathtext_parser", None)
    return type(parser) is MathTextParser and hasattr(parser, "_output_type")


def share_mathtext_parser() -> bool:
    """Give every Agg renderer of a thread one mathtext parser, so a label is parsed once;
    return whether it was installed.

    matplotlib caches parsed ``$...$`` labels per parser, and each Agg renderer makes a parser
    of its own; a figure shown inline is drawn by two renderers (the cropped PNG is drawn at a
    second size), so every label of every figure was parsed twice, at 2-10 ms a label
    (pyparsing). The parser keeps nothing but its output type, and a parse is a function of
    the label, dpi, font and hinting, all in the cache key: sharing it changes no pixel (tested)
    and halves the parsing. Installed in the zygote, before any fork and after the warm-up
    figure, so no parser is shared yet: each kernel's first renderer makes the kernel's own.
    """
    if not enabled("matplotlib-shared-mathtext"):
        return False
    import threading

    from matplotlib.backends import backend_agg
    from matplotlib.mathtext import MathTextParser

    init = backend_agg.RendererAgg.__init__
    shared: dict = {}

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        parser = getattr(self, "mathtext_parser", None)
        if type(parser) is MathTextParser:
            # one per output type, and per thread, as matplotlib keeps its fonts per thread
            key = (getattr(parser, "_output_type", None), threading.get_ident())
            self.mathtext_parser = shared.setdefault(key, parser)

    backend_agg.RendererAgg.__init__ = __init__
    return True


PATCHES = {patch.name: patch for patch in (
    Patch("jsonschema-rfc3987-syntax", "jsonschema", ((4, 26), (4, 27)),
          "blocks jsonschema's optional rfc3987_syntax import (seconds of CPU per process)",
          _jsonschema_imports_rfc3987_syntax),
    Patch("nbgrader-alembic-head", "nbgrader", ((0, 9, 6), (0, 9, 7)),
          "reads the gradebook's schema version from nbgrader's migration files instead of "
          "running `alembic heads` (1-5 s per run)", _nbgrader_has_alembic_lookup),
    Patch("nbgrader-metadata-schema-once", "nbgrader", ((0, 9, 6), (0, 9, 7)),
          "checks nbgrader's cell metadata schema once, not once per cell (0.1-0.2 s per "
          "notebook)", _nbgrader_validates_per_cell),
    Patch("nbconvert-feedback-html", "nbconvert", ((7, 17), (7, 18)),
          "renders feedback pages without the BeautifulSoup pass, with cached highlighting "
          "and markdown (half of a page's rendering time)", _nbconvert_exporter_internals),
    Patch("jupyter-client-kernel-ready", "jupyter_client", ((8, 10), (8, 11)),
          "counts a new kernel as ready without the fixed 0.2 s IOPub drain, retrying its "
          "first connections every 10 ms", _jupyter_client_internals),
    Patch("matplotlib-warm-figure", "matplotlib", ((3, 11), (3, 12)),
          "the kernel zygote draws one figure before forking, then empties the private font "
          "caches (0.3 s per kernel)", _matplotlib_font_caches),
    Patch("matplotlib-shared-mathtext", "matplotlib", ((3, 11), (3, 12)),
          "one mathtext parser for all of a kernel's Agg renderers (each label parsed once, "
          "not twice)", _agg_renderer_parser),
)}
