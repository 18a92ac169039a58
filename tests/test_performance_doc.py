"""docs/performance.md is the one home of benchmark figures, generated from the records.

The page must be exactly what ``benchmarks/render.py`` renders from the committed records in
``benchmarks/results/`` (nobody edits a figure by hand), and no other document may carry a
benchmark figure: they link to the page instead.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
PAGE = ROOT / "docs" / "performance.md"
# Every document a reader meets, except the page itself.
DOCUMENTS = sorted(
    {ROOT / "README.md", ROOT / "SECURITY.md", ROOT / "course" / "README.md"}
    | set((ROOT / "docs").glob("*.md"))
    - {PAGE}
)

# How a benchmark figure reads in this project's prose, and how a limit or a size does not:
# limits are whole seconds ("a 10 s limit", "--timeout 60"), sizes are megabytes of attack
# payload; measurements are ratios, fractions of a second, milliseconds and below, bandwidths,
# worker-seconds, times per notebook, minutes-and-seconds, and timing cells in a table.
FIGURE = re.compile(
    r"\b\d+(?:\.\d+)?x\b"  # a ratio: 3.86x
    r"|\b\d+\.\d+\s?s\b"  # a fraction of a second: 1.10 s
    r"|\b\d+(?:\.\d+)?\s?(?:ms|us|µs|ns)\b"  # milliseconds and below: 32 ms
    r"|\b\d+(?:\.\d+)?\s?[GM]B/s\b"  # a bandwidth: 12.9 GB/s
    r"|\bs per notebook\b|\bworker-seconds\b"
    r"|\b\d+ min \d+ s\b"  # a wall clock: 18 min 20 s
    r"|\|\s*\d+(?:\.\d+)?\s?(?:s|min|h)\s*\|"  # a table cell holding a duration: | 6 s |
    r"|\b(?:about|takes?|took|in under)\s+\d+(?:\.\d+)?\s?(?:s|min|h)\b"  # about 5 s
)


@pytest.fixture(scope="module")
def render():
    """benchmarks/render.py as a module (the benchmarks are scripts, not a package)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield importlib.import_module("render")
    finally:
        sys.path.remove(str(BENCHMARKS))


@pytest.fixture(scope="module")
def record_module():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield importlib.import_module("_record")
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_the_page_is_what_the_committed_records_render(render):
    page = PAGE.read_text(encoding="utf-8")
    rendered = render.render(render.load_records())
    assert page == rendered, (
        "docs/performance.md differs from what benchmarks/render.py renders from "
        "benchmarks/results/*.jsonl: never edit a figure by hand; run `make perf-doc`"
    )


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_other_document_carries_a_benchmark_figure(path):
    text = path.read_text(encoding="utf-8")
    found = [
        f"line {number}: {match.group(0)!r} in {line.strip()[:80]!r}"
        for number, line in enumerate(text.splitlines(), 1)
        for match in FIGURE.finditer(line)
    ]
    assert not found, (
        f"{path.relative_to(ROOT)} carries benchmark figures; they belong in "
        "docs/performance.md (a record under benchmarks/results/), linked from here:\n"
        + "\n".join(found)
    )


@pytest.mark.parametrize("line", [
    "| 40 submissions, run 1 | 5.22 (5.09) | 1.49 | 3.05 | **3.50x** |",
    "graded without a grader error in 18 min 20 s, 1.10 s per notebook on 2 workers",
    "(2.19 worker-seconds); the coordinator's resident memory stayed at 116 MB",
    "| 01 | [likelihood](01-likelihood/01-likelihood.ipynb) | ... | 8 + 5 = 13 | 6 s |",
    "same run (12.9 GB/s); `import lossutils` costs 32 ms more than `import numpy`",
    "Stock nbgrader has almost no fixed cost and 4.8-5.1 s per notebook.",
    "the first submission starts about 5 s after the command",
    "(today the slowest check takes about 0.3 s, the median 0.04 s).",
    "Every check runs in under 0.1 s",
])
def test_the_figure_pattern_finds_figures_as_the_old_documents_wrote_them(line):
    assert FIGURE.search(line), line


@pytest.mark.parametrize("line", [
    "lossutils grade SUBMISSIONS [--timeout 60] [--max-mb 20]",
    "The demo uses a 10 s per-cell limit (the infinite loops cost that much each).",
    "| print-100mb | print 100 MB, return a wrong answer |",
    "| 01 | [likelihood](course/01-likelihood/01-likelihood.ipynb) | ... | 8 + 5 = 13 |",
    "projected for 1,000 students x 6 notebooks on a Dask cluster",
    "stay finite at logits of ±1e4 and probabilities of exactly 0 and 1",
    "the scheduler unreachable (within 10 s), a worker that cannot import the grader",
])
def test_the_figure_pattern_leaves_limits_and_sizes_alone(line):
    assert not FIGURE.search(line), line


def test_every_record_states_its_source_and_conditions(render):
    records = [r for rs in render.load_records().values() for r in rs]
    assert records
    for r in records:
        assert r["source"] in ("measured", "transcribed"), r
        assert r["load"] in ("idle", "shared", "not recorded"), r
        assert re.fullmatch(r"\d{4}-\d{2}(-\d{2}(/\d{2}|T\d{2}:\d{2}Z)?)?", r["date"]), r
        if r["source"] == "transcribed":
            assert r["transcribed_from"], r
        else:
            assert r["machine"], r
            assert r["versions"]["python"], r
            assert len(r["load_average"]) == 2, r


def _runs(*loads):
    return [{"bench": "checks", "date": f"2026-12-0{day}", "source": "measured",
             "machine": "m", "load": load, "values": {"slowest_s": 0.01 * day}}
            for day, load in enumerate(loads, 1)]


def test_rows_run_oldest_first_with_the_newest_marked_and_load_shown(render):
    page = render.render({"checks": list(reversed(_runs("idle", "shared")))})
    rows = [line for line in page.splitlines() if line.startswith("| 1 ") or
            line.startswith("| 2 ")]
    assert len(rows) == 2
    assert "2026-12-01" in rows[0]
    assert "| idle |" in rows[0]
    assert "newest" not in rows[0]
    assert "2026-12-02" in rows[1]
    assert "| under load |" in rows[1]
    assert "**newest**" in rows[1]


def test_a_run_claimed_idle_under_load_is_recorded_as_shared(
        record_module, monkeypatch, tmp_path):
    monkeypatch.setattr(record_module, "RESULTS", tmp_path)
    cores = record_module.os.cpu_count() or 1
    monkeypatch.setattr(record_module.os, "getloadavg", lambda: (2.0 * cores, 0.0, 0.0))
    args = argparse.Namespace(idle=True, no_record=False)
    path = record_module.Run("checks", args, packages=()).save({"slowest_s": 0.01})
    record = json.loads(path.read_text(encoding="utf-8"))
    assert record["load"] == "shared"
    assert record["source"] == "measured"
    assert record["values"] == {"slowest_s": 0.01}

    monkeypatch.setattr(record_module.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    record_module.Run("checks", args, packages=()).save({"slowest_s": 0.02})
    last = json.loads(path.read_text(encoding="utf-8").splitlines()[-1])
    assert last["load"] == "idle"
