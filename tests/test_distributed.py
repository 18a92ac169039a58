"""Grading on a Dask cluster: a real ``LocalCluster`` of two worker processes on loopback.

The same sample submissions (generated from the fixture master) are graded by the local process
pool and through the cluster; the grades must be identical, and each must be the outcome the
sample generator derives from the master's points. Workers are killed mid-run (once: Dask
reschedules; every time: the submission ends as a ``grader-error``) and nothing is lost.
"""

import csv
import dataclasses
import functools
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lossutils.grading.executors.dask import ClusterError, connect, pack_task, run_packed
from lossutils.grading.masters import load_master
from lossutils.grading.task import make_task
from lossutils.grading.worker import grade_submission

SOURCE = Path(__file__).parent / "fixtures" / "grading" / "solutions"
ASSIGNMENT = "00-fixture"
# The cluster's scheduler gives up on a task after this many of its workers died running it.
ALLOWED_FAILURES = 1


@functools.cache
def _master():
    return load_master(ASSIGNMENT, str(SOURCE))


def _task(path, **overrides):
    options = {"student": "s", "assignment": ASSIGNMENT, "notebook": ASSIGNMENT, "timeout": 5,
               "seed": 1, "max_bytes": 10**7, "max_output_chars": 10**4, "feedback": False,
               "keep_notebook": False}
    return make_task(path=None if path is None else str(path), master=_master(),
                     **{**options, **overrides})


def _without_time(result):
    return dataclasses.replace(result, seconds=0.0)


# ---------------------------------------------------------------- no cluster needed


@pytest.mark.parametrize(
    ("content", "max_bytes"),
    [
        (b'{"cells": [', 10**7),  # corrupt JSON
        (b'{"nbformat": 4, "cells": [], "x": "\xff"}', 10**7),  # invalid UTF-8
        (b" " * 300, 100),  # over the size limit: travels as its size, never read
        (None, 10**7),  # missing notebook
    ],
)
def test_a_packed_task_grades_like_the_file_on_disk(tmp_path, content, max_bytes):
    path = None
    if content is not None:
        path = tmp_path / "submitted.ipynb"
        path.write_bytes(content)
    task = _task(path, max_bytes=max_bytes)
    packed = pack_task(task)
    assert packed.task.path is None
    if content is not None and len(content) > max_bytes:
        assert (packed.content, packed.size) == (None, len(content))
    remote = run_packed(grade_submission, packed)
    assert _without_time(remote) == _without_time(grade_submission(task))


def test_missing_distributed_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # makes `import distributed` fail
    with pytest.raises(
        ClusterError,
        match=r"^--scheduler needs Dask's `distributed` package, which is not installed: "
        r"pip install 'lossutils\[dask\]'$",
    ):
        connect("tcp://127.0.0.1:8786")


def test_unreachable_scheduler_is_a_clear_error():
    with socket.socket() as sock:  # a port nobody listens on once the socket is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    with pytest.raises(
        ClusterError, match=rf"^cannot reach the Dask scheduler at {address} within 1 s: "
    ):
        connect(address, timeout=1)


def test_cli_reports_an_unreachable_scheduler(tmp_path, capsys):
    from lossutils.cli import main

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (tmp_path / "submitted").mkdir()
    code = main(
        [
            "grade",
            str(tmp_path / "submitted"),
            "--out",
            str(tmp_path / "out"),
            "--source",
            str(SOURCE),
            "--scheduler",
            f"tcp://127.0.0.1:{port}",
        ]
    )
    assert code == 2
    assert capsys.readouterr().err.startswith(
        f"lossutils grade: error: cannot reach the Dask scheduler at tcp://127.0.0.1:{port} "
        "within 10 s: "
    )
    assert not (tmp_path / "out" / "gradebook.db").exists()  # nothing was graded


@pytest.mark.grading
def test_grading_without_the_flag_imports_nothing_of_dask(tmp_path):
    submitted = tmp_path / "submitted" / "ada" / ASSIGNMENT
    submitted.mkdir(parents=True)
    (submitted / f"{ASSIGNMENT}.ipynb").write_text('{"cells": [')
    script = (
        "import sys\n"
        "from lossutils.cli import main\n"
        f"code = main(['grade', {str(tmp_path / 'submitted')!r}, '--out', "
        f"{str(tmp_path / 'out')!r}, '--source', {str(SOURCE)!r}, '--workers', '1'])\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed'))\n"
        "print(code, loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    # exit code 1: the corrupt notebook failed to grade, as it should
    assert done.stdout.splitlines()[-1] == "1 []"


# ---------------------------------------------------------------- a real LocalCluster


@pytest.fixture(scope="module")
def cluster():
    import dask
    from distributed import LocalCluster

    with dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES}):
        local = LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",
        )
    try:
        yield local
    finally:
        local.close()


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    """The fixture master's samples and the outcome of each, from the generator's manifest."""
    from lossutils.grading.samples import generate_samples

    folder = tmp_path_factory.mktemp("samples")
    manifest = generate_samples(str(SOURCE), str(folder), extras=False, timeout_sample=False)
    return folder, {m["student"]: (m["score"], m["status"]) for m in manifest}


def _grade(submitted, out, scheduler=None):
    from lossutils.grading.run import grade

    return grade(
        str(submitted),
        str(out),
        source=str(SOURCE),
        workers=2,
        scheduler=scheduler,
        timeout=5,
        seed=11,
        progress=None,
    )


