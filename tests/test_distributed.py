"""Grading on a Dask cluster: a real ``LocalCluster`` of two worker processes on loopback.

The same sample submissions (generated from the fixture master) are graded by the local process
pool and through the cluster; the grades must be identical, and each must be the outcome the
sample generator derives from the master's points. Workers are killed mid-run (once: Dask
reschedules; every time: the submission ends as a ``grader-error``) and nothing is lost.
"""

import csv
import dataclasses
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lossutils.grading.executors.dask import ClusterError, connect, pack_task, run_packed
from lossutils.grading.worker import grade_submission
from tests.conftest import (
    ASSIGNMENT,
    SOURCE,
    fixture_task,
    free_port,
    unsandboxed_flag,
    wait_for_file_cell,
    with_first_cell,
)

# The cluster's scheduler gives up on a task after this many of its workers died running it.
ALLOWED_FAILURES = 1


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
    task = fixture_task(path, max_bytes=max_bytes)
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
    address = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(
        ClusterError, match=rf"^cannot reach the Dask scheduler at {address} within 1 s: "
    ):
        connect(address, timeout=1)


def test_cli_reports_an_unreachable_scheduler(tmp_path, capsys):
    from lossutils.cli import main

    port = free_port()
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
def test_grading_without_the_flag_imports_nothing_of_dask(tmp_path, sandboxed):
    submitted = tmp_path / "submitted" / "ada" / ASSIGNMENT
    submitted.mkdir(parents=True)
    (submitted / f"{ASSIGNMENT}.ipynb").write_text('{"cells": [')
    script = (
        "import sys\n"
        "from lossutils.cli import main\n"
        f"code = main(['grade', {str(tmp_path / 'submitted')!r}, '--out', "
        f"{str(tmp_path / 'out')!r}, '--source', {str(SOURCE)!r}, '--workers', '1', "
        f"*{unsandboxed_flag(sandboxed)!r}])\n"
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


def _grade(submitted, out, scheduler=None, *, sandbox: bool, timeout: int = 5):
    from lossutils.grading.run import grade

    return grade(
        str(submitted),
        str(out),
        source=str(SOURCE),
        workers=2,
        scheduler=scheduler,
        timeout=timeout,
        seed=11,
        sandbox=sandbox,
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
def test_cluster_grades_equal_local_grades(cluster, samples, sandboxed, tmp_path):
    folder = tmp_path / "submitted"
    expected = {s: o for s, o in samples.outcomes.items() if s != "infinite-loop"}
    for student in expected:
        samples.copy(student, folder)
    local = _grade(folder, tmp_path / "local", sandbox=sandboxed)
    remote = _grade(folder, tmp_path / "dask", cluster.scheduler_address, sandbox=sandboxed)
    assert {s: g[:2] for s, g in _grades(remote).items()} == expected
    assert _grades(remote) == _grades(local)
    assert _csv(tmp_path / "dask") == _csv(tmp_path / "local")
    assert remote["exit_code"] == local["exit_code"] == 1  # corrupt, dead kernel...
    # the feedback reached the coordinator's disk from workers that never saw it
    feedback = tmp_path / "dask" / "feedback" / "correct" / ASSIGNMENT / f"{ASSIGNMENT}.html"
    assert feedback.read_text(encoding="utf-8") == (
        tmp_path / "local" / "feedback" / "correct" / ASSIGNMENT / f"{ASSIGNMENT}.html"
    ).read_text(encoding="utf-8")


@pytest.mark.grading
def test_a_worker_killed_mid_run_loses_no_grade(cluster, samples, tmp_path):
    """A worker is killed while it grades a submission; Dask runs the task again elsewhere.

    The submission waits (first cell) until a file appears, and the file appears only once
    its worker is killed: the kill provably lands mid-task, and the second attempt goes on at
    once. Graded without the sandbox, whose kernels cannot see the file; the sandbox on a
    cluster is tested above.
    """
    from distributed import Client

    submitted = tmp_path / "submitted"
    expected = {s: samples.outcomes[s] for s in ("correct", "untouched", "mistake-1",
                                                 "kernel-dies")}
    for student in expected:
        samples.copy(student, submitted)
    killed_flag = tmp_path / "worker-killed"
    with_first_cell(samples.notebook("correct"), wait_for_file_cell(killed_flag),
                    submitted / "slow" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    # full marks; the scan flags the waiting cell's file access for review
    expected["slow"] = (expected["correct"][0], "review-suggested")

    watcher = Client(cluster.scheduler_address, set_as_default=False)
    watcher.wait_for_workers(2, timeout=60)
    killed: list[str] = []
    graded = threading.Event()

    def kill_the_slow_task_worker():
        pids = watcher.run(os.getpid)
        try:
            while not killed and not graded.is_set():
                for address, keys in watcher.processing().items():
                    if any("lossutils-grade-slow-" in str(key) for key in keys):
                        os.kill(pids[address], signal.SIGKILL)
                        killed.append(address)
                        break
                time.sleep(0.1)
        finally:
            killed_flag.touch()  # (also when this thread fails: the run must not hang)

    killer = threading.Thread(target=kill_the_slow_task_worker)
    killer.start()
    try:
        # the cell timeout only guards against a hang: the flag ends the wait
        summary = _grade(submitted, tmp_path / "out", cluster.scheduler_address, sandbox=False,
                         timeout=600)
    finally:
        graded.set()
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
def test_a_task_that_kills_every_worker_ends_as_a_failure(cluster, sandboxed, tmp_path):
    submitted = tmp_path / "ada.ipynb"
    submitted.write_text("{}")

    def kill_the_worker(task):
        os._exit(3)

    executor = connect(cluster.scheduler_address, sandboxed=sandboxed)
    try:
        result = executor.submit(kill_the_worker, fixture_task(submitted, student="ada")).result(
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
