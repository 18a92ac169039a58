"""How long each master notebook takes to run top to bottom (the course promises seconds).

Usage::

    python benchmarks/bench_notebooks.py [--repeats 3] [--idle] [--no-record]

Executes every ``solutions/<id>/<id>.ipynb`` with nbclient in a fresh kernel, as a student's
"Run all" would, and prints the median time of the cells alone and with kernel start-up, and
the share of the 20-second budget the course sets for one notebook. The run is recorded in
``benchmarks/results/notebooks.jsonl`` (see ``_record.py``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import nbformat
from _record import Run, add_arguments
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
BUDGET = 20.0  # seconds for one notebook, top to bottom


def run_once(path: Path) -> tuple[float, float]:
    """(seconds for the cells, seconds including kernel start-up) of one execution."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    t0 = time.perf_counter()
    with client.setup_kernel():
        t1 = time.perf_counter()
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
    t2 = time.perf_counter()
    return t2 - t1, t2 - t0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    add_arguments(parser)
    args = parser.parse_args(argv)
    run = Run("notebooks", args, packages=("nbclient", "ipykernel", "matplotlib", "sympy"))
    timings = {}
    print(f"{'notebook':<22} {'cells':>8} {'with kernel':>12} {'of budget':>10}")
    worst = 0.0
    for path in sorted(ROOT.glob("solutions/*/*.ipynb")):
        runs = [run_once(path) for _ in range(args.repeats)]
        cells = statistics.median(r[0] for r in runs)
        total = statistics.median(r[1] for r in runs)
        worst = max(worst, total)
        timings[path.stem] = {"cells_s": cells, "total_s": total}
        print(f"{path.stem:<22} {cells:7.1f}s {total:11.1f}s {total / BUDGET:10.0%}")
    print(f"\nslowest notebook: {worst:.1f} s of the {BUDGET:.0f} s budget")
    run.save({"budget_s": BUDGET, "repeats": args.repeats, "notebooks": timings})
    return 0 if worst < BUDGET else 1


if __name__ == "__main__":
    sys.exit(main())
