"""The red-team batch (SECURITY.md), graded by `lossutils grade` in one run with honest work.

Submissions are generated from the releases of 03-cross-entropy and 02-gaussian-l2 by
tests/redteam/attacks.py, in nbgrader's submitted layout: honest ones, the blank release, every
attack on the solution code (the attacked exercise is ``softmax``, its own answer wrong), every
attack on the notebook file, and every attack on the grader's own side (links and FIFOs
instead of notebooks, forged verification replies, output floods, notebooks that run for
minutes, an answer that keeps the symbolic checker busy, text imitating the grader's own,
script in outputs and answers, hidden tests read from inside the kernel, a kernel run that
disagrees with verification). The whole run is limited to a few GiB of memory per process and
a time budget per submission. It must complete and write every output, give no attack a point
it did not earn, flag each one with its reason, grade the honest submissions exactly as when
graded alone, write nothing outside the sandbox, and leave no sandboxed process behind; a
second run into the same output folder must work too.
"""

import collections
import csv
import html.parser
import json
import os
import resource
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from lossutils.grading.sandbox import Limits
from lossutils.grading.verify.session import DEFAULT_LIMITS as VERIFY_LIMITS
from tests.conftest import ROOT, load_attacks

ASSIGNMENT = "03-cross-entropy"
SYMBOLIC = "02-gaussian-l2"
MASTER = ROOT / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
LOSSUTILS = Path(sys.executable).parent / "lossutils"
# long enough that it cannot turn up in a page by chance
SEED = 271828182
# seconds per cell, and per submission as a whole (kernel and verification together)
TIMEOUT, BUDGET = 5, 45
# address space of every process of the run, the grader's own included
MEMORY = 4 * 2**30

attacks = load_attacks()

pytestmark = [pytest.mark.grading, pytest.mark.needs_bwrap]

# Attacks that earn the points inside the kernel: verification must take them back and flag
# the disagreement.
FOOL_THE_KERNEL = ("patch-checker", "input-transformer", "reference-direct",
                   "reference-obfuscated", "reference-importlib")
# Honest submissions under names that are formulas to a spreadsheet (graded, the name
# neutralised in grades.csv) or markup to a browser (refused: nbgrader's formgrader shows a
# student's name unescaped).
FORMULA_NAMES = ("=1+2", "@SUM(A1)")
MARKUP_NAME = "<img src=x onerror=alert(1)>"


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


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
                line = fh.read()
        except OSError:  # ended while we looked
            continue
        # the command name (field 2) may hold spaces and parentheses: parse after the last ')'
        parent[int(entry.name)] = int(line[line.rindex(b")") + 2:].split()[1])
        owner[int(entry.name)] = uid

    def descends(pid):
        while pid > 1:
            if pid == root:
                return True
            pid = parent.get(pid, 0)
        return False

    return collections.Counter(uid for pid, uid in owner.items()
                               if uid >= SANDBOX_UIDS and descends(pid))


def _grade(submissions: Path, out: Path, work: str,
           seed: int | None = SEED) -> tuple[int, int]:
    """Run a batch with limited memory, its kernels' folders under ``work``; return its exit
    code and, sampled while it ran, the most processes one sandbox held at once."""
    argv = [str(LOSSUTILS), "grade", str(submissions), "--out", str(out), "--timeout",
            str(TIMEOUT), "--budget", str(BUDGET), "--workers", "2"]
    env = dict(os.environ, LOSSUTILS_SLOTS_DIR=work, TMPDIR=work)
    proc = subprocess.Popen(argv + ([] if seed is None else ["--seed", str(seed)]), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                            preexec_fn=_limit_memory)
    most = 0
    hang = time.monotonic() + 3600  # a guard against a hung batch, not a speed limit
    while proc.poll() is None and time.monotonic() < hang:
        most = max([most, *_sandbox_processes(proc.pid).values()])
        time.sleep(0.1)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, 1), err.decode()[-3000:]
    return proc.returncode, most


def _results(out: Path) -> dict:
    data = json.loads((out / "results.json").read_text())
    return {r["student"]: r for r in data["submissions"]}


def _rows(out: Path) -> dict:
    with open(out / "grades.csv", newline="") as fh:
        return {row["student"]: row for row in csv.DictReader(fh)}


def _cell(result: dict, grade_id: str) -> dict:
    return next(c for c in result["cells"] if c["grade_id"] == grade_id)


