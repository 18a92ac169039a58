"""The bubblewrap sandbox: isolation, limits, and a Jupyter kernel running inside it.

Each test that starts a sandbox checks one promise of SECURITY.md from inside, by running a
small program that tries to break it and reports what happened.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lossutils.grading import _patches, sandbox
from lossutils.grading.sandbox import (
    Limits,
    SandboxUnavailable,
    bwrap,
    exit_signal,
    processes,
    require_sandbox,
    run_sandboxed,
    sandbox_argv,
    sandbox_kernel_manager,
)
from lossutils.grading.sandbox import zygote as zygote_module
from tests.conftest import ROOT


def _run(tmp_path, code, **kw):
    return run_sandboxed([sys.executable, "-c", textwrap.dedent(code)], workdir=str(tmp_path),
                         **kw)


# --------------------------------------------------------------------------- plain parts


def test_limits_must_be_positive():
    with pytest.raises(ValueError, match=r"Limits.memory_bytes must be a positive number, "
                                         r"got -1\."):
        Limits(memory_bytes=-1)
    with pytest.raises(ValueError, match=r"Limits.max_processes must be a positive number, "
                                         r"got True\."):
        Limits(max_processes=True)


def test_unavailable_sandbox_names_the_flag(monkeypatch):
    monkeypatch.setattr(bwrap, "_probe", lambda: "bwrap is not installed")
    assert not sandbox.sandbox_available()
    with pytest.raises(SandboxUnavailable, match=r"not available: bwrap is not installed\. "
                                                 r"(.|\n)*pass --unsandboxed to grade"):
        require_sandbox()


def test_argv_binds_python_and_lossutils_but_not_the_repository(tmp_path):
    cmd = sandbox_argv([sys.executable, "-c", "pass"], workdir=str(tmp_path), seed=9)
    binds = [cmd[i + 1] for i, a in enumerate(cmd) if a in ("--ro-bind", "--bind")]
    assert bwrap.lossutils_path() in binds
    assert str(tmp_path.resolve()) in binds
    assert not any(b in (str(ROOT), "/", "/root", "/home") for b in binds)
    for flag in ("--unshare-net", "--unshare-pid", "--die-with-parent", "--clearenv"):
        assert flag in cmd
    assert cmd[cmd.index("--setenv", cmd.index("LOSSUTILS_GRADING_SEED") - 1) + 2] == "9"
    hidden = sandbox_argv([sys.executable], workdir=str(tmp_path), with_lossutils=False)
    assert bwrap.lossutils_path() not in [hidden[i + 1] for i, a in enumerate(hidden)
                                            if a == "--ro-bind"]


# --------------------------------------------------------------------------- isolation


@pytest.mark.grading
@pytest.mark.needs_bwrap
def test_no_network_no_repository_no_home_scrubbed_env(tmp_path):
    secret = ROOT / "solutions"
    done = _run(tmp_path, f"""
        import json, os, socket
        found = {{}}
        try:
            socket.create_connection(("1.1.1.1", 53), timeout=3)
            found["net"] = "connected"
        except OSError as exc:
            found["net"] = exc.errno
        for name, path in (("solutions", {str(secret)!r}), ("root", "/root/.bashrc"),
                           ("pyproject", {str(ROOT / "pyproject.toml")!r})):
            try:
                open(path).close()
                found[name] = "read"
            except OSError as exc:
                found[name] = exc.errno
        try:
            open({str(ROOT / "pwned.txt")!r}, "w")
            found["write"] = "written"
        except OSError as exc:
            found["write"] = exc.errno
        open("mine.txt", "w").write("ok")
        found["uid"] = os.getuid()
        found["env"] = sorted(os.environ)
        found["seed"] = os.environ.get("LOSSUTILS_GRADING_SEED")
        import lossutils
        found["lossutils"] = lossutils.__name__
        print(json.dumps(found))
    """, seed=31)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    import errno

    assert found["net"] == errno.ENETUNREACH
    assert found["solutions"] == found["root"] == found["pyproject"] == errno.ENOENT
    if os.geteuid() == 0:
        # The sandbox's own user cannot create the file; a non-root grader's sandbox user owns
        # the folders bwrap makes for its binds and may, in its throw-away root: either way
        # the repository stays untouched.
        assert found["write"] in (errno.ENOENT, errno.EROFS, errno.EACCES)
    assert not (ROOT / "pwned.txt").exists()
    assert (tmp_path / "mine.txt").read_text() == "ok"
    if os.geteuid() == 0:
        assert found["uid"] != 0
    assert found["seed"] == "31"
    assert "HOME" in found["env"]
    assert not {k for k in os.environ if k.startswith(("SSH_", "AWS_", "GITHUB_"))} \
        & set(found["env"])
    assert found["lossutils"] == "lossutils"


@pytest.mark.grading
@pytest.mark.needs_bwrap
def test_lossutils_can_be_hidden(tmp_path):
    done = _run(tmp_path, """
        try:
            import lossutils
            print(getattr(lossutils, "softmax", "empty"))
        except ImportError as exc:
            print(type(exc).__name__)
    """, with_lossutils=False)
    assert done.stdout.decode().strip() in ("ModuleNotFoundError", "empty")


# --------------------------------------------------------------------------- limits


@pytest.mark.grading
@pytest.mark.needs_bwrap
def test_output_is_capped_by_the_reader(tmp_path):
    done = _run(tmp_path, "import sys\nsys.stdout.write('x' * 5_000_000)",
                limits=Limits(max_output_bytes=1000))
    assert done.stdout == b"x" * 1000
    assert done.truncated


@pytest.mark.grading
@pytest.mark.needs_bwrap
def test_wall_clock_limit_kills_the_tree(tmp_path):
    done = _run(tmp_path, "import time\ntime.sleep(600)", limits=Limits(wall_seconds=1.5))
    assert done.timed_out
    assert exit_signal(done.returncode) == signal.SIGKILL
    assert done.seconds < 600  # killed, not waited for


@pytest.mark.grading
@pytest.mark.needs_bwrap
def test_cpu_limit(tmp_path):
    # (a wall limit no loaded machine reaches before 1 s of CPU time)
    done = _run(tmp_path, "while True: pass", limits=Limits(cpu_seconds=1, wall_seconds=600))
    assert not done.timed_out
    assert exit_signal(done.returncode) == signal.SIGXCPU


@pytest.mark.grading
@pytest.mark.needs_bwrap
def test_memory_limit(tmp_path):
    done = _run(tmp_path, """
        try:
            hog = bytearray(2 * 2**30)
        except MemoryError:
            print("MemoryError")
    """, limits=Limits(memory_bytes=512 * 2**20))
    assert done.stdout.strip() == b"MemoryError"


@pytest.mark.grading
@pytest.mark.needs_bwrap
def test_fork_bomb_is_stopped(tmp_path):
    done = _run(tmp_path, """
        import os, time
        n = 0
        try:
            while True:
                if os.fork() == 0:
                    time.sleep(600)
                    os._exit(0)
                n += 1
        except OSError as exc:
            print(n, type(exc).__name__)
    """, limits=Limits(max_processes=10, wall_seconds=600))
    count, name = done.stdout.split()
    assert name == b"BlockingIOError"
    if os.geteuid() == 0:
        # exact with a user id of its own; a non-root grader's limit also counts the grader's
        # own processes (see sandbox_argv)
        assert int(count) < 10
    # The sleeping children died with the sandbox: the wall clock was not needed.
    assert not done.timed_out


@pytest.mark.grading
@pytest.mark.needs_bwrap
def test_file_size_limit(tmp_path):
    done = _run(tmp_path, """
        try:
            open("big.bin", "wb").write(b"x" * 3_000_000)
        except OSError as exc:
            print(exc.errno)
    """, limits=Limits(file_size_bytes=1_000_000))
    import errno

    assert done.stdout.strip() == str(errno.EFBIG).encode()


# --------------------------------------------------------------------------- a kernel




@pytest.fixture(scope="module")
def zygote():
    z = sandbox.KernelZygote(Limits(memory_bytes=2**30, max_processes=32),
                             preload=["numpy", "lossutils.checks"])
    yield z
    z.close()


@pytest.mark.grading
@pytest.mark.needs_bwrap
@pytest.mark.parametrize("mode", ["started",
                                  pytest.param("forked", marks=pytest.mark.needs_root)])
def test_notebook_kernel_runs_in_the_sandbox(tmp_path, mode, request):
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    zygote = request.getfixturevalue("zygote") if mode == "forked" else None
    workdir = Path(zygote.new_slot(0)) if zygote else tmp_path
    cells = [
        "import os, socket, time\nprint(os.environ['LOSSUTILS_GRADING_SEED'])",
        "try:\n    socket.create_connection(('1.1.1.1', 53), timeout=3)\n"
        "except OSError as exc:\n    print('network', exc.errno)",
        f"try:\n    open({str(ROOT / 'pyproject.toml')!r})\n"
        "except OSError as exc:\n    print('read', exc.errno)",
        "for _ in range(3):\n    if os.fork() == 0:\n        while True:\n            pass\n"
        "while True:\n    pass",
        # Killed children stay zombies until the kernel reaps them: count the living.
        "mine = [p for p in os.listdir('/proc') if p.isdigit()\n"
        "        and os.stat(f'/proc/{p}').st_uid == os.getuid()\n"
        "        and open(f'/proc/{p}/stat').read().rsplit(')', 1)[1].split()[0] != 'Z']\n"
        "print('interrupted and alive', len(mine))",
        "n = 0\ntry:\n    while True:\n        if os.fork() == 0:\n            time.sleep(60)\n"
        "            os._exit(0)\n        n += 1\nexcept OSError as exc:\n"
        "    print('fork', type(exc).__name__)",
        "try:\n    hog = bytearray(4 * 2**30)\nexcept MemoryError:\n    print('memory')",
        "from lossutils.checks import check\nprint(callable(check))",
    ]
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    km_class = sandbox_kernel_manager(seed=77, limits=Limits(memory_bytes=2**30,
                                                             max_processes=32), zygote=zygote)
    # The endless cell is interrupted after 3 s; every other cell has time to spare, however
    # loaded the machine.
    client = NotebookClient(nb, timeout_func=lambda cell: 3 if cell.source == cells[3] else 300,
                            interrupt_on_timeout=True, allow_errors=True,
                            kernel_name="python3", kernel_manager_class=km_class,
                            resources={"metadata": {"path": str(workdir)}})
    client.execute(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import errno

    def text(i):
        return "".join(o.get("text", "") for o in nb.cells[i].outputs).strip()

    assert text(0) == "77"
    assert text(1) == f"network {errno.ENETUNREACH}"
    assert text(2) == f"read {errno.ENOENT}"
    assert [o.get("ename") for o in nb.cells[3].outputs] == ["KeyboardInterrupt"]
    if os.geteuid() == 0:
        # The spinning children died with the interrupt; only the kernel is left. (They are
        # found by the sandbox's own user id, which only a root grader gives it.)
        assert text(4) == "interrupted and alive 1"
    assert text(5) == "fork BlockingIOError"
    assert text(6) == "memory"
    assert text(7) == "True"


_PLANT = """\
import ctypes, os, sys, time
import numpy
libc = ctypes.CDLL(None, use_errno=True)
open('/tmp/planted', 'w').write('secret')
shm = libc.shmget(4242, 4096, 0o1666)  # IPC_CREAT | 0666
numpy.planted = 'secret'
os.environ['PLANTED'] = 'secret'
started, running = os.pipe()
if os.fork() == 0:  # a daemon that outlives the kernel, if nothing kills it
    os.setsid()
    if os.fork() == 0:
        os.write(running, b"x")
        time.sleep(600)
    os._exit(0)
