"""The red-team batch (SECURITY.md), graded by `lossutils grade` in one run with honest work.

Submissions are generated from the release of 03-cross-entropy by tests/redteam/attacks.py:
honest ones, the blank release, every attack on the solution code (the attacked exercise is
``softmax``, its own answer wrong) and every attack on the notebook file. The batch must
complete, give no attack a point for ``softmax``, flag in grades.csv what the kernel was fooled
by, grade the honest submissions exactly as when graded alone, write nothing outside the
sandbox, and leave no sandboxed process behind.
"""

import collections
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lossutils.grading import verify
from lossutils.grading.sandbox import Limits
from tests.conftest import ROOT, load_attacks

ASSIGNMENT = "03-cross-entropy"
MASTER = ROOT / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
RELEASE = ROOT / "course" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
LOSSUTILS = Path(sys.executable).parent / "lossutils"
SEED = 2718

attacks = load_attacks()

pytestmark = [pytest.mark.grading, pytest.mark.needs_bwrap]

# Attacks that earn the points inside the kernel: verification must take them back and flag
# the disagreement.
FOOL_THE_KERNEL = ("patch-checker", "input-transformer", "reference-direct",
                   "reference-obfuscated", "reference-importlib")


# Sandboxes of a root grader run as fresh user ids from 10**9 up.
SANDBOX_UIDS = 10**9


