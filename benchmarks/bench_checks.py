"""How long a test cell's check takes: every exercise, visible and hidden, on the model answers.

Usage::

    python benchmarks/bench_checks.py [--idle] [--no-record]

The model answers are the solution cells of the master notebooks in ``solutions/`` (executed
with the notebook's setup cell, without the rest of the narrative). For each exercise it prints
the median time of ``run_check`` with the visible and with the hidden battery, and the share of
the one-second budget a test cell may spend (a check must take well under a second). The run is
recorded in ``benchmarks/results/checks.jsonl`` (see ``_record.py``).
"""

from __future__ import annotations

import argparse
import ast
import json
import statistics
import sys
import time
from pathlib import Path

from _record import Run, add_arguments

from lossutils.checks import get_exercise, run_check

ROOT = Path(__file__).resolve().parents[1]
BUDGET = 1.0  # seconds a check may take


def model_answers() -> dict[str, object]:
    """exercise id -> the master notebook's solution function."""
    found = {}
    for master in sorted(ROOT.glob("solutions/*/*.ipynb")):
        cells = json.loads(master.read_text(encoding="utf-8"))["cells"]
        code = [c for c in cells if c["cell_type"] == "code"]
        namespace: dict = {}
        exec(compile("".join(code[0]["source"]), f"{master.name}:setup", "exec"), namespace)
        for cell in code:
            meta = cell["metadata"].get("nbgrader", {})
            source = "".join(cell["source"])
            if meta.get("solution"):
                exec(compile(source, f"{master.name}:{meta['grade_id']}", "exec"), namespace)
            elif meta.get("grade"):
                for node in ast.walk(ast.parse(source)):
                    if (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "check"
                            and len(node.args) == 2):
                        found[node.args[0].value] = namespace[node.args[1].id]
    return found


def median_time(fn, repeats=5) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    run = Run("checks", parser.parse_args(argv), packages=())
    answers = model_answers()
    timings = {}
    print(f"{'exercise':<34} {'cases':>5} {'visible':>9} {'hidden':>9} {'hidden/budget':>14}")
    worst = 0.0
    for name, fn in answers.items():
        n_cases = len(get_exercise(name).cases(hidden=True, seed=1))
        result = run_check(name, fn, hidden=True, seed=1)
        if not result.passed:
            print(f"{name}: the model answer fails its own check:\n{result.message}")
            return 1
        visible = median_time(lambda name=name, fn=fn: run_check(name, fn))
        hidden = median_time(lambda name=name, fn=fn: run_check(name, fn, hidden=True, seed=1))
        worst = max(worst, visible, hidden)
        timings[name] = {"cases": n_cases, "visible_s": visible, "hidden_s": hidden}
        print(f"{name:<34} {n_cases:>5} {visible * 1e3:7.1f}ms {hidden * 1e3:7.1f}ms "
              f"{hidden / BUDGET:13.1%}")
    share = worst / BUDGET
    median = statistics.median(t["hidden_s"] for t in timings.values())
    print(f"\nslowest check: {worst * 1e3:.0f} ms ({share:.0%} of the {BUDGET:.0f} s budget); "
          f"median with the hidden battery {median * 1e3:.0f} ms")
    run.save({"budget_s": BUDGET, "exercises": timings, "slowest_s": worst, "median_s": median})
    return 0 if worst < BUDGET else 1


if __name__ == "__main__":
    sys.exit(main())
