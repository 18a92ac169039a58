"""Write docs/performance.md from the benchmarks' records (benchmarks/results/*.jsonl).

Usage (from the repository root; ``make perf-doc`` runs the first)::

    python benchmarks/render.py            # rewrite docs/performance.md
    python benchmarks/render.py --check    # exit 1 if docs/performance.md is not up to date

docs/performance.md is the only document with benchmark figures, and it is never edited by
hand: the text around the tables is written here, every figure comes from a record, and a test
checks that the page is what this script renders from the committed records. Tables have one
row per run, oldest first, the newest marked; a run taken on a machine shared with other work
says so in its row.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench_scale import PROJECTED_NOTEBOOKS, PROJECTED_WORKERS

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PAGE = ROOT / "docs" / "performance.md"

LOAD = {"idle": "idle", "shared": "under load", "not recorded": "not recorded"}


# --- records --------------------------------------------------------------------------------

def load_records(folder: Path = RESULTS) -> dict[str, list[dict]]:
    """bench -> its records, in the order of the files."""
    found: dict[str, list[dict]] = {}
    for path in sorted(folder.glob("*.jsonl")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SystemExit(f"{path}:{number}: not a JSON record ({exc})") from None
            found.setdefault(record["bench"], []).append(record)
    return found


def runs(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("kind", "run") == "run"]


def observations(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("kind") == "observation"]


# --- formatting -----------------------------------------------------------------------------

def seconds(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}x"


def milliseconds(value: float | None) -> str:
    return "–" if value is None else f"{value * 1e3:.0f} ms"


def duration(value: float) -> str:
    """Seconds as s, min or h, rounded the way a reader compares them."""
    if value < 120:
        return f"{value:.0f} s"
    if value < 3600:
        return f"{value / 60:.0f} min" if value >= 600 else f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def clock(value: float) -> str:
    """A wall-clock time as minutes and seconds."""
    minutes, secs = divmod(round(value), 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def elements(count: int) -> str:
    """10^k for a power of ten, else the count with thousands separators."""
    power = len(str(count)) - 1
    return f"10^{power}" if count == 10**power else f"{count:,}"


def cell(record: dict, key: str, text: str) -> str:
    """A table cell: the record's own wording where it has one (transcribed prose), else text."""
    return record.get("display", {}).get(key, text)


def run_label(record: dict, index: int, count: int) -> str:
    label = record.get("label") or f"run of {record['date'][:10]}"
    return f"{label} (**newest**)" if index == count - 1 else label


def conditions(record: dict) -> str:
    parts = [LOAD[record["load"]]]
    if record["source"] == "transcribed":
        parts.append("transcribed")
    return ", ".join(parts)


