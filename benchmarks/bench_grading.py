"""Benchmark: `lossutils grade` against stock nbgrader, and the floor, on the same notebooks.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_grading.py [--n 60] [--assignment 03-cross-entropy]
                                                  [--workers N] [--skip-nbgrader] [--skip-floor]
                                                  [--idle] [--no-record]

It builds ``--n`` submissions of one assignment from the sample generator (correct, untouched and
mistaken ones in turn, under distinct student ids), then times, in one run:

(a) stock nbgrader: ``generate_assignment`` (which creates the gradebook), then
    ``NbGraderAPI.autograde`` for one student after another, as the formgrader and
    ``nbgrader autograde`` do; timed end to end like (b), and also the autograde loop alone;
(b) ``lossutils grade`` with its default worker pool (one per core), end to end: start-up,
    masters, every submission, every output;
(c) the floor: nbclient executing the same notebooks one after another, each in a kernel that
    is already running (start-up and shut-down are not timed): the cells alone.

It prints seconds per notebook (wall clock) for each and the ratios a/b and b/c, and records
the run in ``benchmarks/results/grading.jsonl`` (see ``_record.py``). Figures taken on a machine
shared with other work are recorded as such; for the record of an idle machine run it with
``--idle`` when nothing else runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

from _record import Run, add_arguments

KINDS = ("correct", "untouched", "mistake-1", "mistake-2")
_STOCK_ALEMBIC_VERSION = None  # nbgrader's own, saved before lossutils replaces it


def build_submissions(source: str, assignment: str, n: int, folder: str) -> list[str]:
    """Write ``n`` submissions in nbgrader's submitted layout; return the student ids."""
    from lossutils.grading.samples import generate_samples

    samples = os.path.join(folder, "samples")
    generate_samples(source, samples, [assignment], extras=False, timeout_sample=False)
    kinds = [k for k in KINDS if os.path.isdir(os.path.join(samples, k))]
    students = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        student = f"student-{i:04d}-{kind}"
        shutil.copytree(
            os.path.join(samples, kind, assignment),
            os.path.join(folder, "submitted", student, assignment),
        )
        students.append(student)
    return students


def time_nbgrader(source: str, assignment: str, folder: str,
                  students: list[str]) -> tuple[float, float]:
    """Stock nbgrader: generate the assignment, then autograde each student in turn.

    Returns the time end to end and the time of the autograde loop alone.
    """
    start = time.perf_counter()
    import nbgrader.api
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config

    # stock means stock: undo the in-process schema lookup `lossutils grade` installed
    nbgrader.api.get_alembic_version = _STOCK_ALEMBIC_VERSION

    root = os.path.join(folder, "nbgrader-course")
    os.makedirs(root)
    shutil.copytree(os.path.join(source, assignment), os.path.join(root, "source", assignment))
    shutil.copytree(os.path.join(folder, "submitted"), os.path.join(root, "submitted"))
    config = Config()
    config.CourseDirectory.root = root
    config.CourseDirectory.db_url = "sqlite:///" + os.path.join(root, "gradebook.db")
    config.CourseDirectory.course_id = "lossutils"
    config.Execute.timeout = 60
    api = NbGraderAPI(CourseDirectory(config=config), config=config)
    made = api.generate_assignment(assignment)
    if not made["success"]:
        raise RuntimeError(made.get("error", made.get("log")))
    loop = time.perf_counter()
    for student in students:
        done = api.autograde(assignment, student, force=True, create=True)
        if not done["success"]:
            raise RuntimeError(f"nbgrader failed on {student}: {done.get('error')}")
    end = time.perf_counter()
    return end - start, end - loop


def time_lossutils(source: str, folder: str, workers: int | None) -> float:
    """`lossutils grade` end to end, as the command runs it (masters, pool, every output)."""
    from lossutils.grading.run import grade

    start = time.perf_counter()
    summary = grade(
        os.path.join(folder, "submitted"),
        os.path.join(folder, "lossutils-out"),
        source=source,
        workers=workers,
        timeout=60,
        seed=1,
        progress=False,
    )
    elapsed = time.perf_counter() - start
    bad = [r for r in summary["results"] if r["status"] != "ok"]
    if bad:
        raise RuntimeError(f"lossutils grade did not grade cleanly: {bad[0]['problems']}")
    return elapsed


