"""The local executor: a pool of grading processes that Ctrl-C stops, busy or not."""

import multiprocessing
import time

import pytest

from lossutils.grading.executors.local import LocalPool


@pytest.mark.grading
def test_stopping_the_local_pool_ends_a_busy_worker(tmp_path):
    marker = tmp_path / "started"
    # `exec` travels to the worker by reference; the task says when it runs, then stays busy
    busy = f"import pathlib, time; pathlib.Path({str(marker)!r}).touch(); time.sleep(600)"
    before = set(multiprocessing.active_children())
    pool = LocalPool(1)
    try:
        future = pool.submit(exec, busy)
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert time.monotonic() < deadline, "the worker never started the task"
            assert not future.done(), future.exception()
            time.sleep(0.1)
        workers = [p for p in multiprocessing.active_children() if p not in before]
        assert len(workers) == 1
    finally:
        pool.stop()
    workers[0].join(timeout=60)
    assert not workers[0].is_alive()  # terminated, not left to finish its ten minutes
