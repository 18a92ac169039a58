"""The coordinator's outputs for people and programs: grades.csv, results.json, report.html.

All three are rebuilt from the ledger at the end of every run, so a resumed run reports every
submission, not just the ones graded last.
"""

from __future__ import annotations

import collections
import csv
import html
import json
import os

__all__ = ["student_rows", "write_outputs"]


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
    by_student = collections.defaultdict(list)
    for result in results:
        by_student[result["student"]].append(result)
    rows = []
    for student in sorted(by_student):
        mine = by_student[student]
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
        rows.append(row)
    return rows


def _plots(out: str, results: list[dict]) -> dict[str, str]:
    """Draw the report's figures as PNG files; return their names relative to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    made = {}
    # score distribution per exercise: how many submissions earned full, part or no points
    per_exercise = collections.OrderedDict()
    for r in results:
        for cell in r["cells"]:
            if cell["kind"] != "test":
                continue
            bucket = per_exercise.setdefault(f"{r['assignment']}/{cell['grade_id']}", [0, 0, 0])
            score = cell["score"] or 0.0
            bucket[0 if score >= cell["max_score"] else 2 if score == 0 else 1] += 1
    if per_exercise:
        names = list(per_exercise)
        counts = list(zip(*per_exercise.values(), strict=True))
        fig, ax = plt.subplots(figsize=(8, 0.35 * len(names) + 1.2))
        left = [0] * len(names)
        for values, label, color in zip(
            counts,
            ("full marks", "partial", "zero"),
            ("#4c9a2a", "#e0a100", "#c0392b"),
            strict=True,
        ):
            ax.barh(names, values, left=left, label=label, color=color)
            left = [a + b for a, b in zip(left, values, strict=True)]
        ax.invert_yaxis()
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("submissions")
        ax.set_title("Score per exercise")
        ax.legend(loc="lower right", fontsize="small")
        fig.tight_layout()
        fig.savefig(os.path.join(out, "report-exercises.png"), dpi=90)
        plt.close(fig)
        made["exercises"] = "report-exercises.png"
    diagnoses = _diagnoses(results)
    if diagnoses:
        top = diagnoses.most_common(12)
        fig, ax = plt.subplots(figsize=(8, 0.35 * len(top) + 1.2))
        ax.barh([f"{c}: {d}" for (c, d), _ in top], [n for _, n in top], color="#5b6abf")
        ax.invert_yaxis()
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("submissions")
        ax.set_title("Most frequent diagnoses from the checks")
        fig.tight_layout()
        fig.savefig(os.path.join(out, "report-diagnoses.png"), dpi=90)
        plt.close(fig)
        made["diagnoses"] = "report-diagnoses.png"
    return made


def _diagnoses(results: list[dict]) -> collections.Counter:
    counter = collections.Counter()
    for r in results:
        for cell in r["cells"]:
            if cell["check"] is not None and cell["diagnosis"] not in (None, "none"):
                counter[(cell["check"], cell["diagnosis"])] += 1
    return counter


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _report_html(
    results: list[dict], rows: list[dict], assignments: list[str], plots: dict[str, str], run: dict
) -> str:
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Grading report</title><style>"
        "body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
        "padding:.2em .5em;text-align:left}th{background:#eee}</style></head><body>",
        "<h1>Grading report</h1>",
        f"<p>{len(rows)} students, {len(results)} notebooks; seed "
        f"<code>{run['seed']}</code>; per-cell time limit {run['timeout']} s.</p>",
    ]
    by_status = collections.Counter(r["status"] for r in results)
    parts.append(_table(["status", "notebooks"], sorted(by_status.items())))
    parts.append("<h2>Scores per exercise</h2>")
    if "exercises" in plots:
        parts.append(f"<img src='{plots['exercises']}' alt='score per exercise'>")
    parts.append("<h2>Most frequent diagnoses</h2>")
    diagnoses = _diagnoses(results)
    if "diagnoses" in plots:
        parts.append(f"<img src='{plots['diagnoses']}' alt='most frequent diagnoses'>")
        parts.append(
            _table(
                ["check", "diagnosis", "submissions"],
                [[c, d, n] for (c, d), n in diagnoses.most_common()],
            )
        )
    else:
        parts.append("<p>No check recognised a specific mistake.</p>")
    parts.append("<h2>Zeros and losses that are not wrong answers</h2>")
    problems = [
        [
            r["student"],
            r["assignment"],
            f"{r['score']:g} / {r['max_score']:g}",
            p["code"],
            p["detail"],
        ]
        for r in results
        for p in r["problems"]
    ]
    parts.append(
        _table(["student", "assignment", "score", "reason", "detail"], problems)
        if problems
        else "<p>None: every submission ran to the end.</p>"
    )
    parts.append("<h2>Grades</h2>")
    parts.append(
        _table(
            ["student", *assignments, "total", "max", "status"],
            [
                [
                    r["student"],
                    *[r[a] for a in assignments],
                    r["total"],
                    r["max_total"],
                    r["status"],
                ]
                for r in rows
            ],
        )
    )
    parts.append("</body></html>")
    return "\n".join(parts)


def write_outputs(out: str, results: list[dict], masters: dict, run: dict) -> dict[str, str]:
    """Write ``grades.csv``, ``results.json`` and ``report.html`` (with PNGs) into ``out``.

    Parameters
    ----------
    out : str
        The output folder.
    results : list of dict
        Light results of every submission in this output folder.
    masters : dict
        Assignment id to master info (for the column order).
    run : dict
        Run metadata recorded in ``results.json`` (seed, times, counts, notes).

    Returns
    -------
    dict
        Paths of ``grades_csv``, ``results_json`` and ``report_html``.
    """
    assignments = sorted(masters)
    rows = student_rows(results, assignments)
    paths = {
        "grades_csv": os.path.join(out, "grades.csv"),
        "results_json": os.path.join(out, "results.json"),
        "report_html": os.path.join(out, "report.html"),
    }
    with open(paths["grades_csv"], "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(
            fh, ["student", *assignments, "total", "max_total", "status", "reason"]
        )
        writer.writeheader()
        writer.writerows(rows)
    with open(paths["results_json"], "w", encoding="utf-8") as fh:
        json.dump({"run": run, "submissions": results}, fh, indent=1, sort_keys=True)
    plots = _plots(out, results)
    with open(paths["report_html"], "w", encoding="utf-8") as fh:
        fh.write(_report_html(results, rows, assignments, plots, run))
    return paths