def _notebook(folder: Path, student: str, assignment: str = ASSIGNMENT) -> Path:
    return folder / student / assignment / f"{assignment}.ipynb"


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    base = tmp_path_factory.mktemp("redteam-batch")
    submitted, out = base / "submitted", base / "out"
    # the kernels' folders: not under /tmp (each kernel mounts its own), and only this batch's
    work = tempfile.mkdtemp(prefix="lossutils-redteam-", dir="/var/tmp")
    releases = {a: attacks.load(ROOT / "course" / a / f"{a}.ipynb") for a in (ASSIGNMENT,
                                                                              SYMBOLIC)}
    masters = {a: attacks.load(ROOT / "solutions" / a / f"{a}.ipynb") for a in releases}

    def put(student: str, data, assignment: str = ASSIGNMENT) -> None:
        path = _notebook(submitted, student, assignment)
        path.parent.mkdir(parents=True)
        path.write_bytes(data if isinstance(data, bytes) else json.dumps(data).encode())

    honest = attacks.honest(releases[ASSIGNMENT], masters[ASSIGNMENT])
    for name in ("honest-1", "honest-2", *FORMULA_NAMES, MARKUP_NAME):
        put(name, honest)
    put("honest-02", attacks.honest(releases[SYMBOLIC], masters[SYMBOLIC]), SYMBOLIC)
    put("blank", releases[ASSIGNMENT])
    code = attacks.code_attacks(solutions_dir=str(ROOT / "solutions"),
                                outside_file=str(base / "pwned.txt"),
                                other_submission=str(_notebook(submitted, "honest-1")),
                                output_dir=str(out))
    for attack in code:
        put(f"code-{attack.name}",
            attacks.submission(releases[ASSIGNMENT], masters[ASSIGNMENT], attack.cells))
    files = attacks.file_attacks(releases[ASSIGNMENT], masters[ASSIGNMENT])
    for name, data in files.items():
        put(f"file-{name}", data)
    trusted = attacks.trusted_side_attacks(masters[ASSIGNMENT], sleep=TIMEOUT - 1)
    for attack in trusted:
        put(f"trusted-{attack.name}", attacks.trusted_submission(
            releases[attack.assignment], masters[attack.assignment], attack), attack.assignment)
    planted = attacks.plant_file_attacks(submitted, ASSIGNMENT, master=MASTER,
                                         honest=submitted / "honest-1", outside=base / "outside")
    code_exit, most_processes = _grade(submitted, out, work)
    first = {"results": _results(out), "rows": _rows(out),
             "report": (out / "report.html").read_text(encoding="utf-8")}
    # a later run into the same folder, without --seed: nothing changed, so nothing is graded
    again = _grade(submitted, out, work, seed=None)
    second = json.loads((out / "results.json").read_text())["run"]
    alone = base / "alone"
    put_alone = _notebook(alone, "honest-1")
    put_alone.parent.mkdir(parents=True)
    put_alone.write_text(json.dumps(honest))
    _grade(alone, base / "out-alone", work)
    yield {"base": base, "out": out, "work": work, "code": code, "files": files,
           "trusted": trusted, "planted": planted, "exit": code_exit,
           "most_processes": most_processes, **first, "again": again, "second": second,
           "alone": _results(base / "out-alone")["honest-1"]}
    shutil.rmtree(work, ignore_errors=True)


def _csv_name(name: str) -> str:
    """How grades.csv writes a student's name: a spreadsheet formula is neutralised."""
    return "'" + name if name.startswith(("=", "+", "-", "@", "\t", "\r")) else name


def _students(batch) -> set[str]:
    return {"honest-1", "honest-2", "honest-02", "blank", *FORMULA_NAMES, MARKUP_NAME} \
        | {f"code-{a.name}" for a in batch["code"]} | {f"file-{n}" for n in batch["files"]} \
        | {f"trusted-{a.name}" for a in batch["trusted"]} | set(batch["planted"])


def test_the_batch_completes_with_a_row_for_everyone(batch):
    students = _students(batch)
    assert set(batch["results"]) == students
    assert set(batch["rows"]) == {_csv_name(s) for s in students}
    # Corrupt files are grading failures, so the exit code says some submission failed.
    assert batch["exit"] == 1


def test_every_output_is_written_in_limited_memory_and_time(batch):
    # the run had MEMORY of address space per process, the grader's own processes included
    out = batch["out"]
    for name in ("grades.csv", "results.json", "report.html", "gradebook.db"):
        assert (out / name).stat().st_size > 0, name
    unread = ("suspicious-file", "unreadable", "wrong-format", "missing-notebook")
    for student in _students(batch):
        result = batch["results"][student]
        assert result["seconds"] < BUDGET + 40, (student, result["seconds"])
        if result["status"] not in unread:
            assert (out / result["feedback"]).is_file(), student


def test_honest_submissions_are_graded_exactly_as_alone(batch):
    alone = {c["grade_id"]: c["score"] for c in batch["alone"]["cells"]}
    tests = [c for c in batch["alone"]["cells"] if c["kind"] == "test"]
    assert all(c["score"] == c["max_score"] for c in tests)
    for name in ("honest-1", "honest-2", *FORMULA_NAMES):
        result = batch["results"][name]
        assert {c["grade_id"]: c["score"] for c in result["cells"]} == alone, name
        assert batch["rows"][_csv_name(name)]["status"] == "ok", name
    assert float(batch["rows"]["blank"]["total"]) == 0
    other = batch["results"]["honest-02"]
    assert other["status"] == "ok"
    assert all(c["score"] == c["max_score"] for c in other["cells"] if c["kind"] == "test")


