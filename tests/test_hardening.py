"""The grader's own side under attack: the parts of it that tests/test_redteam.py cannot reach
with a submission, on the fixture master (tests/fixtures/grading).

A grading worker that dies, the folders it leaves, special files among the submissions, a
ledger written with a forged diagnosis, terminal control characters in names, and the limits
under which the grader judges and renders.
"""

import io
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lossutils.grading.masters import COURSE_ID, load_master
from lossutils.grading.task import make_task
from tests.conftest import ASSIGNMENT, SOURCE


def _task(path, master, student="s", **overrides):
    options = {"timeout": 20, "seed": 1, "feedback": False, "keep_notebook": False}
    return make_task(student=student, assignment=ASSIGNMENT, notebook=ASSIGNMENT,
                     path=None if path is None else str(path), master=master,
                     **{**options, **overrides})


@pytest.mark.grading
def test_a_worker_that_dies_takes_only_its_own_submission(tmp_path, samples, sandboxed,
                                                          monkeypatch):
    from nbgrader.api import Gradebook

    from lossutils.grading.executors.local import LocalPool
    from lossutils.grading.run import _drive
    from lossutils.grading.state import State

    monkeypatch.syspath_prepend(str(Path(__file__).parent / "redteam"))
    import faults

    db_url = f"sqlite:///{tmp_path}/gradebook.db"
    master = load_master(ASSIGNMENT, str(SOURCE), db_url)
    correct = samples.notebook("correct")
    students = ["honest-1", faults.KILLER, "honest-2"]
    pending = [(_task(correct, master, student, sandbox=sandboxed), f"key-{student}", None)
               for student in students]
    gb, state = Gradebook(db_url, COURSE_ID), State(str(tmp_path / "state.sqlite"))
    pool = LocalPool(2)
    try:
        done, interrupted, pool = _drive(pending, 2, str(tmp_path), gb, state, None, pool,
                                         work=faults.grade_or_die)
    finally:
        pool.shutdown()
        gb.close()
    results = {r["student"]: r for r in state.results()}
    assert done == 3
    assert not interrupted
    for student in ("honest-1", "honest-2"):
        assert results[student]["status"] == "ok", results[student]["problems"]
        tests = [c for c in results[student]["cells"] if c["kind"] == "test"]
        assert all(c["score"] == c["max_score"] for c in tests), tests
        # kept under its key: the next run reuses it
        assert state.key(student, ASSIGNMENT, ASSIGNMENT) == f"key-{student}"
    killed = results[faults.KILLER]
    assert killed["status"] == "over-budget", killed
    assert "worker process died" in killed["problems"][0]["detail"]
    assert killed["score"] == 0


def _zygote_holder(tmp_path: Path) -> subprocess.Popen:
    """A process that starts a verification zygote, prints its slot folder, and waits."""
    script = textwrap.dedent("""
        import sys, time
        from lossutils.grading.sandbox import kernel_zygote
        from lossutils.grading.verify import DEFAULT_LIMITS
        print(kernel_zygote(DEFAULT_LIMITS, ["numpy"], bare=True).slots, flush=True)
        time.sleep(600)
    """)
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            text=True, cwd=tmp_path)


@pytest.mark.needs_bwrap
@pytest.mark.needs_root
@pytest.mark.grading
def test_the_slot_folder_of_a_killed_worker_is_removed(tmp_path):
    from lossutils.grading.sandbox import KernelZygote
    from lossutils.grading.verify import DEFAULT_LIMITS

    holder = _zygote_holder(tmp_path)
    slots = Path(holder.stdout.readline().strip())
    assert slots.name.startswith("lossutils-slots-")
    assert slots.is_dir()
    holder.kill()  # no atexit, no cleanup: as the kernel's OOM killer ends a worker
    holder.wait()
    holder.stdout.close()
    live = _zygote_holder(tmp_path)  # a zygote of another run, alive
    live_slots = Path(live.stdout.readline().strip())
    try:
        zygote = KernelZygote(DEFAULT_LIMITS, ["numpy"], bare=True)
        zygote.close()
        assert not slots.exists()
        assert live_slots.is_dir()  # a living run's folder is left alone
    finally:
        live.kill()
        live.wait()
        live.stdout.close()


