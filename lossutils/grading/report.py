"""The coordinator's outputs for people and programs: grades.csv, results.json, report.html.

All three are rebuilt from the ledger at the end of every run, so a resumed run reports every
submission, not just the ones graded last. Names, reasons and messages are the students'
choice: the report escapes them, grades.csv neutralises what a spreadsheet would run as a
formula, and the figures show only exercise ids and diagnosis ids (never parsed as math),
so that no submission can keep the outputs from being written.
"""

from __future__ import annotations

import collections
import csv
import html
import itertools
import json
import os
import re

__all__ = ["spreadsheet_safe", "student_rows", "write_outputs"]

# A check or diagnosis id as the checkers write them; anything else in a ledger (written by an
# older grader from a kernel's output) is not counted.
_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")


def spreadsheet_safe(value):
    """A CSV cell that no spreadsheet reads as a formula: text starting with ``=``, ``+``,
    ``-``, ``@``, a tab or a carriage return gets a leading apostrophe.

    Examples
    --------
    >>> spreadsheet_safe("=1+2"), spreadsheet_safe("ada"), spreadsheet_safe("3")
    ("'=1+2", 'ada', '3')
    """
    if isinstance(value, str) and value.startswith(("=", "+", "-", "@", "\t", "\r")):
        return "'" + value
    return value


def student_rows(results: list[dict], assignments: list[str]) -> list[dict]:
    """One row per student: the autograded score per assignment, total, status and reason.

    Parameters
    ----------
    results : list of dict
        Light results (one per graded notebook).
    assignments : list of str
        Column order.

    Returns
    -------
    list of dict
        Keys ``student``, each assignment id, ``total``, ``max_total``, ``status`` (``ok`` or
        the problem codes, comma separated) and ``reason`` (what happened, per assignment).

    Examples
    --------
    >>> r = {"student": "ada", "assignment": "a1", "notebook": "a1", "score": 2.0,
    ...      "max_score": 3.0, "status": "ok", "problems": [], "cells": []}
    >>> row = student_rows([r], ["a1", "a2"])[0]
    >>> row["a1"], row["a2"], row["total"], row["status"]
    ('2', '', '2', 'ok')
    """
    ordered = sorted(results, key=lambda r: r["student"])
    return list(_rows(ordered, assignments))


def _rows(results, assignments: list[str]):
    """:func:`student_rows` for results ordered by student, one row at a time."""
    for student, mine in itertools.groupby(results, key=lambda r: r["student"]):
        mine = list(mine)  # one student's notebooks
        row = {"student": student}
        total = maximum = 0.0
        codes, reasons = [], []
        for assignment in assignments:
            got = [r for r in mine if r["assignment"] == assignment]
            if not got:
                row[assignment] = ""
                continue
            score = sum(r["score"] for r in got)
            total += score
            maximum += sum(r["max_score"] for r in got)
            row[assignment] = f"{score:g}"
            for r in got:
                for problem in r["problems"]:
                    if problem["code"] not in codes:
                        codes.append(problem["code"])
                    reasons.append(f"{assignment}: {problem['detail']}")
        row.update(
            total=f"{total:g}",
            max_total=f"{maximum:g}",
            status=",".join(codes) or "ok",
            reason="; ".join(reasons),
        )
        yield row


class _Totals:
    """What the report shows of the whole class, gathered in one pass over the results.

    The results come ordered by student, so students are counted, not remembered.
    """

    def __init__(self):
        self.notebooks = self.students = 0
        self._last = None
        self.statuses = collections.Counter()
        # per exercise: how many submissions earned full, part or no points
        self.per_exercise = collections.OrderedDict()
        self.diagnoses = collections.Counter()

    def add(self, r: dict) -> None:
        self.notebooks += 1
        if r["student"] != self._last:
            self.students += 1
            self._last = r["student"]
        self.statuses[r["status"]] += 1
        for cell in r["cells"]:
            if cell["kind"] == "test":
                bucket = self.per_exercise.setdefault(
                    f"{r['assignment']}/{cell['grade_id']}", [0, 0, 0]
                )
                score = cell["score"] or 0.0
                bucket[0 if score >= cell["max_score"] else 2 if score == 0 else 1] += 1
            check, diagnosis = cell.get("check"), cell.get("diagnosis")
            if diagnosis not in (None, "none") and all(
                    isinstance(v, str) and _ID.match(v) for v in (check, diagnosis)):
                self.diagnoses[(check, diagnosis)] += 1


