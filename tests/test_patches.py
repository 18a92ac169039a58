"""The grader's patches of third-party internals (lossutils/grading/_patches.py).

For every patch: the internals it relies on are there in the installed version (these tests
fail when upstream moves them: fix the patch or drop it), the version guard and the upper pin
in pyproject.toml agree, the off switch brings back the package's own behaviour, and a patch
whose internals are gone or whose version is outside its range does nothing. What each patch
saves, and that it changes nothing else, is tested where it is used (test_grading.py,
test_sandbox.py).
"""

import asyncio
import json
import subprocess
import sys
import tomllib
from pathlib import Path
from queue import Empty

import pytest

from lossutils.grading import _patches
from lossutils.grading._patches import ENV, PATCHES, enabled

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _fresh_checks(monkeypatch):
    """Each test decides the switch itself, and sees the checks of the internals afresh."""
    monkeypatch.delenv(ENV, raising=False)
    _patches._needs.cache_clear()
    yield
    _patches._needs.cache_clear()


@pytest.mark.parametrize("name", sorted(PATCHES))
def test_the_internals_each_patch_relies_on_are_there(name):
    patch = PATCHES[name]
    first, end = patch.versions
    installed = _patches._installed(patch.package)
    assert installed is not None, f"{patch.package} is not installed"
    assert first <= installed < end, (
        f"{patch.package} {installed} is outside the versions {name} was written for; check the "
        "patch against it, then move its range and the pin in pyproject.toml together")
    assert patch.needs(), f"{patch.package} {installed} no longer has what {name} relies on"
    assert enabled(name)


@pytest.mark.parametrize("name", sorted(PATCHES))
def test_the_pin_in_pyproject_ends_where_the_patch_does(name):
    patch = PATCHES[name]
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["course"]
    [requirement] = [r for r in extras
                     if r.split("<")[0].split("=")[0].split(">")[0].strip() == patch.package]
    first, end = patch.versions
    if "==" in requirement:  # an exact pin lies inside the range
        assert first <= _patches._version(requirement.split("==")[1]) < end
    else:
        assert _patches._version(requirement.split("<")[1]) == end, requirement


@pytest.mark.parametrize("name", sorted(PATCHES))
def test_a_patch_whose_internals_moved_or_whose_version_is_other_does_nothing(monkeypatch, name):
    def moved():
        raise AttributeError("module has no attribute '_private'")

    monkeypatch.setitem(PATCHES, name, _patches.Patch(
        name, PATCHES[name].package, PATCHES[name].versions, PATCHES[name].what, moved))
    assert not enabled(name)
    _patches._needs.cache_clear()
    monkeypatch.setitem(PATCHES, name, _patches.Patch(
        name, PATCHES[name].package, ((99,), (100,)), PATCHES[name].what, lambda: True))
    assert not enabled(name)


@pytest.mark.parametrize("switch", ["all", "nbconvert-feedback-html", " x-y , all"])
def test_the_switch_turns_patches_off(monkeypatch, switch):
    monkeypatch.setenv(ENV, switch.replace("x-y", "matplotlib-warm-figure"))
    assert not enabled("nbconvert-feedback-html")
    assert enabled("nbgrader-alembic-head") is ("all" not in switch)


def test_a_misspelt_switch_is_refused_with_the_names(monkeypatch):
    monkeypatch.setenv(ENV, "nbconvert-feedback,all")
    with pytest.raises(ValueError, match=r"names no patch called nbconvert-feedback; use 'all' "
                                         r"or some of: jsonschema-rfc3987-syntax, "):
        enabled("nbconvert-feedback-html")


def test_grade_refuses_a_misspelt_switch_before_grading(monkeypatch, tmp_path):
    from lossutils.grading.discover import UsageError
    from lossutils.grading.run import grade

    monkeypatch.setenv(ENV, "alembic")
    with pytest.raises(UsageError, match="names no patch called alembic"):
        grade(str(tmp_path), str(tmp_path / "out"), sandbox=False, progress=False)
    assert not (tmp_path / "out").exists()  # nothing was started


def test_the_switch_reaches_a_sandbox_built_from_scratch(monkeypatch):
    assert _patches.switch_env() == {}
    monkeypatch.setenv(ENV, "all")
    assert _patches.switch_env() == {ENV: "all"}


# --------------------------------------------------------------------------- one per patch


_RFC3987 = ("import sys, lossutils.grading, jsonschema, nbformat\n"
            "nbformat.validate(nbformat.v4.new_notebook())\n"
            "print(sys.modules.get('rfc3987_syntax') is not None)")


@pytest.mark.parametrize(("switch", "imported"), [("", False), ("jsonschema-rfc3987-syntax", True)])
def test_jsonschema_imports_rfc3987_syntax_unless_blocked(switch, imported):
    """Without the patch jsonschema still imports the costly parser (else drop the patch)."""
    pytest.importorskip("rfc3987_syntax")
    env = {k: v for k, v in __import__("os").environ.items() if k != ENV}
    env[ENV] = switch
    done = subprocess.run([sys.executable, "-c", _RFC3987], capture_output=True, text=True,
                          env=env, check=True, cwd=ROOT)
    assert done.stdout.strip() == str(imported)


