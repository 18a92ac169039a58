"""Benchmark: a class-sized synthetic run, the coordinator's memory, and a cluster projection.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_scale.py [--n 1000] [--assignment 01-likelihood]
        [--workers W] [--scheduler tcp://HOST:8786] [--timeout 20] [--keep DIR]
        [--idle] [--no-record]

It writes ``--n`` submissions of one assignment, cycling through the demo's sample kinds
(correct, untouched, two realistic mistakes, a kernel that dies, corrupt JSON; not the infinite
loop, which would only measure ``--timeout``), under distinct student ids, and grades them with
``lossutils.grading.run.grade`` on the local pool (or on a Dask cluster with ``--scheduler``).
It reports

- the coordinator's peak resident memory (``VmHWM``) and its resident memory (``VmRSS``) each
  time another tenth of the results has been persisted: flat means streaming works;
- seconds per notebook: wall clock, and worker-seconds (wall clock x workers), the cost one
  worker pays per notebook, start-up and final outputs excluded;
- the coordinator's own time per result (writing the notebook, feedback, gradebook rows and
  ledger row), which bounds how fast any number of workers can be fed;
- a projection for 1,000 students x 6 notebooks on W Dask workers:
  ``T(W) = fixed + 6000 * max(worker_cost / W, coordinator_cost)``.

The run with the default ``--n 1000`` takes a long time on two cores; use ``--n 60`` to try it.
The run is recorded in ``benchmarks/results/scale.jsonl`` (see ``_record.py``), from which
``benchmarks/render.py`` draws the projection of docs/performance.md.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import sys
import tempfile
import time

from _record import Run, add_arguments

KINDS = ("correct", "untouched", "mistake-1", "mistake-2", "kernel-dies", "corrupt-json")
PROJECTED_NOTEBOOKS = 1000 * 6
PROJECTED_WORKERS = (2, 8, 32, 64, 128, 256)


def _status_kb(field: str) -> int:
    """A ``/proc/self/status`` memory field of this process, in kB (Linux only)."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


class _Probe:
    """A progress stream for ``grade``: notes the time and RSS at each progress line.

    Off a terminal, the coordinator's progress bar writes one line per tenth of the
    submissions, ``[###...] done/total ...``; that is when the memory is sampled.
    """

    _DONE = re.compile(r"\] (\d+)/(\d+) ")

    def __init__(self):
        self.samples: list[tuple[int, float, int]] = []  # (results done, time, VmRSS kB)

    def write(self, text: str) -> None:
        found = self._DONE.search(text)
        if found:
            self.samples.append((int(found.group(1)), time.perf_counter(), _status_kb("VmRSS")))

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def build_submissions(source: str, assignment: str, n: int, folder: str) -> str:
    """Write ``n`` submissions in nbgrader's submitted layout; return that folder."""
    from lossutils.grading.samples import generate_samples

    samples = os.path.join(folder, "samples")
    generate_samples(source, samples, [assignment], extras=False, timeout_sample=False)
    submitted = os.path.join(folder, "submitted")
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        shutil.copytree(
            os.path.join(samples, kind, assignment),
            os.path.join(submitted, f"student-{i:05d}-{kind}", assignment),
        )
    return submitted


def _time_persistence(persist, totals: dict) -> None:
    """Wrap the coordinator's persistence (result files, gradebook and ledger batches)."""

    def timed(function):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                totals["persist"] += time.perf_counter() - start

        return wrapper

    persist.write_result_files = timed(persist.write_result_files)
    persist.commit = timed(persist.commit)


def _cluster_threads(address: str) -> int:
    from lossutils.grading.executors.dask import connect

    executor = connect(address)
    try:
        return executor.workers
    finally:
        executor.shutdown()