@pytest.mark.needs_root  # (mknod needs root)
def test_a_device_node_as_a_notebook_is_refused(tmp_path):
    from lossutils.grading.discover import find_submissions
    from lossutils.grading.worker import grade_submission

    folder = tmp_path / "submitted" / "eve" / ASSIGNMENT
    folder.mkdir(parents=True)
    node = folder / f"{ASSIGNMENT}.ipynb"
    os.mknod(node, stat.S_IFCHR | 0o600, os.makedev(1, 5))  # /dev/zero: endless bytes
    entries, _ = find_submissions(str(tmp_path / "submitted"), {ASSIGNMENT: [ASSIGNMENT]})
    assert [e.path for e in entries] == [str(node)]
    result = grade_submission(_task(node, load_master(ASSIGNMENT, str(SOURCE))))
    assert result.status == "suspicious-file"
    assert "device" in result.problems[0].detail
    assert result.score == 0


def test_the_report_survives_a_ledger_with_a_forged_diagnosis(tmp_path):
    from lossutils.grading.report import write_outputs

    cell = {"grade_id": "test_softmax", "kind": "test", "max_score": 3.0, "score": 0.0,
            "check": "softmax", "diagnosis": "$\\frac{1}{$", "message": "x", "comment": None}
    result = {"student": "=1+2", "assignment": "a", "notebook": "a", "score": 0.0,
              "max_score": 3.0, "status": "ok", "problems": [], "cells": [cell],
              "seed": 1, "hash": "h", "master_hash": "m", "seconds": 1.0, "feedback": None}
    paths = write_outputs(str(tmp_path), [result], {"a": None},
                          {"seed": 1, "timeout": 10, "notes": []})
    assert "Grading report" in Path(paths["report_html"]).read_text(encoding="utf-8")
    assert "'=1+2" in Path(paths["grades_csv"]).read_text(encoding="utf-8")


def test_control_characters_never_reach_the_terminal():
    from lossutils.cli import _summary

    name = "eve\x1b]52;c;cGF5bG9hZA==\x07\x1b[2J"
    failed = {"student": name, "assignment": "a", "notebook": "a", "score": 0.0,
              "max_score": 1.0, "status": "unreadable",
              "problems": [{"code": "unreadable", "detail": "bad \x1b[31mred\x9b"}], "cells": []}
    stream = io.StringIO()
    _summary({"notes": [], "results": [failed], "graded": 1, "reused": 0, "seed": 1,
              "failed": [failed], "out": "."}, stream)
    text = stream.getvalue()
    assert "eve" in text
    assert not any((ord(c) < 32 and c not in "\n") or 0x7f <= ord(c) < 0xa0 for c in text), text


def test_problem_details_hold_no_control_characters():
    from lossutils.grading.problems import Problem

    problem = Problem("unreadable", "a\x1b[2Jb\x00c\u202ed\nline")
    assert problem.detail == "a?[2Jb?c?d\nline"


def test_limited_runs_return_raise_and_stop_at_their_limits():
    from lossutils.grading.limited import Exhausted, run_limited

    assert run_limited(sum, [1, 2, 3], seconds=10, memory_bytes=2**30) == 6
    with pytest.raises(ValueError, match="boom"):
        run_limited(_raise, "boom", seconds=10, memory_bytes=2**30)
    start = time.monotonic()
    with pytest.raises(Exhausted, match="time") as info:
        run_limited(time.sleep, 60, seconds=1, memory_bytes=2**30)
    assert info.value.kind == "time"
    assert time.monotonic() - start < 30
    with pytest.raises(Exhausted, match="memory") as info:
        run_limited(bytearray, 4 * 2**30, seconds=30, memory_bytes=2**30)
    assert info.value.kind == "memory"


def _raise(text):
    raise ValueError(text)