def test_the_alembic_lookup_is_left_to_nbgrader_when_switched_off(monkeypatch):
    import nbgrader.api

    def stock():
        return "stock"

    monkeypatch.setattr(nbgrader.api, "get_alembic_version", stock)
    monkeypatch.setattr(_patches, "_STOCK_ALEMBIC_VERSION", [])
    monkeypatch.setenv(ENV, "nbgrader-alembic-head")
    _patches.install_alembic_head()
    assert nbgrader.api.get_alembic_version is stock
    monkeypatch.delenv(ENV)
    _patches.install_alembic_head()
    assert nbgrader.api.get_alembic_version is _patches.alembic_head
    assert _patches._STOCK_ALEMBIC_VERSION == [stock]


def test_the_metadata_validator_is_nbgraders_own_when_switched_off(monkeypatch):
    from nbgrader.nbgraderformat import MetadataValidator

    assert type(_patches.metadata_validator()) is not MetadataValidator
    assert isinstance(_patches.metadata_validator(), MetadataValidator)
    monkeypatch.setenv(ENV, "nbgrader-metadata-schema-once")
    assert type(_patches.metadata_validator()) is MetadataValidator


def test_the_feedback_exporter_is_nbconverts_own_when_switched_off(monkeypatch):
    from nbconvert.exporters import HTMLExporter

    assert _patches.html_exporter_class() is not HTMLExporter
    assert issubclass(_patches.html_exporter_class(), HTMLExporter)
    monkeypatch.setenv(ENV, "nbconvert-feedback-html")
    assert _patches.html_exporter_class() is HTMLExporter


@pytest.mark.parametrize("switch", ["", "nbconvert-feedback-html"])
def test_the_feedback_page_shows_a_students_html_as_text_with_or_without_the_patch(
        monkeypatch, switch):
    """Showing a student's markdown as text is the page's own rule, not part of the patch."""
    import nbformat

    from lossutils.grading.worker import feedback

    monkeypatch.setenv(ENV, switch)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(
        "**bold** <script>alert('x')</script> <img src=x onerror=alert(1)>")])
    body, _ = feedback._feedback_exporter_class()().from_notebook_node(nb)
    assert "<strong>bold</strong>" in body
    assert "<script>alert('x')</script>" not in body
    assert "<img src=x onerror" not in body
    assert "&lt;script&gt;" in body


def test_the_kernel_client_is_jupyter_clients_own_when_switched_off(monkeypatch):
    import zmq
    from jupyter_client.asynchronous import AsyncKernelClient

    assert _patches.kernel_client_class() is not AsyncKernelClient
    monkeypatch.setenv(ENV, "jupyter-client-kernel-ready")
    assert _patches.kernel_client_class() is AsyncKernelClient
    context = zmq.Context()
    try:
        _patches.fast_reconnect(context)
        assert zmq.RECONNECT_IVL not in context.sockopts  # ZeroMQ's default for new sockets
        monkeypatch.delenv(ENV)
        _patches.fast_reconnect(context)
        assert context.getsockopt(zmq.RECONNECT_IVL) == 10
    finally:
        context.term()


class _Channel:
    """A channel that hands out its messages, then reports Empty; it records every wait."""

    def __init__(self, messages):
        self.messages, self.waits = list(messages), []

    async def get_msg(self, timeout=None):
        self.waits.append(timeout)
        if not self.messages:
            raise Empty
        return self.messages.pop(0)


class _Client:
    """What both waits use of a kernel client (not made by a KernelManager)."""

    parent = None

    def __init__(self):
        reply = {"parent_header": {"msg_id": "request"}, "msg_type": "kernel_info_reply",
                 "content": {"protocol_version": "5.3"}}
        self.shell_channel = _Channel([reply])
        self.iopub_channel = _Channel([{"msg_type": "iopub_welcome"}])
        self.handled = []

    def kernel_info(self):
        return "request"

    def _handle_kernel_info_reply(self, reply):
        self.handled.append(reply)

    async def is_alive(self):
        return True

    _async_is_alive = is_alive


def test_jupyter_clients_own_wait_still_drains_iopub_for_a_pause():
    """What the patch saves: after the reply, the stock wait asks IOPub for messages until
    0.2 s pass without one (with this client, at once). The patched wait does not."""
    from jupyter_client.asynchronous import AsyncKernelClient

    stock = _Client()
    asyncio.run(AsyncKernelClient.wait_for_ready(stock))
    assert stock.handled
    assert stock.iopub_channel.waits == [0.2, 0.2]  # the welcome, then the pause
    patched = _Client()
    asyncio.run(_patches.wait_until_ready(patched))
    assert patched.handled
    assert len(patched.iopub_channel.waits) == 1


_MATPLOTLIB = """\
import json
import matplotlib
matplotlib.use("Agg")
from lossutils.grading import _patches
from matplotlib.backends.backend_agg import RendererAgg
warm, installed = _patches.warm_matplotlib(), _patches.share_mathtext_parser()
shared = RendererAgg(10, 10, 72).mathtext_parser is RendererAgg(9, 9, 72).mathtext_parser
print(json.dumps([warm, installed, shared]))
"""


@pytest.mark.parametrize(("switch", "expected"), [
    ("", [True, True, True]),
    ("matplotlib-warm-figure", [False, True, True]),
    ("matplotlib-shared-mathtext", [True, False, False]),
])
def test_the_zygotes_matplotlib_patches_switch_off_apart(switch, expected):
    pytest.importorskip("matplotlib")
    env = {k: v for k, v in __import__("os").environ.items() if k != ENV}
    env[ENV] = switch
    done = subprocess.run([sys.executable, "-c", _MATPLOTLIB], capture_output=True, text=True,
                          env=env, check=True, cwd=ROOT)
    assert json.loads(done.stdout) == expected
