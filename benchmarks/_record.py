"""The machine-readable output of the benchmarks: one JSON record per run.

Every script under ``benchmarks/`` appends a record of its run to
``benchmarks/results/<bench>.jsonl`` (``--no-record`` to skip it), and ``benchmarks/render.py``
writes ``docs/performance.md`` from all the records. A record says when and where it was
measured (date, machine, versions, commit) and under what load, so that a figure is never
shown without the conditions it was measured in.

Load: a run counts as taken on an idle machine only when whoever starts it says so
(``--idle``) *and* the one-minute load average before it is below a quarter of the cores;
otherwise it is recorded as ``shared`` and shown as taken under load.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
IDLE_LOAD_PER_CORE = 0.25  # a one-minute load average above this share of the cores is load


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every benchmark shares: where its record goes and the load it ran under."""
    parser.add_argument(
        "--idle", action="store_true",
        help="the machine runs nothing else: record the run as taken on an idle machine "
        "(refused if the load average says otherwise)",
    )
    parser.add_argument(
        "--no-record", action="store_true",
        help=f"do not append this run to {RESULTS.relative_to(ROOT)}/<bench>.jsonl",
    )


class Run:
    """The conditions of one benchmark run, noted at its start; :meth:`save` writes its record."""

    def __init__(self, bench: str, args: argparse.Namespace, packages: tuple[str, ...]):
        self.bench = bench
        self.args = args
        self.packages = ("numpy", *packages)
        self.started = datetime.datetime.now(datetime.UTC)
        self.load_before = _load_average()
        self.commit = _commit()  # the code measured: the tree may change while a run lasts

    def save(self, values: dict, notes: list[str] | None = None) -> Path | None:
        """Append the record of this run to ``benchmarks/results/<bench>.jsonl``."""
        if self.args.no_record:
            return None
        cores = os.cpu_count() or 1
        load = "shared"
        if self.args.idle:
            if self.load_before is not None and self.load_before < IDLE_LOAD_PER_CORE * cores:
                load = "idle"
            else:
                print(
                    f"note: --idle given, but the load average was {self.load_before} on "
                    f"{cores} cores before the run: recorded as taken under load",
                    file=sys.stderr,
                )
        record = {
            "bench": self.bench,
            "date": self.started.strftime("%Y-%m-%dT%H:%MZ"),
            "source": "measured",
            "machine": machine(),
            "load": load,
            "load_average": [self.load_before, _load_average()],
            "versions": versions(self.packages),
            "commit": self.commit,
            "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
            "values": values,
            "notes": notes or [],
        }
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{self.bench}.jsonl"
        with path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
        print(f"recorded in {path}; `make perf-doc` renders docs/performance.md from it")
        return path


def machine() -> str:
    """CPU model, cores and vector extensions, and the operating system, in one line."""
    model, flags = platform.processor() or "unknown CPU", set()
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
        for line in cpuinfo.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:  # not Linux
        pass
    vector = ["AVX2" if "avx2" in flags else "no AVX2",
              "AVX-512" if "avx512f" in flags else "no AVX-512"] if flags else []
    return ", ".join([f"{os.cpu_count()}-core {model}", *vector, platform.system()])


def versions(packages: tuple[str, ...]) -> dict[str, str]:
    """Python's version and those of the given distributions (absent ones are left out)."""
    found = {"python": platform.python_version()}
    for name in ("lossutils", *packages):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def _commit() -> str | None:
    """The repository's commit, with ``+changes`` if the work tree differs from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout.strip()
        # the records and the page made from them change with every run: not the code measured
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
             ":!benchmarks/results", ":!docs/performance.md"],
            cwd=ROOT, check=True, capture_output=True, text=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):  # no git, or not a clone
        return None
    return head + ("+changes" if dirty.strip() else "")


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # not available on this platform
        return None