def test_a_killed_limited_run_leaves_no_process(tmp_path):
    from lossutils.grading.limited import Exhausted, run_limited

    marker = tmp_path / "pid"
    with pytest.raises(Exhausted):
        run_limited(_write_pid_and_wait, str(marker), seconds=1, memory_bytes=2**30)
    pid = int(marker.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def _write_pid_and_wait(path):
    Path(path).write_text(str(os.getpid()))
    signal.pause()


def test_the_output_folder_is_created_private(tmp_path):
    from lossutils.grading.persist import make_output

    out = tmp_path / "deep" / "out"
    make_output(str(out))
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    shared = tmp_path / "shared"
    make_output(str(shared), mode=0o750)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o750


class _Replying:
    """A stand-in for the verification channel that answers every call with one reply."""

    call_timeout = 5

    def __init__(self, reply: dict):
        self.reply = reply

    def request(self, message, timeout):
        return json.loads(json.dumps(self.reply))

    def fail(self, kind, detail=None):
        from lossutils.grading.verify.channel import Fatal

        raise Fatal(f"{kind}: refused ({detail})")


def _reply(output) -> dict:
    return {"op": "result", "output": output, "error": None, "warnings": [], "stdout": "",
            "modified": [], "exc": None, "args": [], "kwargs": {}, "sympy": None}


def test_a_reply_array_without_its_data_is_refused():
    import numpy as np

    from lossutils.grading.verify.channel import Fatal
    from lossutils.grading.verify.remote import Remote

    # rebuilt with np.empty, its values were whatever the worker's memory held last: inputs,
    # expected answers, another student's data
    remote = Remote(_Replying(_reply({"kind": "ndarray", "dtype": "<f8", "shape": [2, 3]})),
                    "softmax", ["logits"])
    with pytest.raises(Fatal, match="protocol"):
        remote(np.zeros((2, 3)))
    with_data = {"kind": "ndarray", "dtype": "<f8", "shape": [2], "data": [1.0, 2.0]}
    assert Remote(_Replying(_reply(with_data)), "f", ["x"])(np.zeros(2)).tolist() == [1.0, 2.0]


def test_a_reply_beyond_the_decoded_budget_is_refused(monkeypatch):
    import numpy as np

    from lossutils.grading.verify import remote as remote_module
    from lossutils.grading.verify.channel import Fatal

    monkeypatch.setattr(remote_module, "MAX_REPLY_BYTES", 20_000)
    item = {"kind": "ndarray", "dtype": "<f8", "shape": [100], "data": [0.0] * 100}
    small = _reply({"kind": "list", "items": [item] * 20})  # 16 kB of arrays: within
    assert len(remote_module.Remote(_Replying(small), "f", ["x"])(np.zeros(1))) == 20
    big = _reply({"kind": "list", "items": [item] * 25})  # 20 kB in all, none too large
    with pytest.raises(Fatal, match="protocol"):
        remote_module.Remote(_Replying(big), "f", ["x"])(np.zeros(1))


class _Values(_Replying):
    """A stand-in verification channel whose process holds the given values by name."""

    def __init__(self, values: dict):
        super().__init__({"op": "values", "values": values})


def _step(exercise="bernoulli_mle.p_hat", function="p_hat", given="score"):
    from lossutils.grading.verify import CheckCall

    return CheckCall(exercise, function, True, (("given", given),) if given else ())


def _tree(expr) -> dict:
    from lossutils.grading.verify._runner import encode_sympy

    return {"sympy": encode_sympy(expr)}


def test_a_derivation_step_is_judged_under_a_time_limit(monkeypatch):
    import sympy as sp

    from lossutils.checks._derivation import DerivationStep
    from lossutils.grading.limited import Exhausted
    from lossutils.grading.verify import session

    # whatever makes the checker slow (none is known: the evaluation has a budget of
    # operations), the judge runs in a child with the call's time and is stopped there
    monkeypatch.setattr(DerivationStep, "run", lambda *a, **k: time.sleep(600))
    p = sp.Symbol("p", positive=True)
    runner = _Values({"p_hat": _tree(p), "score": _tree(p)})
    start = time.monotonic()
    with pytest.raises(Exhausted, match="time"):
        session._judge_step(runner, _step(), 7, 1)
    assert time.monotonic() - start < 60


def test_a_step_given_several_earlier_steps_is_judged_on_all_of_them():
    import sympy as sp

    from lossutils.grading.verify import CheckCall, session

    # the loss built from the student's own log(1 - sigmoid), which is wrong (catalogued)
    z, t = sp.Symbol("z", real=True), sp.Symbol("t", real=True)
    log_sigmoid = -sp.log(1 + sp.exp(-z))
    log_one_minus = 1 + sp.log(1 + sp.exp(-z))
    bce = -(t * log_sigmoid + (1 - t) * log_one_minus)
    runner = _Values({"bce": _tree(bce), "log_sigmoid": _tree(log_sigmoid),
                      "log_one_minus": _tree(log_one_minus)})
    call = CheckCall("bce_logits.bce", "bce", True,
                     (("given", "log_sigmoid"), ("given", "log_one_minus")))
    result = session._judge_step(runner, call, 7, 60)
    assert result.passed, result.message
    assert "log_one_minus" in result.message


def test_a_blowup_within_the_codec_is_judged_within_the_time_limit():
    import sympy as sp

    from lossutils.checks import get_exercise
    from lossutils.checks._derivation import _SYMBOLIC_TERMS, _expanded_terms
    from lossutils.grading.verify import session

    # (sin beta + ... + sin 16 beta)**12 has about 10**7 terms once expanded, within the
    # codec's size and degree limits: the checker evaluates it at the points and never
    # expands it (its symbolic second opinion refuses anything that large)
    step = get_exercise("gaussian_precision.nll_beta")
    beta = step.derivation.ns.beta
    blowup = sum(sp.sin(i * beta) for i in range(1, 17)) ** 12
    assert _expanded_terms(blowup) >= _SYMBOLIC_TERMS
    runner = _Values({"nll_beta": _tree(step.truth() + blowup)})
    result = session._judge_step(runner, _step(step.id, "nll_beta", None), 7, 60)
    assert not result.passed
    assert "not the negative log-likelihood" in result.message


def test_an_answer_forged_to_agree_at_the_visible_points_fails_the_hidden_ones():
    import zlib

    import numpy as np
    import sympy as sp

    from lossutils.checks import get_exercise, run_check
    from lossutils.checks._core import VISIBLE_SEED

    # the visible points are public (the seed is in lossutils): an answer made to agree with
    # the log-likelihood exactly there, and nowhere else, passes the visible check only
    step = get_exercise("bernoulli_mle.log_lik")
    rng = np.random.default_rng([VISIBLE_SEED, zlib.crc32(step.id.encode())])
    visible = {float(env["p"]) for group in step.derivation.points(
        rng, 5, draw_params=step.step.draw_params) for env in group}
    p = step.derivation.ns.p
    forged = step.truth() + sp.Mul(*[p - sp.Rational(v) for v in sorted(visible)])
    assert run_check(step.id, forged).passed
    for seed in (1, 2, 3):
        result = run_check(step.id, forged, hidden=True, seed=seed)
        assert not result.passed, seed


@pytest.mark.parametrize("values", [
    {},                                                        # the name is not answered
    {"p_hat": {"sympy": {}, "plain": {"kind": "NoneType"}}},   # two answers for one name
    {"p_hat": {"eval": "__import__('os')"}},                   # a kind the protocol lacks
    {"p_hat": {"unsupported": {"kind": "list", "items": []}}},  # a reason that is no text
    {"p_hat": {"plain": {"kind": "ndarray", "dtype": "<f8", "shape": [2**40]}}},
])
def test_a_forged_step_value_is_refused(values):
    from lossutils.grading.verify.channel import Fatal
    from lossutils.grading.verify.remote import fetch_values

    with pytest.raises(Fatal, match="protocol"):
        fetch_values(_Values(values), ["p_hat"])


def test_a_step_tree_beyond_the_codec_is_judged_too_large_without_being_built(monkeypatch):
    from lossutils.grading.verify import _runner, session

    def refuse(node):
        raise AssertionError("an oversized tree was rebuilt")

    monkeypatch.setattr(_runner, "_build", refuse)

    # trees the encoder would never send (3,000 nodes; 200 levels): refused before rebuilding
    wide = {"f": "Add", "args": [{"sym": "M", "assumptions": {}}] * 3000}
    deep = {"sym": "M", "assumptions": {}}
    for _ in range(200):
        deep = {"f": "Add", "args": [deep, {"int": "1"}]}
    runner = _Values({"p_hat": {"sympy": wide}, "score": {"sympy": deep}})
    result = session._judge_step(runner, _step(), 7, 60)
    assert result.diagnosis == "too_large"