def main(argv=None) -> int:
    """Run the benchmark and print the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="submissions (default 1000)")
    parser.add_argument("--assignment", help="assignment id (default: the first master)")
    parser.add_argument("--source", default="solutions")
    parser.add_argument("--workers", type=int, default=None, help="default: one per core")
    parser.add_argument("--scheduler", help="grade on this Dask scheduler instead of locally")
    parser.add_argument("--timeout", type=int, default=20, help="seconds per cell (default 20)")
    parser.add_argument("--keep", help="grade into this folder and keep it (default: a temp dir)")
    add_arguments(parser)
    args = parser.parse_args(argv)
    run_record = Run("scale", args, packages=("nbgrader", "distributed"))

    from lossutils.grading import persist, run
    from lossutils.grading.masters import list_masters

    assignment = args.assignment or next(iter(list_masters(args.source)))
    work = tempfile.mkdtemp(prefix="bench-scale-")
    out = args.keep or os.path.join(work, "out")
    totals = {"persist": 0.0}
    _time_persistence(persist, totals)
    probe = _Probe()
    try:
        submitted = build_submissions(args.source, assignment, args.n, work)
        options = {"scheduler": args.scheduler} if args.scheduler else {}
        baseline_kb = _status_kb("VmRSS")
        start = time.perf_counter()
        summary = run.grade(
            submitted,
            out,
            source=args.source,
            workers=args.workers,
            timeout=args.timeout,
            seed=1,
            progress=probe,
            **options,
        )
        wall = time.perf_counter() - start
        peak_kb = _status_kb("VmHWM")
        # the results stream from the ledger in the output folder: read them before it goes
        in_worker = sum(r["seconds"] for r in summary["results"])
        statuses = collections.Counter(r["status"] for r in summary["results"])
        failures = [r for r in summary["results"] if r["status"] == "grader-error"]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    graded = summary["graded"]
    if graded != args.n or summary["interrupted"]:
        print(f"error: graded {graded} of {args.n}", file=sys.stderr)
        return 1
    workers = args.workers or (
        _cluster_threads(args.scheduler) if args.scheduler else os.cpu_count() or 1
    )
    first, last = probe.samples[0], probe.samples[-1]
    drive = last[1] - first[1]  # from the first task out to the last result persisted
    fixed = wall - drive  # masters, gradebook set-up, final CSV/JSON/report
    per_nb_wall = drive / graded
    worker_cost = per_nb_wall * workers
    coordinator_cost = totals["persist"] / graded
    in_worker /= graded

    print(
        f"{graded} submissions of {assignment} on {workers} worker(s)"
        f"{' at ' + args.scheduler if args.scheduler else ' (local pool)'}; "
        f"statuses: {', '.join(f'{n} {s}' for s, n in sorted(statuses.items()))}"
    )
    for r in failures[:5]:
        print(f"  {r['student']}: " + "; ".join(p["detail"] for p in r["problems"]))
    print(f"  wall clock                  {wall:9.1f} s  (fixed part {fixed:.1f} s)")
    print(f"  per notebook, wall clock    {per_nb_wall:9.3f} s")
    print(f"  per notebook, worker cost   {worker_cost:9.3f} s  (wall x workers)")
    print(f"  per notebook, inside worker {in_worker:9.3f} s  (grade_submission's own clock)")
    print(f"  per result, coordinator     {coordinator_cost:9.4f} s  (persist: files, gradebook)")
    print(f"  coordinator RSS before run  {baseline_kb / 1024:9.1f} MB")
    print(f"  coordinator peak RSS        {peak_kb / 1024:9.1f} MB  (VmHWM)")
    print("  coordinator RSS as results arrive (done: MB):")
    print("   " + ", ".join(f"{done}: {kb / 1024:.0f}" for done, _, kb in probe.samples))
    print(
        f"\nprojection: 1,000 students x 6 notebooks = {PROJECTED_NOTEBOOKS} notebooks, "
        f"at {worker_cost:.2f} worker-s each"
    )
    print("| Dask workers (1 thread each) | projected time |")
    print("|---:|---:|")
    for w in PROJECTED_WORKERS:
        seconds = fixed + PROJECTED_NOTEBOOKS * max(worker_cost / w, coordinator_cost)
        print(
            f"| {w} | {seconds / 60:.0f} min |" if seconds >= 120 else f"| {w} | {seconds:.0f} s |"
        )
    run_record.save({
        "assignment": assignment,
        "n": graded,
        "workers": workers,
        "scheduler": bool(args.scheduler),
        "statuses": dict(statuses),
        "wall_s": wall,
        "fixed_s": fixed,
        "per_nb_wall_s": per_nb_wall,
        "worker_cost_s": worker_cost,
        "in_worker_s": in_worker,
        "coordinator_s": coordinator_cost,
        "rss_before_mb": baseline_kb / 1024,
        "rss_mb": [[done, kb / 1024] for done, _, kb in probe.samples],
        "peak_mb": peak_kb / 1024,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