def _sandbox_processes(root: int) -> collections.Counter:
    """Processes (zombies too: they count against the limit) per sandbox user id, among the
    descendants of ``root``: other runs on this machine have sandboxes of their own."""
    parent, owner = {}, {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            uid = entry.stat().st_uid
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:  # ended while we looked
            continue
        # the command name (field 2) may hold spaces and parentheses: parse after the last ')'
        parent[int(entry.name)] = int(stat[stat.rindex(b")") + 2:].split()[1])
        owner[int(entry.name)] = uid

    def descends(pid):
        while pid > 1:
            if pid == root:
                return True
            pid = parent.get(pid, 0)
        return False

    return collections.Counter(uid for pid, uid in owner.items()
                               if uid >= SANDBOX_UIDS and descends(pid))


def _grade(submissions: Path, out: Path) -> tuple[int, int, set[int]]:
    """Run the batch; return its exit code, and, sampled while it ran, the most processes one
    sandbox held at once and the sandboxes' user ids."""
    proc = subprocess.Popen(
        [str(LOSSUTILS), "grade", str(submissions), "--out", str(out), "--assignment",
         ASSIGNMENT, "--timeout", "10", "--workers", "2", "--seed", str(SEED)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    most, uids = 0, set()
    hang = time.monotonic() + 3600  # a guard against a hung batch, not a speed limit
    while proc.poll() is None and time.monotonic() < hang:
        counts = _sandbox_processes(proc.pid)
        most = max([most, *counts.values()])
        uids.update(counts)
        time.sleep(0.1)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, 1), err.decode()[-3000:]
    return proc.returncode, most, uids


def _results(out: Path) -> dict:
    data = json.loads((out / "results.json").read_text())
    return {r["student"]: r for r in data["submissions"]}


def _rows(out: Path) -> dict:
    with open(out / "grades.csv", newline="") as fh:
        return {row["student"]: row for row in csv.DictReader(fh)}


def _cell(result: dict, grade_id: str) -> dict:
    return next(c for c in result["cells"] if c["grade_id"] == grade_id)


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    base = tmp_path_factory.mktemp("redteam-batch")
    submitted, out = base / "submitted", base / "out"
    submitted.mkdir()
    release, master = attacks.load(RELEASE), attacks.load(MASTER)
    honest = json.dumps(attacks.honest(release, master))
    for name in ("honest-1", "honest-2"):
        (submitted / f"{name}.ipynb").write_text(honest)
    (submitted / "blank.ipynb").write_text(json.dumps(release))
    code = attacks.code_attacks(solutions_dir=str(ROOT / "solutions"),
                                outside_file=str(base / "pwned.txt"),
                                other_submission=str(submitted / "honest-1.ipynb"),
                                output_dir=str(out))
    for attack in code:
        nb = attacks.submission(release, master, attack.cells)
        (submitted / f"code-{attack.name}.ipynb").write_text(json.dumps(nb))
    files = attacks.file_attacks(release, master)
    for name, data in files.items():
        (submitted / f"file-{name}.ipynb").write_bytes(data)
    code_exit, most_processes, uids = _grade(submitted, out)
    alone = base / "alone"
    alone.mkdir()
    (alone / "honest-1.ipynb").write_text(honest)
    _grade(alone, base / "out-alone")
    return {"base": base, "out": out, "code": code, "files": files, "exit": code_exit,
            "most_processes": most_processes, "uids": uids, "results": _results(out),
            "rows": _rows(out),
            "alone": _results(base / "out-alone")["honest-1"]}


def test_the_batch_completes_with_a_row_for_everyone(batch):
    students = {"honest-1", "honest-2", "blank"} | {f"code-{a.name}" for a in batch["code"]} \
        | {f"file-{n}" for n in batch["files"]}
    assert set(batch["results"]) == students
    assert set(batch["rows"]) == students
    # Corrupt files are grading failures, so the exit code says some submission failed.
    assert batch["exit"] == 1


def test_honest_submissions_are_graded_exactly_as_alone(batch):
    alone = {c["grade_id"]: c["score"] for c in batch["alone"]["cells"]}
    tests = [c for c in batch["alone"]["cells"] if c["kind"] == "test"]
    assert all(c["score"] == c["max_score"] for c in tests)
    for name in ("honest-1", "honest-2"):
        result = batch["results"][name]
        assert {c["grade_id"]: c["score"] for c in result["cells"]} == alone
        assert batch["rows"][name]["status"] == "ok"
    assert float(batch["rows"]["blank"]["total"]) == 0


def test_no_attack_earns_a_point_for_the_attacked_exercise(batch):
    for student, result in batch["results"].items():
        if student.startswith(("code-", "file-")):
            cells = [c for c in result["cells"] if c["grade_id"] == "test_softmax"]
            assert all(c["score"] == 0 for c in cells), (student, cells)
            assert result["score"] <= batch["alone"]["score"], student


def test_code_attacks_do_not_cost_the_honest_neighbour(batch):
    for attack in batch["code"]:
        if attack.kills_process:
            continue
        result = batch["results"][f"code-{attack.name}"]
        cell = _cell(result, "test_cross_entropy")
        assert cell["score"] == cell["max_score"], (attack.name, cell, result["problems"])


def test_the_right_reason_or_flag_is_in_grades_csv(batch):
    rows = batch["rows"]
    for name in FOOL_THE_KERNEL:
        row = rows[f"code-{name}"]
        assert "tampering-suspected" in row["status"], (name, row)
        assert "test_softmax: the notebook's test gave 3/3" in row["reason"], (name, row)
    assert "timeout" in rows["code-infinite-loop"]["status"]
    assert "kernel-died" in rows["code-os-exit-top"]["status"]
    for name in ("monkeypatch-numpy", "patch-checker", "input-transformer", "event-hook",
                 "reference-obfuscated", "read-solutions", "network", "os-exit-call",
                 "sys-exit", "keyboard-interrupt", "fork-bomb", "frame-walk", "magics"):
        assert "review-suggested" in rows[f"code-{name}"]["status"], name
    for name in ("notebook-50mb", "invalid-utf8"):
        assert rows[f"file-{name}"]["status"] == "unreadable", name
    # nbformat upgrades a version 3 notebook; it has no answers, so it scores nothing.
    assert rows["file-old-nbformat"]["status"] != "ok"
    assert float(rows["file-old-nbformat"]["total"]) == 0
    for name in ("edit-test-cell", "delete-test-cell", "retype-test-cell"):
        assert "test-cell-restored" in rows[f"file-{name}"]["status"], name


def test_nothing_was_written_outside_and_no_process_is_left(batch):
    assert not (batch["base"] / "pwned.txt").exists()
    assert "pwned" not in (batch["out"] / "grades.csv").read_text()
    # None of the batch's sandboxes outlives it (other runs on this machine have their own).
    left = []
    for entry in os.scandir("/proc"):
        try:
            if entry.name.isdigit() and entry.stat().st_uid in batch["uids"]:
                left.append(entry.name)
        except OSError:  # ended while we looked
            continue
    assert left == []


@pytest.mark.needs_root
def test_fork_bombs_stay_within_the_process_limit(batch):
    # What keeps the machine responsive while bombs and hogs run: each sandbox is its own
    # user, capped by RLIMIT_NPROC (the kernel's limit is the larger, verification's smaller);
    # loops and hogs end at the cell timeout (their statuses are checked above).
    assert 0 < batch["most_processes"] <= max(Limits().max_processes,
                                              verify.DEFAULT_LIMITS.max_processes)