def test_no_attack_earns_a_point_for_the_attacked_exercise(batch):
    earns = {f"trusted-{a.name}" for a in batch["trusted"] if a.earns_target}
    for student, result in batch["results"].items():
        if student.startswith(("code-", "file-", "trusted-")) and student not in earns:
            cells = [c for c in result["cells"] if c["grade_id"] == "test_softmax"]
            assert all(c["score"] == 0 for c in cells), (student, cells)
            if result["assignment"] == ASSIGNMENT:
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


def test_nothing_was_written_outside_and_no_process_or_folder_is_left(batch):
    assert not (batch["base"] / "pwned.txt").exists()
    assert "pwned" not in (batch["out"] / "grades.csv").read_text()
    # Every process of the batch's sandboxes works in a folder under "work"; none may outlive
    # the batch (other runs on the machine work elsewhere), nor may any of those folders.
    left = []
    for entry in os.scandir("/proc"):
        try:
            if entry.name.isdigit() and os.readlink(f"/proc/{entry.name}/cwd").startswith(
                    batch["work"]):
                left.append(entry.name)
        except OSError:  # ended while we looked, or not ours to read
            continue
    assert left == []
    assert os.listdir(batch["work"]) == []


@pytest.mark.needs_root
def test_fork_bombs_stay_within_the_process_limit(batch):
    # What keeps the machine responsive while bombs and hogs run: each sandbox is its own
    # user, capped by RLIMIT_NPROC (the kernel's limit is the larger, verification's smaller);
    # loops and hogs end at the cell timeout (their statuses are checked above).
    assert 0 < batch["most_processes"] <= max(Limits().max_processes,
                                              VERIFY_LIMITS.max_processes)


# --------------------------------------------------------------------------- the trusted side


def _trusted(batch, name: str) -> tuple[dict, dict]:
    """The result and grades.csv row of a trusted-side attack."""
    return batch["results"][f"trusted-{name}"], batch["rows"][f"trusted-{name}"]


def _page(batch, student: str) -> str:
    return (batch["out"] / batch["results"][student]["feedback"]).read_text(encoding="utf-8")