def time_floor(folder: str, students: list[str], assignment: str) -> float:
    """The cells alone: nbclient runs each notebook in a kernel that is already running.

    Every notebook gets its own kernel (started, and shut down, outside the timed part), so
    this is the cost of executing the cells and nothing else: no kernel start-up, no reading,
    sanitising, scoring, database or feedback work.
    """
    import nbformat
    from nbclient import NotebookClient

    total = 0.0
    for student in students:
        path = os.path.join(folder, "submitted", student, assignment, assignment + ".ipynb")
        nb = nbformat.read(path, as_version=4)
        client = NotebookClient(
            nb,
            timeout=60,
            allow_errors=True,
            resources={"metadata": {"path": os.path.dirname(path)}},
        )
        with client.setup_kernel(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
            start = time.perf_counter()
            for index, cell in enumerate(nb.cells):
                client.execute_cell(cell, index)
            total += time.perf_counter() - start
    return total


def main(argv=None) -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60, help="submissions (default 60)")
    parser.add_argument("--assignment", help="assignment id (default: the first master)")
    parser.add_argument("--source", default="solutions")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument(
        "--skip-nbgrader", action="store_true", help="skip the (slow) stock nbgrader measurement"
    )
    parser.add_argument(
        "--skip-floor", action="store_true",
        help="skip the floor (c), e.g. for a class-sized run where (a) against (b) is the point",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    run = Run("grading", args, packages=("nbgrader", "nbclient", "jupyter_client", "ipykernel",
                                          "matplotlib"))

    global _STOCK_ALEMBIC_VERSION
    import nbgrader.api

    _STOCK_ALEMBIC_VERSION = nbgrader.api.get_alembic_version

    import lossutils.grading  # noqa: F401 - same import-time set-up as the grader itself
    from lossutils.grading.masters import list_masters

    assignment = args.assignment or next(iter(list_masters(args.source)))
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as folder:
        students = build_submissions(args.source, assignment, args.n, folder)
        print(
            f"{args.n} submissions of {assignment}; {cores} cores; workers {args.workers or cores}",
            flush=True,
        )
        timings = {}
        if not args.skip_floor:
            floor = time_floor(folder, students, assignment)
            timings["floor (cells alone, sequential)"] = floor
            print(f"  floor done: {floor:.1f} s", flush=True)
        timings["lossutils grade"] = time_lossutils(args.source, folder, args.workers)
        print(f"  lossutils done: {timings['lossutils grade']:.1f} s", flush=True)
        if not args.skip_nbgrader:
            whole, loop = time_nbgrader(args.source, assignment, folder, students)
            timings["nbgrader, sequential, end to end"] = whole
            timings["  of which the autograde loop"] = loop
    print(f"\n{'method':<34} {'total s':>8} {'s/notebook':>11}")
    for name, seconds in timings.items():
        print(f"{name:<34} {seconds:8.1f} {seconds / args.n:11.3f}")
    ours = timings["lossutils grade"]
    values = {
        "assignment": assignment,
        "n": args.n,
        "cores": cores,
        "workers": args.workers or cores,
        "lossutils_s": ours / args.n,
        "nbgrader_s": None,
        "nbgrader_loop_s": None,
        "floor_s": None,
        "ratio": None,
        "ratio_loop": None,
    }
    if "nbgrader, sequential, end to end" in timings:
        values["nbgrader_s"] = timings["nbgrader, sequential, end to end"] / args.n
        values["nbgrader_loop_s"] = timings["  of which the autograde loop"] / args.n
        values["ratio"] = timings["nbgrader, sequential, end to end"] / ours
        values["ratio_loop"] = timings["  of which the autograde loop"] / ours
        print(
            f"\nspeed-up over sequential nbgrader: "
            f"{timings['nbgrader, sequential, end to end'] / ours:.2f}x end to end, "
            f"{timings['  of which the autograde loop'] / ours:.2f}x over its autograde loop alone"
        )
    if "floor (cells alone, sequential)" in timings:
        floor = timings["floor (cells alone, sequential)"]
        print(
            f"lossutils per core vs the sequential floor: {ours * cores / floor:.2f}x "
            "(1.0 = no overhead beyond executing the cells)"
        )
        values["floor_s"] = floor / args.n
    run.save(values)
    return 0


if __name__ == "__main__":
    sys.exit(main())