def table(header: list[str], rows: list[list[str]], align: str | None = None, *,
          numbered: bool = False) -> list[str]:
    """A markdown table; ``align`` is one letter per column, l(eft) or r(ight). A numbered
    table (runs, oldest first) starts with the number the notes and conditions refer to."""
    align = align or "l" + "r" * (len(header) - 1)
    if numbered:
        header, align = ["#", *header], "r" + align
        rows = [[str(i), *row] for i, row in enumerate(rows, 1)]
    marks = ["---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(marks) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def observation_list(records: list[dict]) -> list[str]:
    lines = []
    for r in observations(records):
        where = f"transcribed from {r['transcribed_from']}" if r["source"] == "transcribed" else ""
        lines.append(f"- {r['date']}, {LOAD[r['load']]}"
                     f"{', ' + where if where else ''}: {r['text']}")
    return lines


def run_notes(records: list[dict]) -> list[str]:
    lines = []
    for number, r in enumerate(runs(records), 1):
        for note in r.get("notes", []):
            lines.append(f"- run {number}: {note}")
    return lines


def where_list(records: list[dict]) -> list[str]:
    """The conditions of the runs (machine, versions, commit, command, the source of a
    transcription), one line for each set of runs that share them, by their numbers."""
    groups: dict[str, list[int]] = {}
    for number, r in enumerate(runs(records), 1):
        facts = [r.get("machine") or "machine not recorded"]
        if r.get("load_average"):
            before, after = r["load_average"]
            facts.append(f"load average {before} before the run, {after} after")
        if r.get("versions"):
            facts.append(", ".join(f"{k} {v}" for k, v in sorted(r["versions"].items())))
        if r.get("commit"):
            facts.append(f"commit {r['commit']}")
        if r.get("command"):
            facts.append(f"`{r['command']}`")
        if r["source"] == "transcribed":
            facts.append(f"transcribed from {r['transcribed_from']}")
        groups.setdefault("; ".join(facts), []).append(number)
    return [f"- {spans(numbers)}: {facts}" for facts, numbers in groups.items()]


def spans(numbers: list[int]) -> str:
    """[1, 2, 3, 5] -> "runs 1-3, 5"."""
    parts, start = [], numbers[0]
    for previous, current in zip(numbers, [*numbers[1:], None], strict=True):
        if current != previous + 1:
            parts.append(str(start) if start == previous else f"{start}-{previous}")
            start = current
    return ("runs " if len(numbers) > 1 else "run ") + ", ".join(parts)


def section(title: str, intro: str, body: list[str], records: list[dict]) -> list[str]:
    lines = [f"## {title}", "", intro, "", *body]
    notes = run_notes(records)
    if notes:
        lines += ["", "Notes on the runs:", "", *notes]
    seen = observation_list(records)
    if seen:
        lines += ["", "Observations:", "", *seen]
    lines += ["", "Conditions of each run:", "", *where_list(records), ""]
    return lines


# --- the sections ---------------------------------------------------------------------------

def grading(records: list[dict]) -> list[str]:
    rs = runs(records)
    rows = []
    for i, r in enumerate(rs):
        v = r["values"]
        per_core = None
        if v.get("floor_s") and v.get("lossutils_s"):
            per_core = v["lossutils_s"] * v.get("workers", 1) / v["floor_s"]
        stock = seconds(v.get("nbgrader_s"))
        if v.get("nbgrader_loop_s") is not None:
            stock += f" ({seconds(v['nbgrader_loop_s'])})"
        rows.append([
            run_label(r, i, len(rs)), r["date"], cell(r, "n", str(v.get("n", "–"))),
            stock, seconds(v.get("lossutils_s")), cell(r, "floor", seconds(v.get("floor_s"))),
            ratio(v.get("ratio")), ratio(v.get("ratio_loop")), ratio(per_core), conditions(r),
        ])
    body = table(
        ["run", "date", "submissions", "(a) stock nbgrader, s per notebook (autograde loop "
         "alone)", "(b) `lossutils grade`, s per notebook", "(c) floor, s per notebook",
         "**(a) / (b)**", "(a) loop / (b)", "(b) x workers / (c)", "conditions"],
        rows, "llrrrrrrrl", numbered=True,
    )
    intro = (
        "`benchmarks/bench_grading.py --assignment ID --n N` grades the same N submissions "
        "(correct, untouched and mistaken ones in turn) three ways in one run: (a) stock "
        "nbgrader, `generate_assignment` then `autograde` for one student after another, timed "
        "end to end and as its autograde loop alone; (b) `lossutils grade` with one worker per "
        "core, end to end: sandboxed forked kernels, verification outside the kernel, feedback "
        "pages, gradebook and report; (c) the floor, the cells alone executed one notebook "
        "after another in kernels already running. (a) / (b) is the speed-up over stock "
        "nbgrader; (b) x workers / (c) is what the grader costs per core against executing "
        "the cells and nothing else (1.0: no overhead). A dash: not measured in that run."
    )
    return section("Grading", intro, body, records)


def scale(records: list[dict]) -> list[str]:
    rs = runs(records)
    rows = []
    for i, r in enumerate(rs):
        v = r["values"]
        memory = ""
        if v.get("rss_mb"):
            memory = ", ".join(f"{mb:.0f} MB at {done}" for done, mb in v["rss_mb"])
        rows.append([
            run_label(r, i, len(rs)), r["date"],
            cell(r, "submissions", f"{v['n']:,} of `{v['assignment']}`"),
            clock(v["wall_s"]) if v.get("wall_s") else "–",
            seconds(v.get("per_nb_wall_s")), seconds(v.get("worker_cost_s")),
            milliseconds(v.get("coordinator_s")), cell(r, "memory", memory or "–"),
            f"{v['peak_mb']:.0f} MB" if v.get("peak_mb") else "–", conditions(r),
        ])
    body = table(
        ["run", "date", "submissions", "wall clock", "s per notebook, wall",
         "s per notebook, one worker", "coordinator per result",
         "coordinator memory (RSS) as results arrive", "peak (VmHWM)", "conditions"],
        rows, "lllrrrrlrl", numbered=True,
    )
    body += ["", *projection(rs)]
    intro = (
        "`benchmarks/bench_scale.py --n N --assignment ID [--scheduler ADDRESS]` grades N "
        "synthetic submissions, cycling through the demo's sample kinds (correct, untouched, two "
        "mistakes, a kernel that dies, corrupt JSON), and reports the cost per notebook (wall "
        "clock, and worker-seconds: the wall clock times the workers), the coordinator's own "
        "time per result (files, gradebook and ledger rows), and its memory each time another "
        "tenth of the results is persisted: flat means the coordinator streams."
    )
    return section("Grading a class", intro, body, records)


def projection(rs: list[dict]) -> list[str]:
    """T(W) = fixed + notebooks x max(worker cost / W, coordinator cost), from the newest
    class-sized local run on an idle machine (else the newest class-sized run, said so)."""
    usable = [r for r in rs if r["values"].get("worker_cost_s") and r["values"].get("n", 0) >= 100
              and r["values"].get("coordinator_s") and not r["values"].get("scheduler")]
    if not usable:
        return []
    idle = [r for r in usable if r.get("load") == "idle"]
    basis = (idle or usable)[-1]
    v = basis["values"]
    fixed, cost, coordinator = v.get("fixed_s") or 0.0, v["worker_cost_s"], v["coordinator_s"]
    factor = v.get("heavier_factor")
    header = ["Dask workers (one thread each)", "projected time"]
    if factor:
        header.append(f"with cells {factor:g} times as costly")
    rows = []
    for w in PROJECTED_WORKERS:
        row = [str(w), duration(fixed + PROJECTED_NOTEBOOKS * max(cost / w, coordinator))]
        if factor:
            row.append(duration(fixed + PROJECTED_NOTEBOOKS * max(factor * cost / w, coordinator)))
        rows.append(row)
    pace = f"from about {cost / coordinator:.0f} workers"
    if factor:
        pace += f" ({factor * cost / coordinator:.0f} for the costlier notebooks)"
    caveat = "" if basis.get("load") == "idle" else (
        " That run was taken under load: this is not an idle-machine projection."
    )
    return [
        f"**Projection** for 1,000 students x 6 notebooks = {PROJECTED_NOTEBOOKS:,} notebooks on "
        f"W single-threaded Dask workers, from the run of {basis['date']} "
        f"({basis.get('label', '')}): T(W) = {fixed:g} s + {PROJECTED_NOTEBOOKS} x "
        f"max({cost:g} s / W, {coordinator:g} s). The coordinator, not the cluster, sets the "
        f"pace {pace}; it was measured with results arriving one or two at a time, and fuller "
        "batches cost it less, so the projection is an upper bound for large clusters. Run the "
        f"coordinator on a machine of its own with the output folder on a local disk.{caveat}",
        "",
        *table(header, rows),
    ]


WORKLOADS = {  # bench_lossutils' name -> the table's
    "cross_entropy": "cross-entropy",
    "cross_entropy+grad": "cross-entropy + gradient",
    "log_softmax": "log-softmax",
    "kl_divergence": "KL divergence",
    "multiclass_hinge": "multiclass hinge",
    "mse": "MSE",
    "l1": "L1",
}


def reference(records: list[dict]) -> list[str]:
    rs = runs(records)
    rows = []
    for i, r in enumerate(rs):
        v = r["values"]
        versus = [row["torch"] for row in v["rows"] if row.get("torch") is not None]
        largest = max(row["n"] * row["k"] for row in v["rows"])
        overhead = v.get("import_overhead_s")
        if overhead is None and v.get("import_lossutils_s") is not None:
            overhead = v["import_lossutils_s"] - v["import_numpy_s"]
        rows.append([
            run_label(r, i, len(rs)), r["date"], elements(largest),
            f"{ratio(min(versus))} to {ratio(max(versus))}" if versus else "torch not installed",
            f"{v['read_bandwidth_gbs']:.1f} GB/s" if v.get("read_bandwidth_gbs") else "–",
            milliseconds(overhead), conditions(r),
        ])
    body = table(["run", "date", "largest input (elements)",
                  "torch time / lossutils time, all workloads", "read bandwidth, one thread",
                  "`import lossutils` over `import numpy`", "conditions"], rows, "llrrrrl",
                 numbered=True)
    newest = rs[-1]
    largest = max(row["n"] * row["k"] for row in newest["values"]["rows"])
    columns = sorted({(row["k"], row["dtype"]) for row in newest["values"]["rows"]})
    grid = {(row["workload"], row["k"], row["dtype"]): row for row in newest["values"]["rows"]
            if row["n"] * row["k"] == largest}
    detail = []
    for workload in [w for w in WORKLOADS if any(key[0] == w for key in grid)]:
        detail.append([WORKLOADS[workload]] + [ratio(grid.get((workload, k, d), {}).get("torch"))
                                    for k, d in columns])
    under = "" if newest.get("load") == "idle" else " (taken under load)"
    body += [
        "", f"The newest run{under}, inputs of {elements(largest)} elements, torch time / "
        "lossutils time (above 1: lossutils is faster; `make bench` prints every size, scipy and "
        "a naive numpy transcription too):", "",
        *table(["workload", *[f"K = {k}, {d}" for k, d in columns]], detail),
    ]
    intro = (
        "`benchmarks/bench_lossutils.py` times lossutils, torch (CPU build, one thread), scipy "
        "and a plain numpy transcription on N x K inputs (K = 10 and 1000, float32 and "
        "float64), in turn, round by round, so that all see the same load, with every library "
        "pinned to one thread. It also measures the machine's single-thread memory read "
        "bandwidth, which bounds the elementwise losses (MSE, L1), and the import time. The "
        "row-wise losses (softmax family, cross-entropy, entropy and KL, multiclass hinge) work "
        "on cache-sized blocks of rows (`lossutils/_blocks.py`): the max, shift, exp, sum and "
        "log passes find a block in cache instead of streaming the whole array once per pass."
    )
    return section("The reference library", intro, body, records)


def checks(records: list[dict]) -> list[str]:
    rs = runs(records)
    rows = []
    for i, r in enumerate(rs):
        v = r["values"]
        rows.append([
            run_label(r, i, len(rs)), r["date"],
            str(len(v["exercises"])) if v.get("exercises") else "–",
            cell(r, "slowest", milliseconds(v.get("slowest_s"))),
            cell(r, "median", milliseconds(v.get("median_s"))), conditions(r),
        ])
    body = table(["run", "date", "exercises", "slowest check", "median check", "conditions"],
                 rows, "llrrrl", numbered=True)
    intro = (
        "`benchmarks/bench_checks.py` runs every exercise's check, visible and hidden battery, "
        "on the model answers of the master notebooks and takes the median of five calls; a "
        "test cell's check must take well under the one-second budget."
    )
    return section("Checks", intro, body, records)


def notebooks(records: list[dict]) -> list[str]:
    rs = runs(records)
    names = sorted({name for r in rs for name in r["values"]["notebooks"]})
    rows = []
    for i, r in enumerate(rs):
        times = r["values"]["notebooks"]
        rows.append([run_label(r, i, len(rs)), r["date"]]
                    + [f"{times[n]['total_s']:.0f} s" if n in times else "–" for n in names]
                    + [conditions(r)])
    body = table(["run", "date", *[f"`{n}`" for n in names], "conditions"], rows,
                 "ll" + "r" * len(names) + "l", numbered=True)
    intro = (
        "`benchmarks/bench_notebooks.py` executes every master notebook top to bottom with its "
        "figures in a fresh kernel, as a student's \"Run all\" would, and takes the median of "
        "its runs (`--repeats`, three by default); the table gives seconds with the kernel's "
        "start included. The course sets "
        "a budget of twenty seconds per notebook."
    )
    return section("Notebooks", intro, body, records)


SECTIONS = (("grading", grading), ("scale", scale), ("lossutils", reference),
            ("checks", checks), ("notebooks", notebooks))


def render(records: dict[str, list[dict]]) -> str:
    """The whole page, from the records of every benchmark."""
    lines = [
        "# Performance",
        "",
        "<!-- Generated by benchmarks/render.py from benchmarks/results/*.jsonl; do not edit by "
        "hand: run `make perf-doc`. -->",
        "",
        "Every benchmark figure of the project is on this page, and only here: the README and "
        "the guides link to it. Each figure comes from a record that a script under "
        "`benchmarks/` wrote when it ran (`benchmarks/results/<bench>.jsonl`: date, machine, "
        "versions, commit, load and the measured values); `benchmarks/render.py` writes this "
        "page from them, and a test checks that the page is what it renders. Every table keeps "
        "the history: one row per run, oldest first, the newest marked.",
        "",
        "Read the conditions of a row before its figures. *Idle*: nothing else ran on the "
        "machine. *Under load*: the machine was shared with other work, which slows every "
        "measurement and moves ratios from run to run; such a row is not an idle-machine "
        "figure. *Transcribed*: the run was made before the benchmarks wrote records; its "
        "figures were copied once, with the conditions the text stated, from the prose of the "
        "earlier README.md, docs/grading.md, docs/distributed.md, docs/checks.md and "
        "course/README.md when every figure moved to this page.",
        "",
        "To add a run:",
        "",
        "```sh",
        ".venv/bin/python benchmarks/bench_checks.py        # or bench_notebooks, bench_grading,",
        "                                                   # bench_scale, bench_lossutils;",
        "                                                   # --idle on an otherwise idle machine",
        "make perf-doc                                      # rewrite this page from the records",
        "git add benchmarks/results docs/performance.md",
        "```",
        "",
    ]
    for bench, write in SECTIONS:
        if records.get(bench):
            # oldest first; sorted() is stable, so runs of the same date keep the file's order
            lines += write(sorted(records[bench], key=lambda r: r["date"]))
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if docs/performance.md differs from the rendered page")
    args = parser.parse_args(argv)
    page = render(load_records())
    if args.check:
        if not PAGE.exists() or PAGE.read_text(encoding="utf-8") != page:
            print(f"{PAGE.relative_to(ROOT)} is out of date: run `make perf-doc`", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(page, encoding="utf-8")
    print(f"wrote {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