class _Active(html.parser.HTMLParser):
    """What in a page would run: scripts, event handlers, javascript: URLs, srcdoc."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.found, self._script = [], False

    def handle_starttag(self, tag, attrs):
        self._script = tag == "script"
        for name, value in attrs:
            value = (value or "").strip().lower()
            if attacks.MARKER.lower() in value and (
                    name.startswith("on") or name == "srcdoc"
                    or value.startswith(("javascript:", "vbscript:", "data:text/html"))):
                self.found.append(f"<{tag} {name}={value[:60]!r}>")

    def handle_endtag(self, tag):
        self._script = False

    def handle_data(self, data):
        if self._script and attacks.MARKER in data:
            self.found.append(f"<script>{data[:60]}")


def _active(page: str) -> list[str]:
    parser = _Active()
    parser.feed(page)
    return parser.found


def test_links_fifos_and_hard_links_are_refused(batch):
    words = {"file-symlink-master": "symbolic link", "file-symlink-folder": "symbolic link",
             "file-hardlink": "hard link", "file-fifo": "FIFO"}
    for student, attempt in batch["planted"].items():
        row, result = batch["rows"][student], batch["results"][student]
        assert row["status"] == "suspicious-file", (attempt, row)
        assert words[student] in row["reason"], (attempt, row)
        assert float(row["total"]) == 0, attempt
        assert result["hash"].startswith("refused:"), (attempt, result["hash"])


def test_a_forged_reply_of_dataless_arrays_is_refused(batch):
    result, row = _trusted(batch, "reply-forged-arrays")
    cell = _cell(result, "test_softmax")
    assert cell["score"] == 0
    assert cell["verified"]["error"].startswith("protocol:"), cell
    assert "without its data" in cell["verified"]["error"], cell
    assert "verification-failed" in row["status"]


def test_output_beyond_the_budget_is_cut_and_said(batch):
    result, row = _trusted(batch, "output-flood")
    assert "output-truncated" in row["status"], row
    nb = json.loads((batch["out"] / "autograded" / "trusted-output-flood" / ASSIGNMENT
                     / f"{ASSIGNMENT}.ipynb").read_text())
    flooded = next(c for c in nb["cells"]
                   if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "softmax")
    # 600 outputs of 1 MiB were sent; a few are kept, and the cell says what was cut
    assert len(flooded["outputs"]) <= 8
    assert "cut" in _page(batch, "trusted-output-flood")
    # the failing test after the flood still failed in the kernel: errors are never cut
    assert _cell(result, "test_softmax")["kernel_score"] == 0


def test_a_submission_has_a_total_time_budget(batch):
    result, row = _trusted(batch, "slow-cells")
    # unbounded, its 20 cells of TIMEOUT - 1 s each run 80 s in the kernel and more in
    # verification
    assert result["seconds"] < BUDGET + 40
    assert "timeout" in row["status"], row
    assert f"{BUDGET} s budget" in row["reason"], row


def test_the_symbolic_checker_judges_a_blowup_without_expanding_it(batch):
    result, row = _trusted(batch, "symbolic-blowup")
    cell = _cell(result, "test_nll_beta")
    assert cell["score"] == 0
    # judged wrong, by evaluation at the drawn points, within the judge's time limit (were it
    # not, the error would say "checker:", as tests/test_hardening.py shows)
    assert cell["verified"]["passed"] is False, cell
    assert cell["verified"]["error"] is None, cell
    assert "verification-failed" not in row["status"], row
    assert result["seconds"] < BUDGET + 40


def test_student_text_is_never_read_as_markup_or_math(batch):
    result, _ = _trusted(batch, "forged-diagnosis")
    cell = _cell(result, "test_softmax")
    # the diagnosis is the trusted checker's, never the text of the student's exception
    assert cell["diagnosis"] in (None, "none", "raised"), cell
    assert "$" not in json.dumps([c["diagnosis"] for r in batch["results"].values()
                                  for c in r["cells"]])
    # the report was written, in the first run and in the second one into the same folder
    assert "Grading report" in batch["report"]
    assert batch["again"][0] in (0, 1)
    assert "Grading report" in (batch["out"] / "report.html").read_text(encoding="utf-8")
    # names: neutralised for spreadsheets, escaped for browsers
    for name in FORMULA_NAMES:
        assert batch["rows"][_csv_name(name)]["student"].startswith("'")
    refused = batch["rows"][MARKUP_NAME]
    assert refused["status"] == "suspicious-file", refused
    assert "markup" in refused["reason"], refused
    assert "<img src=x onerror" not in batch["report"]
    assert "&lt;img src=x onerror=alert(1)&gt;" in batch["report"]


def test_feedback_and_formgrader_run_nothing_a_student_wrote(batch):
    from nbconvert import HTMLExporter
    from traitlets.config import PyFileConfigLoader

    student = "trusted-active-content"
    assert _active(_page(batch, student)) == []
    # the formgrader renders the autograded notebook with the config of the output folder
    import nbgrader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(batch["out"])).load_config()
    templates = Path(nbgrader.__file__).parent / "server_extensions" / "formgrader" / "templates"
    config.HTMLExporter.template_name = "formgrade"
    config.HTMLExporter.extra_template_basedirs = [str(templates)]
    autograded = batch["out"] / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    page, _ = HTMLExporter(config=config).from_filename(
        str(autograded), resources={"base_url": "", "student": student, "index": 0, "total": 1})
    assert _active(page) == []
    outputs = [o for c in json.loads(autograded.read_text())["cells"]
               for o in c.get("outputs", [])]
    assert not any("application/javascript" in o.get("data", {}) for o in outputs)


def test_hidden_tests_and_the_seed_stay_hidden(batch):
    student = "trusted-leak-hidden"
    _, row = _trusted(batch, "leak-hidden")
    page = _page(batch, student)
    assert "hidden=True" not in page
    assert str(SEED) not in page
    assert "hidden-exposed" in row["status"], row
    # `In` holds no test cell: they ran without being stored in the kernel's history
    nb = json.loads((batch["out"] / "autograded" / student / ASSIGNMENT
                     / f"{ASSIGNMENT}.ipynb").read_text())
    printed_in = next(c for c in nb["cells"] if "".join(c["source"]) == "print(In)\n")
    text = "".join("".join(o.get("text", "")) for o in printed_in["outputs"])
    assert "def softmax" in text
    assert "hidden=True" not in text
    assert str(SEED) not in json.dumps(nb)
    # a later run without --seed does not reuse this one's
    assert batch["second"]["seed"] != SEED


def test_any_disagreement_with_verification_is_flagged(batch):
    result, row = _trusted(batch, "kernel-only-failure")
    cell = _cell(result, "test_softmax")
    assert cell["kernel_score"] == 0, cell
    assert cell["score"] == cell["max_score"], cell
    assert "tampering-suspected" in row["status"], row
    assert "test_softmax: the notebook's test gave 0/3" in row["reason"], row


def test_the_output_folder_is_private(batch):
    assert stat.S_IMODE(os.stat(batch["out"]).st_mode) == 0o700
