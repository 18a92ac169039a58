"""PrairieLearn: an external grader for a question whose answer is a course notebook.

PrairieLearn (docs "External Grading") mounts the job in ``/grade``: the student's files in
``/grade/student/``, the question's ``tests/`` folder in ``/grade/tests/``, and expects
``/grade/results/results.json`` (the folder is not created for you) with

* ``gradable``: false when the submission is not a notebook at all: no points are given or
  lost and the attempt is not counted; ``format_errors`` then says why;
* ``score`` in [0, 1]: autograded points over autograded points possible;
* ``message``: a summary; ``tests``: one per exercise with ``name``, ``description``,
  ``points``, ``max_points``, ``message`` (the verdict) and ``output`` (what the checks of the
  student's own copy said).

PrairieLearn shows all of it at once, so hidden checks reach the student only as points and
a verdict: the text comes from a run without hidden checks or from the checks' catalogue
(see :mod:`lossutils.platforms._single`). The documented size limit of the file is 1 MB
(it was 100 KiB in older PrairieLearn versions); the results are kept under 100 KB whatever
the student printed.

Run as ``python -m lossutils.platforms.prairielearn`` or ``lossutils prairielearn``; the
masters are read from ``/grade/tests/<assignment>/<notebook>.ipynb`` (copy the assignment's
folder from ``solutions/`` into the question's ``tests/``). Guide: docs/platforms.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback

from ._single import Outcome, grade_notebook

__all__ = ["MAX_BYTES", "fit", "main", "prairielearn_results", "run"]

DEFAULT_ROOT = "/grade"
#: Largest results.json written, in bytes (UTF-8).
MAX_BYTES = 100_000


def prairielearn_results(outcome: Outcome) -> dict:
    """The ``results.json`` PrairieLearn reads, from a graded notebook."""
    if outcome.status == "grader-error":  # our failure: the student keeps the attempt
        return {
            "gradable": False,
            "format_errors": ["the grader itself failed on this notebook; tell your instructor"],
            "message": "The grader itself failed on this notebook, so this attempt does not "
                       "count. Please tell your instructor.",
        }
    if not outcome.gradable:
        errors = outcome.messages or [outcome.status]
        return {
            "gradable": False,
            "format_errors": errors,
            "message": "Your file could not be graded as a notebook: " + errors[0]
            + " This attempt does not count; upload the notebook again.",
        }
    lines = []
    if outcome.notebook:
        lines.append(f"Graded {outcome.notebook} as {outcome.assignment}: "
                     f"{outcome.score:g} of {outcome.max_score:g} autograded points.")
    lines += outcome.messages + outcome.hidden_messages
    if outcome.written:
        names = ", ".join(f"{gid} ({pts:g} point{'s' if pts != 1 else ''})"
                          for gid, pts in outcome.written)
        lines.append(f"Written answers are graded by hand by the course staff: {names}.")
    if not outcome.sandboxed:
        lines.append("Your notebook ran without the grader's sandbox: bubblewrap cannot run in "
                     "this container, so the container is the only isolation.")
    return {
        "gradable": True,
        "score": outcome.score / outcome.max_score if outcome.max_score else 0.0,
        "message": "\n".join(lines),
        "tests": [
            {
                "name": ex.name,
                "description": f"test cell {ex.grade_id}"
                + (", with hidden checks drawn at grading time" if ex.has_hidden else ""),
                "points": ex.points,
                "max_points": ex.max_points,
                "message": ex.verdict,
                "output": ex.visible_output,
            }
            for ex in outcome.exercises
        ],
    }


def _size(results: dict) -> int:
    return len(json.dumps(results).encode("utf-8"))


def _texts(results: dict) -> list:
    """Every text field of ``results`` as ``(container, key)``, format errors included."""
    found = [(results, "message")] if isinstance(results.get("message"), str) else []
    for test in results.get("tests", []):
        found += [(test, k) for k in ("name", "message", "output") if isinstance(test.get(k), str)]
    errors = results.get("format_errors")
    if isinstance(errors, list):
        found += [(errors, i) for i, e in enumerate(errors) if isinstance(e, str)]
    return found


def fit(results: dict, limit: int = MAX_BYTES) -> dict:
    """Shorten the longest texts of ``results`` (in place) until its JSON is under ``limit``.

    Examples
    --------
    >>> r = fit({"score": 1.0, "message": "x" * 5000, "tests": []}, limit=1000)
    >>> len(json.dumps(r)) < 1000, r["message"].endswith("(cut)")
    (True, True)
    """
    marker = "\n... (cut)"
    while _size(results) > limit:
        container, key = max(_texts(results), key=lambda ck: len(ck[0][ck[1]]))
        text = container[key].removesuffix(marker)
        if len(text) <= 2 * len(marker):
            raise ValueError(f"results cannot be brought under {limit} bytes by cutting texts")
        container[key] = text[: len(text) // 2] + marker
    return results


def run(root: str = DEFAULT_ROOT, *, assignment: str | None = None, timeout: int = 60,
        source: str | None = None, stream=sys.stderr) -> int:
    """Grade ``<root>/student`` and write ``<root>/results/results.json``; return 0.

    A results file is written whatever happens; when the grader itself fails, the
    submission is not gradable (the student loses no attempt) and the traceback goes to
    ``stream``.
    """
    source = source or os.path.join(root, "tests")
    start = time.monotonic()
    try:
        if assignment is None:
            found = sorted(
                d for d in os.listdir(source)
                if os.path.isdir(os.path.join(source, d)) and not d.startswith(".")
            )
            if len(found) != 1:
                raise ValueError(
                    f"{source} holds {len(found)} assignment folders ({', '.join(found)}); "
                    "pass --assignment"
                )
            assignment = found[0]
        outcome = grade_notebook(os.path.join(root, "student"), source=source,
                                 assignment=assignment, timeout=timeout)
        results = fit(prairielearn_results(outcome))
        stream.write(
            f"{assignment}: {outcome.status}, {outcome.score:g}/{outcome.max_score:g}, "
            f"seed {outcome.seed}, {'sandboxed' if outcome.sandboxed else 'UNSANDBOXED'}, "
            f"{outcome.seconds:.1f} s\n"
        )
        for line in outcome.instructor:
            stream.write(f"  {line}\n")
    except Exception:
        stream.write(traceback.format_exc())
        results = {
            "gradable": False,
            "format_errors": ["the grader itself failed; this attempt does not count"],
            "message": "The grader itself failed on this submission "
                       f"(after {time.monotonic() - start:.0f} s). Tell your instructor.",
        }
    os.makedirs(os.path.join(root, "results"), exist_ok=True)
    path = os.path.join(root, "results", "results.json")
    with open(path + ".tmp", "w", encoding="utf-8") as fh:
        json.dump(results, fh)
    os.replace(path + ".tmp", path)
    return 0


def parser(prog: str = "python -m lossutils.platforms.prairielearn") -> argparse.ArgumentParser:
    """The entry point's options (also those of ``lossutils prairielearn``)."""
    p = argparse.ArgumentParser(
        prog=prog, description="Grade a PrairieLearn submission with the course's checks."
    )
    p.add_argument("--root", default=DEFAULT_ROOT,
                   help=f"the grading job's folder (default: {DEFAULT_ROOT})")
    p.add_argument("--assignment", help="assignment id (default: the only folder in tests/)")
    p.add_argument("--source", help="folder of masters (default: <root>/tests)")
    p.add_argument("--timeout", type=int, default=60, help="seconds per cell (default: 60)")
    return p


def main(argv=None) -> int:
    """Run the entry point; return its exit status."""
    args = parser().parse_args(argv)
    return run(args.root, assignment=args.assignment, timeout=args.timeout, source=args.source)


if __name__ == "__main__":
    sys.exit(main())