os.read(started, 1)  # the daemon runs
print(os.getuid(), shm >= 0)
"""

_LOOK = """\
import ctypes, os
import numpy
libc = ctypes.CDLL(None, use_errno=True)
caps = [l.split()[1] for l in open('/proc/self/status') if l.startswith('CapEff')][0]
others = [p for p in os.listdir('/proc') if p.isdigit() and os.stat(f'/proc/{p}').st_uid
          not in (0, os.getuid())]
try:
    slots = os.listdir(os.path.dirname(os.getcwd()))
except OSError as exc:
    slots = exc.errno
print(os.getuid(), caps, ','.join(sorted(os.listdir('/tmp'))), libc.shmget(4242, 0, 0) >= 0,
      hasattr(numpy, 'planted'), 'PLANTED' in os.environ, len(others), slots)
"""


@pytest.mark.grading
@pytest.mark.needs_bwrap
@pytest.mark.needs_root
def test_forked_kernels_share_nothing(zygote):
    """What one forked kernel leaves behind (files, shared memory, a daemon, module state)
    is gone before the zygote forks the next one."""
    import errno

    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    def run(code):
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(code)]
        client = NotebookClient(nb, timeout=20, allow_errors=True, kernel_name="python3",
                                kernel_manager_class=sandbox_kernel_manager(zygote=zygote),
                                resources={"metadata": {"path": zygote.new_slot(0)}})
        client.execute()
        return "".join(o.get("text", "") for o in nb.cells[0].outputs).split()

    planter_uid, created = run(_PLANT)
    assert created == "True"
    assert processes.user_processes(int(planter_uid)) == []  # the daemon died with its kernel
    uid, caps, tmp, shm, module, env, others, slots = run(_LOOK)
    assert uid != planter_uid
    assert int(uid) >= 1_000_000_000
    assert caps == "0000000000000000"
    # IPython's own folder of this kernel (and a checkout under /tmp, bound again); nothing
    # planted
    kept = {Path(p).relative_to("/tmp").parts[0] for p in zygote.keep}
    assert tmp.split(",") == sorted({"ipython", *kept})
    assert (shm, module, env) == ("False", "False", "False")
    assert others == "0"
    assert slots == str(errno.EACCES)  # other kernels' folders cannot even be listed


_DRAW = """\
import gc, os
import matplotlib.pyplot as plt
held = [open(os.devnull) for _ in range(40)]  # take the descriptor numbers the zygote used
fig, ax = plt.subplots()
ax.plot([0, 1], [1, 0], label=r"$\\log L(\\hat{p})$")
ax.set(xlabel=r"$p = \\frac{k}{M}$", title="drawn")
ax.legend()
plt.show()
unreachable = gc.collect()
"""


@pytest.mark.grading
@pytest.mark.needs_bwrap
@pytest.mark.needs_root
def test_kernels_forked_after_the_zygote_drew_a_figure_draw_their_own():
    """The zygote draws a figure before forking (matplotlib's first-figure set-up, once): no
    font file it opened may be left for a kernel to read or close under a reused descriptor
    number."""
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    zygote = sandbox.KernelZygote(Limits(memory_bytes=2**30, max_processes=32),
                                  preload=["matplotlib.pyplot"])
    try:
        assert zygote.warm
        for _ in range(2):
            nb = nbformat.v4.new_notebook()
            nb.cells = [nbformat.v4.new_code_cell(_DRAW), nbformat.v4.new_code_cell(_DRAW)]
            client = NotebookClient(nb, timeout=30, allow_errors=True, kernel_name="python3",
                                    kernel_manager_class=sandbox_kernel_manager(zygote=zygote),
                                    resources={"metadata": {"path": zygote.new_slot(0)}})
            client.execute()
            for cell in nb.cells:
                assert [o["output_type"] for o in cell.outputs] == ["display_data"]
                assert "image/png" in cell.outputs[0]["data"]
        # ... and its Agg renderers share one mathtext parser (_patches.share_mathtext_parser)
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(
            "from matplotlib.backends.backend_agg import RendererAgg\n"
            "print(RendererAgg(10, 10, 72).mathtext_parser is RendererAgg(20, 30, 100)"
            ".mathtext_parser)")]
        client = NotebookClient(nb, timeout=30, allow_errors=True, kernel_name="python3",
                                kernel_manager_class=sandbox_kernel_manager(zygote=zygote),
                                resources={"metadata": {"path": zygote.new_slot(0)}})
        client.execute()
        assert nb.cells[0].outputs[0]["text"].strip() == "True"
    finally:
        zygote.close()


_MATHTEXT = """\
import hashlib, io, sys
import matplotlib
matplotlib.use("Agg")
from matplotlib import mathtext
from matplotlib.figure import Figure
if sys.argv[1] == "shared":
    from lossutils.grading._patches import share_mathtext_parser
    assert share_mathtext_parser()
digests = []
for _ in range(2):
    fig = Figure(figsize=(6, 2.5))
    left, right = fig.subplots(1, 2)
    left.plot([0, 1], [1, 0], label=r"$\\log L(\\hat{p})$")
    left.set(xlabel=r"$p = \\frac{k}{M}$", ylabel="$L(p)$", title=r"$\\sum_{m} \\log p_m$")
    left.legend(fontsize=8)
    right.set(xlabel="input $x$", ylabel=r"$\\mathbf{w}^\\top x$")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", bbox_inches="tight")  # as IPython's inline PNG: two renderers
    digests.append(hashlib.sha256(png.getvalue()).hexdigest())
print(*digests, mathtext.MathTextParser._parse_cached.cache_info().misses)
"""


def test_a_shared_mathtext_parser_parses_each_label_once_and_draws_the_same_pixels():
    """The zygote's patch: every label is parsed once per kernel instead of once per renderer
    (twice per figure shown inline), and the PNG bytes are those matplotlib draws without it."""
    pytest.importorskip("matplotlib")

    def run(mode):
        done = subprocess.run([sys.executable, "-c", _MATHTEXT, mode], capture_output=True,
                              text=True, check=True, cwd=ROOT)
        first, second, misses = done.stdout.split()
        return first, second, int(misses)

    own_first, own_second, own_misses = run("own")
    shared_first, shared_second, shared_misses = run("shared")
    assert (shared_first, shared_second) == (own_first, own_second)
    labels = 6  # the distinct $...$ labels of _MATHTEXT
    assert own_misses >= 2 * 2 * labels  # two figures, each drawn by two renderers
    assert shared_misses == labels  # once each, for both figures


@pytest.mark.parametrize("leaves_a_file_open", [False, True])
def test_a_zygote_whose_warm_up_leaves_a_file_open_starts_again_cold(leaves_a_file_open):
    code = (
        "import sys\n"
        "import lossutils.grading.sandbox._zygote as zygote\n"
        "from lossutils.grading import _patches\n"
        "if sys.argv[1] == 'True':\n"
        "    kept = []\n"
        "    _patches.warm_matplotlib = lambda: kept.append(open(sys.executable, 'rb')) or True\n"
        "sys.argv = ['zygote', 'matplotlib']\n"
        "zygote.main()\n"
    )
    answer = subprocess.run([sys.executable, "-c", code, str(leaves_a_file_open)],
                            input='{"op": "ping"}\n', capture_output=True, text=True,
                            timeout=120, check=True)
    reply = json.loads(answer.stdout)
    assert "matplotlib" in reply["preloaded"]
    assert reply["warm"] is not leaves_a_file_open


@pytest.mark.needs_bwrap
@pytest.mark.needs_root
def test_zygote_refuses_folders_outside_its_slots(zygote, tmp_path):
    with pytest.raises(sandbox.ZygoteError, match="is not under the zygote's folder"):
        zygote.fork(2_000_000_001, str(tmp_path), ["-f", "x.json"], {})


def test_kill_user_refuses_root_and_the_unset_uid():
    for uid in (0, -1):
        with pytest.raises(ValueError, match=f"refusing to kill every process of uid {uid}"):
            sandbox.kill_user(uid)


@pytest.mark.needs_bwrap
@pytest.mark.needs_root
def test_each_thread_gets_its_own_zygote():
    """A zygote serves one kernel at a time, so two threads (a Dask worker running two tasks)
    must not share one; the same thread reuses its own."""
    import threading

    limits = Limits(memory_bytes=2**30)
    try:
        here = sandbox.kernel_zygote(limits, ["json"])
        assert sandbox.kernel_zygote(limits, ["json"]) is here
        there = []

        def other_thread():
            zygote = sandbox.kernel_zygote(limits)
            there.append((zygote, zygote.alive()))

        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        # (bwrap's --die-with-parent follows the starting thread: that zygote ends with it)
        assert there[0][0] is not here
        assert there[0][1]
        assert here.alive()
    finally:
        sandbox.close_zygotes()


@pytest.mark.grading
@pytest.mark.needs_bwrap
@pytest.mark.needs_root
def test_a_forked_kernel_that_exits_is_reported_dead(zygote):
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import os\nos._exit(0)"),
                nbformat.v4.new_code_cell("print('never')")]
    client = NotebookClient(nb, timeout=20, allow_errors=True, kernel_name="python3",
                            kernel_manager_class=sandbox_kernel_manager(zygote=zygote),
                            resources={"metadata": {"path": zygote.new_slot(0)}})
    with pytest.raises(DeadKernelError):
        client.execute()
    assert nb.cells[1].outputs == []


@pytest.mark.grading
@pytest.mark.needs_bwrap
@pytest.mark.needs_root
def test_forked_processes_still_see_a_python_that_lives_under_tmp(monkeypatch):
    """A checkout or virtual environment under /tmp (a CI clone) stays visible, read-only,
    over the fresh /tmp of each forked process; nothing else of the zygote's /tmp does."""
    import tempfile

    with tempfile.TemporaryDirectory(dir="/tmp") as checkout:
        env = Path(checkout) / "env" / "lib"
        env.mkdir(parents=True)
        (env / "marker.py").write_text("VALUE = 42\n")
        real = bwrap.python_paths
        for module in (bwrap, zygote_module):
            monkeypatch.setattr(module, "python_paths", lambda: [*real(), str(env.parent)])
        z = sandbox.KernelZygote(Limits(memory_bytes=2**30, max_processes=16), bare=True)
        try:
            assert str(env.parent) in z.keep  # (with this checkout's own, if it is under /tmp)
            tops = sorted({Path(p).relative_to("/tmp").parts[0] for p in z.keep})
            probe = textwrap.dedent(f"""
                import os, sys
                sys.path.insert(0, {str(env)!r})
                import marker
                try:
                    open({str(env / "planted")!r}, "w")
                    writable = True
                except OSError:
                    writable = False
                top = sorted(os.listdir("/tmp"))
                sys.exit(0 if (marker.VALUE, writable, top)
                         == (42, False, {tops!r}) else 9)
            """)
            runner = z.spawn(bwrap.sandbox_uid(), probe)
            try:
                assert runner.wait(timeout=20) == 0
            finally:
                runner.close()
        finally:
            z.close()
        assert not (env / "planted").exists()


# --------------------------------------------------------------------------- kernel readiness


class _Channel:
    """A kernel channel replaying canned messages; empty means ``get_msg`` times out."""

    def __init__(self, messages):
        self.messages = list(messages)
        self.reads = 0

    async def get_msg(self, timeout=None):
        from queue import Empty

        self.reads += 1
        if not self.messages:
            raise Empty
        message = self.messages.pop(0)
        return message(self.owner.sent[-1]) if callable(message) else message


class _Client:
    """What ``wait_until_ready`` uses of a kernel client."""

    def __init__(self, shell, iopub, alive=True):
        self.shell_channel, self.iopub_channel = _Channel(shell), _Channel(iopub)
        self.shell_channel.owner = self.iopub_channel.owner = self
        self.sent, self.handled, self.alive = [], [], alive

    def kernel_info(self):
        self.sent.append(f"request-{len(self.sent)}")
        return self.sent[-1]

    def _handle_kernel_info_reply(self, reply):
        self.handled.append(reply)

    async def is_alive(self):
        return self.alive


def _reply(msg_id, msg_type="kernel_info_reply"):
    return {"parent_header": {"msg_id": msg_id}, "msg_type": msg_type, "content": {}}


def _wait(client, timeout=None):
    import asyncio

    asyncio.run(_patches.wait_until_ready(client, timeout))


def test_ready_on_the_reply_to_this_request_and_a_first_iopub_message():
    welcome = _reply("", "iopub_welcome")
    leftover = _reply("x", "status")
    client = _Client(shell=[_reply("stale"), lambda sent: _reply(sent)],
                     iopub=[welcome, leftover])
    _wait(client)
    assert client.sent == ["request-0"]
    assert client.handled == [_reply("request-0")]  # not the stale reply to another request
    # no draining: what else IOPub holds is left for nbclient, which filters by parent
    assert client.iopub_channel.reads == 1
    assert client.iopub_channel.messages == [leftover]


def test_request_sent_again_while_iopub_is_not_connected():
    client = _Client(shell=[lambda sent: _reply(sent), lambda sent: _reply(sent)],
                     iopub=[])
    client.iopub_channel.messages = []  # the first attempt sees nothing on IOPub
    original = client.kernel_info

    def kernel_info():
        if client.sent:  # connected by the second request
            client.iopub_channel.messages.append(_reply("", "iopub_welcome"))
        return original()

    client.kernel_info = kernel_info
    _wait(client)
    assert client.sent == ["request-0", "request-1"]
    assert client.handled == [_reply("request-1")]


def test_a_dead_kernel_is_reported_instead_of_waited_for():
    client = _Client(shell=[], iopub=[], alive=False)
    with pytest.raises(RuntimeError, match="Kernel died before replying to kernel_info"):
        _wait(client)


def test_a_silent_kernel_times_out():
    client = _Client(shell=[], iopub=[])
    with pytest.raises(RuntimeError, match="Kernel didn't respond in 0 seconds"):
        _wait(client, timeout=0)


# --------------------------------------------------------------------------- verification zygote


@pytest.fixture(scope="module")
def bare_zygote():
    z = sandbox.KernelZygote(Limits(memory_bytes=2**30, max_processes=16), preload=["numpy"],
                             bare=True)
    yield z
    z.close()


_SPAWNED = """
import os, sys
line = sys.stdin.readline().strip()
caps = [l.split()[1] for l in open("/proc/self/status") if l.startswith("CapEff")][0]
planted = os.path.exists("/tmp/planted")
open("/tmp/planted", "w").close()
sys.stdout.write(f"{os.getuid()} {caps} {planted} {'numpy' in sys.modules} {line}\\n")
sys.stdout.flush()
if line == "exit":
    os._exit(5)
sys.stdin.readline()  # wait to be killed
"""


@pytest.mark.grading
@pytest.mark.needs_bwrap
@pytest.mark.needs_root
def test_spawned_processes_talk_over_pipes_and_share_nothing(bare_zygote):
    def spawn(line):
        runner = bare_zygote.spawn(bwrap.sandbox_uid(), _SPAWNED)
        runner.stdin.write(line.encode() + b"\n")
        runner.stdin.flush()
        os.set_blocking(runner.stdout.fileno(), True)
        return runner, runner.stdout.readline().decode().split()

    first, said = spawn("exit")
    try:
        assert said[1:] == ["0000000000000000", "False", "True", "exit"]
        assert int(said[0]) >= 1_000_000_000
        assert first.wait(timeout=10) == 5  # its own exit status, through the zygote
    finally:
        first.close()
    second, said = spawn("stay")
    try:
        assert said[2] == "False"  # the first one's /tmp file is not in this one's /tmp
        assert int(said[0]) != first.uid
        assert second.poll() is None
        second.kill()
        assert second.wait(timeout=10) == -signal.SIGKILL
    finally:
        second.close()
    assert processes.user_processes(second.uid) == []


def test_kernel_clients_retry_their_connection_every_10_ms():
    """A client connects before a new kernel has bound its sockets; ZeroMQ's default retry
    (100 ms) would hold every kernel's first answer back by that much."""
    import shutil

    import zmq

    km = sandbox_kernel_manager(sandbox=False)(kernel_name="python3")
    client = km.client()
    try:
        assert client.context is not km.context  # each client makes a context of its own
        assert client.context.getsockopt(zmq.RECONNECT_IVL) == 10
        assert km.context.getsockopt(zmq.RECONNECT_IVL) == 10
    finally:
        client.context.term()
        km.context.term()
        shutil.rmtree(km.ipc_dir, ignore_errors=True)