def _grades(summary) -> dict:
    return {
        r["student"]: (r["score"], r["status"], r["problems"], r["cells"])
        for r in summary["results"]
    }


def _csv(out: Path) -> list[dict]:
    with open(out / "grades.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.grading
def test_cluster_grades_equal_local_grades(cluster, samples, tmp_path):
    folder, expected = samples
    local = _grade(folder, tmp_path / "local")
    remote = _grade(folder, tmp_path / "dask", cluster.scheduler_address)
    assert {s: g[:2] for s, g in _grades(remote).items()} == expected
    assert _grades(remote) == _grades(local)
    assert _csv(tmp_path / "dask") == _csv(tmp_path / "local")
    assert remote["exit_code"] == local["exit_code"] == 1  # corrupt, dead kernel...
    # the feedback reached the coordinator's disk from workers that never saw it
    feedback = tmp_path / "dask" / "feedback" / "correct" / ASSIGNMENT / f"{ASSIGNMENT}.html"
    assert feedback.read_text(encoding="utf-8") == (
        tmp_path / "local" / "feedback" / "correct" / ASSIGNMENT / f"{ASSIGNMENT}.html"
    ).read_text(encoding="utf-8")


def _slow_copy(folder: Path, submitted: Path, seconds: int) -> None:
    """A correct submission whose first cell sleeps: long enough to kill its worker mid-run."""
    nb = json.loads((folder / "correct" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text())
    nb["cells"].insert(
        0,
        {
            "cell_type": "code",
            "id": "slow-start",
            "metadata": {},
            "execution_count": None,
            "outputs": [],
            "source": f"import time\ntime.sleep({seconds})\n",
        },
    )
    (submitted / "slow" / ASSIGNMENT).mkdir(parents=True)
    (submitted / "slow" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").write_text(json.dumps(nb))


@pytest.mark.grading
def test_a_worker_killed_mid_run_loses_no_grade(cluster, samples, tmp_path):
    import shutil

    from distributed import Client

    folder, expected = samples
    submitted = tmp_path / "submitted"
    for student in ("correct", "untouched", "mistake-1", "kernel-dies"):
        shutil.copytree(folder / student, submitted / student)
    _slow_copy(folder, submitted, seconds=4)  # under the 5 s cell limit
    expected = {s: expected[s] for s in ("correct", "untouched", "mistake-1", "kernel-dies")}
    expected["slow"] = expected["correct"]

    watcher = Client(cluster.scheduler_address, set_as_default=False)
    watcher.wait_for_workers(2, timeout=60)
    killed: list[str] = []

    def kill_the_slow_task_worker():
        pids = watcher.run(os.getpid)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for address, keys in watcher.processing().items():
                if any("lossutils-grade-slow-" in str(key) for key in keys):
                    os.kill(pids[address], signal.SIGKILL)
                    killed.append(address)
                    return
            time.sleep(0.1)

    killer = threading.Thread(target=kill_the_slow_task_worker)
    killer.start()
    try:
        summary = _grade(submitted, tmp_path / "out", cluster.scheduler_address)
    finally:
        killer.join()
        watcher.close()
    assert len(killed) == 1, "the slow submission never ran on a worker"
    assert summary["graded"] == len(expected)
    assert {r["student"]: (r["score"], r["status"]) for r in summary["results"]} == expected
    gb = sqlite3.connect(tmp_path / "out" / "gradebook.db")
    counts = gb.execute(
        "SELECT student_id, COUNT(*) FROM submitted_assignment GROUP BY student_id"
    ).fetchall()
    gb.close()
    assert dict(counts) == dict.fromkeys(expected, 1)
    assert [row["student"] for row in _csv(tmp_path / "out")] == sorted(expected)


@pytest.mark.grading
def test_a_task_that_kills_every_worker_ends_as_a_failure(cluster, tmp_path):
    submitted = tmp_path / "ada.ipynb"
    submitted.write_text("{}")

    def kill_the_worker(task):
        os._exit(3)

    executor = connect(cluster.scheduler_address)
    try:
        result = executor.submit(kill_the_worker, _task(submitted, student="ada")).result(
            timeout=180
        )
    finally:
        executor.shutdown()
    assert result.status == "grader-error"
    assert result.score == 0.0
    assert result.student == "ada"
    [problem] = result.problems
    assert problem.code == "grader-error"
    assert problem.detail.startswith(
        f"the Dask worker grading this submission died {ALLOWED_FAILURES + 1} times (last tcp://"
    )


@pytest.mark.grading
def test_a_worker_without_the_sandbox_is_refused(monkeypatch):
    from distributed import LocalCluster

    from lossutils.grading import sandbox

    def unavailable():
        raise sandbox.SandboxUnavailable("no bwrap on this worker")

    monkeypatch.setattr(sandbox, "require_sandbox", unavailable)
    # a worker thread in this process, so that it sees the patched sandbox probe
    with LocalCluster(n_workers=1, processes=False, dashboard_address=":0") as local:
        [worker] = local.scheduler_info["workers"]
        with pytest.raises(
            ClusterError,
            match=rf"^Dask worker {re.escape(worker)}: the grading sandbox is not available: "
            "no bwrap on this worker",
        ):
            connect(local.scheduler_address)
        connect(local.scheduler_address, sandboxed=False).shutdown()