def _plots(out: str, totals: _Totals) -> dict[str, str]:
    """Draw the report's figures as PNG files; return their names relative to ``out``.

    Drawn on Agg canvases of their own, without pyplot: a caller's matplotlib backend and
    open figures (``grade()`` run from a notebook) stay as they were.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    def new_axes(rows: int):
        fig = Figure(figsize=(8, 0.35 * rows + 1.2))
        FigureCanvasAgg(fig)
        return fig, fig.add_subplot()

    def label_rows(ax, labels):
        # ids, shown as written: a $ in one is a dollar sign, not math text
        ax.set_yticks(range(len(labels)), labels=labels, parse_math=False)

    made = {}
    per_exercise = totals.per_exercise
    if per_exercise:
        names = list(per_exercise)
        counts = list(zip(*per_exercise.values(), strict=True))
        fig, ax = new_axes(len(names))
        left = [0] * len(names)
        for values, label, color in zip(
            counts,
            ("full marks", "partial", "zero"),
            ("#4c9a2a", "#e0a100", "#c0392b"),
            strict=True,
        ):
            ax.barh(range(len(names)), values, left=left, label=label, color=color)
            left = [a + b for a, b in zip(left, values, strict=True)]
        label_rows(ax, names)
        ax.invert_yaxis()
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("submissions")
        ax.set_title("Score per exercise")
        ax.legend(loc="lower right", fontsize="small")
        fig.tight_layout()
        fig.savefig(os.path.join(out, "report-exercises.png"), dpi=90)
        fig.clear()  # its artists go now, not whenever the figure's reference cycle is collected
        made["exercises"] = "report-exercises.png"
    if totals.diagnoses:
        top = totals.diagnoses.most_common(12)
        fig, ax = new_axes(len(top))
        ax.barh(range(len(top)), [n for _, n in top], color="#5b6abf")
        label_rows(ax, [f"{c}: {d}" for (c, d), _ in top])
        ax.invert_yaxis()
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("submissions")
        ax.set_title("Most frequent diagnoses from the checks")
        fig.tight_layout()
        fig.savefig(os.path.join(out, "report-diagnoses.png"), dpi=90)
        fig.clear()  # its artists go now, not whenever the figure's reference cycle is collected
        made["diagnoses"] = "report-diagnoses.png"
    return made


def _table(header: list[str], rows) -> str:
    return "".join(_table_parts(header, rows))


def _table_parts(header: list[str], rows):
    """An HTML table, piece by piece, so a class-sized table is written as it is made."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    yield f"<table><thead><tr>{head}</tr></thead><tbody>"
    for row in rows:
        yield "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
    yield "</tbody></table>"


def _report_html(results, assignments: list[str], totals: _Totals, plots: dict[str, str],
                 run: dict):
    """The report page, piece by piece; ``results`` is iterated twice."""
    yield (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Grading report</title><style>"
        "body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
        "padding:.2em .5em;text-align:left}th{background:#eee}</style></head><body>\n"
    )
    yield "<h1>Grading report</h1>\n"
    yield (
        f"<p>{totals.students} students, {totals.notebooks} notebooks; seed "
        f"<code>{run['seed']}</code>; per-cell time limit {run['timeout']} s.</p>\n"
    )
    yield _table(["status", "notebooks"], sorted(totals.statuses.items())) + "\n"
    yield "<h2>Scores per exercise</h2>\n"
    if "exercises" in plots:
        yield f"<img src='{plots['exercises']}' alt='score per exercise'>\n"
    yield "<h2>Most frequent diagnoses</h2>\n"
    if "diagnoses" in plots:
        yield f"<img src='{plots['diagnoses']}' alt='most frequent diagnoses'>\n"
        yield _table(
            ["check", "diagnosis", "submissions"],
            [[c, d, n] for (c, d), n in totals.diagnoses.most_common()],
        ) + "\n"
    else:
        yield "<p>No check recognised a specific mistake.</p>\n"
    yield "<h2>Zeros and losses that are not wrong answers</h2>\n"
    problems = (
        [r["student"], r["assignment"], f"{r['score']:g} / {r['max_score']:g}", p["code"],
         p["detail"]]
        for r in results
        for p in r["problems"]
    )
    if sum(totals.statuses.values()) - totals.statuses.get("ok", 0):
        yield from _table_parts(["student", "assignment", "score", "reason", "detail"], problems)
        yield "\n"
    else:
        yield "<p>None: every submission ran to the end.</p>\n"
    yield "<h2>Grades</h2>\n"
    yield from _table_parts(
        ["student", *assignments, "total", "max", "status"],
        (
            [r["student"], *[r[a] for a in assignments], r["total"], r["max_total"], r["status"]]
            for r in _rows(results, assignments)
        ),
    )
    yield "\n</body></html>"


def write_outputs(out: str, results, masters: dict, run: dict) -> dict[str, str]:
    """Write ``grades.csv``, ``results.json`` and ``report.html`` (with PNGs) into ``out``.

    The results are streamed: read a few times over, never held all at once, so writing the
    outputs of a class of any size takes about the memory of one submission's result.

    Parameters
    ----------
    out : str
        The output folder.
    results : iterable of dict
        Light results of every submission in this output folder, iterable more than once
        (a list, or the :class:`~lossutils.grading.state.LedgerResults` of a run, which come
        ordered by student).
    masters : dict
        Assignment id to master info (for the column order).
    run : dict
        Run metadata recorded in ``results.json`` (seed, times, counts, notes).

    Returns
    -------
    dict
        Paths of ``grades_csv``, ``results_json`` and ``report_html``.
    """
    if isinstance(results, list):
        results = sorted(results, key=lambda r: (r["student"], r["assignment"], r["notebook"]))
    assignments = sorted(masters)
    paths = {
        "grades_csv": os.path.join(out, "grades.csv"),
        "results_json": os.path.join(out, "results.json"),
        "report_html": os.path.join(out, "report.html"),
    }
    totals = _Totals()
    with open(paths["results_json"], "w", encoding="utf-8") as fh:
        fh.write('{"run": ' + json.dumps(run, indent=1, sort_keys=True) + ',\n"submissions": [')
        for i, result in enumerate(results):
            totals.add(result)
            fh.write((",\n" if i else "\n") + json.dumps(result, indent=1, sort_keys=True))
        fh.write("\n]}\n")
    with open(paths["grades_csv"], "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(
            fh, ["student", *assignments, "total", "max_total", "status", "reason"]
        )
        writer.writeheader()
        writer.writerows({k: spreadsheet_safe(v) for k, v in row.items()}
                         for row in _rows(results, assignments))
    plots = _plots(out, totals)
    with open(paths["report_html"], "w", encoding="utf-8") as fh:
        fh.writelines(_report_html(results, assignments, totals, plots, run))
    return paths
