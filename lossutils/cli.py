"""The ``lossutils`` command: ``release``, ``grade``, ``check``, ``demo``, and the platforms:
``export canvas|moodle``, ``gradescope`` and ``prairielearn``.

Each subcommand imports its machinery only when it runs, so ``lossutils --help`` is instant.
Exit codes: 0 success; 1 some submission failed to grade (``grade``), a check failed
(``check``), a demo sample differed (``demo``) or students or columns were left unmatched
(``export``); 2 a usage error (nothing was done);
130 interrupted (Ctrl-C; the grades persisted so far are kept).
"""

from __future__ import annotations

import argparse
import collections
import os
import sys

__all__ = ["main"]


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lossutils", description="Release, grade and self-check the lossutils course."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    # listed for --help only: main() hands `release ...` to lossutils.release.main, which owns
    # its options (ids, --check, --root)
    sub.add_parser("release", help="regenerate course/ from solutions/ (nbgrader)")

    grade = sub.add_parser("grade", help="grade a folder of submissions")
    grade.add_argument(
        "submissions",
        help="nbgrader's submitted/ layout "
        "(<student>/<assignment>/<notebook>.ipynb) or a flat folder of "
        "<student>.ipynb for one assignment",
    )
    grade.add_argument(
        "--out", default="grading-work", help="output folder (default: grading-work)"
    )
    grade.add_argument(
        "--workers", type=_positive, default=None, help="worker processes (default: one per core)"
    )
    grade.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run the grading on the workers of this Dask scheduler (tcp://host:8786; needs "
        "lossutils[dask]; see docs/distributed.md)",
    )
    grade.add_argument(
        "--assignment",
        help="grade only this assignment (needed for a flat folder when it cannot be inferred)",
    )
    grade.add_argument(
        "--timeout", type=_positive, default=60, help="seconds per cell (default: 60)"
    )
    grade.add_argument(
        "--budget", type=_positive, default=600,
        help="seconds per submission as a whole, its kernel and its verification together "
        "(default: 600)",
    )
    grade.add_argument("--db", help="gradebook SQLAlchemy URL (default: sqlite in --out)")
    grade.add_argument(
        "--source", default="solutions", help="folder with the masters (default: solutions)"
    )
    grade.add_argument(
        "--seed",
        type=int,
        help="the grading seed of the hidden checks (default: a fresh random one per run; "
        "give an earlier run's, from its results.json, to draw the same cases again)",
    )
    grade.add_argument(
        "--regrade",
        action="append",
        default=[],
        metavar="STUDENT",
        help="grade this student again even if nothing changed (repeatable)",
    )
    grade.add_argument(
        "--max-mb", type=_positive, default=20, help="largest notebook read, in MB (default: 20)"
    )
    grade.add_argument(
        "--out-mode", type=lambda text: int(text, 8), default=0o700, metavar="OCTAL",
        help="mode of the output folder when it is created (default: 700, private: it holds "
        "the masters and every student's work)",
    )
    grade.add_argument(
        "--unsandboxed",
        action="store_true",
        help="grade without the bubblewrap sandbox: student code runs with your rights, "
        "network and files (only inside a throw-away container; see SECURITY.md)",
    )

    check = sub.add_parser("check", help="self-check one notebook as the grader would")
    check.add_argument("notebook")
    check.add_argument(
        "--assignment",
        help="assignment id (default: from the file or folder name, or the exercises checked)",
    )
    check.add_argument("--course-root", default=".", help="folder with solutions/ or course/")
    check.add_argument("--timeout", type=_positive, default=60)

    demo = sub.add_parser("demo", help="grade the bundled sample submissions")
    demo.add_argument("--out", default="demo-output")
    demo.add_argument("--source", default="solutions")
    demo.add_argument("--assignments", nargs="*", help="assignment ids (default: all)")
    demo.add_argument(
        "--timeout", type=_positive, default=10, help="seconds per cell (default: 10)"
    )
    demo.add_argument("--workers", type=_positive, default=None)
    _platform_parsers(sub)
    return parser


def _platform_parsers(sub) -> None:
    """The subcommands for the platforms instructors already grade on (docs/platforms.md)."""
    from .platforms.lms import KEYS

    export = sub.add_parser(
        "export", help="fill an LMS gradebook export (Canvas, Moodle) with the graded points"
    )
    export.add_argument("lms", choices=sorted(KEYS))
    export.add_argument(
        "gradebook", help="output folder of `lossutils grade`, a gradebook.db or a database URL"
    )
    export.add_argument("--template", required=True, metavar="EXPORT.csv",
                        help="the gradebook exported from the LMS (left unchanged)")
    export.add_argument("--out", required=True, metavar="FILE.csv", help="the file to import")
    export.add_argument(
        "--key",
        help="the LMS column that holds the student ids of the gradebook: "
        + "; ".join(f"{lms}: {', '.join(keys)}" for lms, keys in KEYS.items())
        + " (default: sis-login-id, email)",
    )
    export.add_argument("--key-column", metavar="HEADER",
                        help="the header of that column, if the LMS names it otherwise")
    export.add_argument("--per-exercise", action="store_true",
                        help="one column per exercise ('<assignment>: <exercise>')")
    export.add_argument("--assignment", action="append", default=[], metavar="ID",
                        help="export only this assignment (repeatable)")
    export.add_argument("--column", action="append", default=[], metavar="TARGET=HEADER",
                        help="fill the column HEADER with TARGET (an assignment, or "
                        "'<assignment>: <exercise>'); repeatable")
    export.add_argument("--encoding", default="utf-8", help="of the template (default: utf-8)")

    gradescope = sub.add_parser("gradescope", help="build a Gradescope autograder zip")
    gradescope.add_argument("assignment")
    gradescope.add_argument("--out", default="autograder.zip")
    gradescope.add_argument("--source", default="solutions")
    gradescope.add_argument("--timeout", type=_positive, default=60,
                            help="seconds per cell (default: 60)")

    from .platforms.prairielearn import parser as pl_parser

    sub.add_parser("prairielearn", parents=[pl_parser()], add_help=False,
                   help="PrairieLearn external grader: grade /grade/student")


def _export(args) -> int:
    from .platforms.lms import ExportError, export

    columns = {}
    for item in args.column:
        target, sep, header = item.partition("=")
        if not sep:
            raise ExportError(f"--column {item!r}: write TARGET=HEADER")
        columns[target.strip()] = header
    return export(
        args.lms, args.gradebook, args.template, args.out, encoding=args.encoding,
        key=args.key, key_column=args.key_column, per_exercise=args.per_exercise,
        assignments=args.assignment, columns=columns,
    )


def _gradescope(args) -> int:
    from .grading.discover import UsageError
    from .platforms.gradescope import build_autograder

    try:
        made = build_autograder(args.assignment, args.out, source=args.source,
                                timeout=args.timeout)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    manual = f"; written answers ({made['manual']:g} points) are graded by hand" \
        if made["manual"] else ""
    sys.stdout.write(
        f"wrote {args.out}: {made['assignment']} ({made['notebook']}.ipynb), "
        f"{made['wheel']}\nset the assignment's autograder points to {made['points']:g}"
        f"{manual}; the zip holds the master with its hidden tests: keep it from students\n"
    )
    return 0


def _summary(summary: dict, stream) -> None:
    """What a run did, for the terminal: names and details are the students' choice, so
    their control characters are shown as ``?``."""
    from .grading.problems import printable

    stream = _Printable(stream, printable)
    for note in summary["notes"]:
        stream.write(f"note: {note}\n")
    # one pass over the results, which stream from the ledger (a class of any size)
    statuses = collections.Counter()
    per_assignment = {}  # id -> [notebooks, total score, autograded points, manual points]
    for r in summary["results"]:
        statuses[r["status"]] += 1
        if r["assignment"] not in per_assignment:
            auto = sum(c["max_score"] for c in r["cells"] if c["kind"] == "test")
            per_assignment[r["assignment"]] = [0, 0.0, auto, r["max_score"] - auto]
        totals = per_assignment[r["assignment"]]
        totals[0] += 1
        totals[1] += r["score"]
    stream.write(
        f"\n{sum(statuses.values())} notebooks: {summary['graded']} graded now, "
        f"{summary['reused']} unchanged since the last run (seed {summary['seed']})\n"
    )
    stream.write("  " + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())) + "\n")
    for assignment, (count, score, auto, manual) in sorted(per_assignment.items()):
        by_hand = f" (+{manual:g} graded by hand)" if manual else ""
        stream.write(
            f"  {assignment:<20} mean {score / count:6.2f} / {auto:g} autograded{by_hand}, "
            f"{count} notebooks\n"
        )
    if summary["failed"]:
        stream.write("\nnot graded normally:\n")
        for r in summary["failed"][:12]:
            detail = "; ".join(p["detail"] for p in r["problems"])
            stream.write(f"  {r['student']} {r['assignment']}: {r['status']}: {detail[:90]}\n")
        if len(summary["failed"]) > 12:
            stream.write(f"  ... and {len(summary['failed']) - 12} more in grades.csv\n")
    stream.write(
        f"\noutputs in {os.path.relpath(summary['out'])}/: grades.csv, report.html, "
        "results.json, feedback/, gradebook.db\n"
    )


def _grade(args) -> int:
    from .grading.run import grade

    if args.unsandboxed:
        sys.stderr.write(
            "WARNING: grading WITHOUT the sandbox (--unsandboxed): every submission runs with "
            "your rights, your network and read access to solutions/ and the gradebook.\n"
        )

    summary = grade(
        args.submissions,
        args.out,
        source=args.source,
        assignment=args.assignment,
        workers=args.workers,
        scheduler=args.scheduler,
        timeout=args.timeout,
        budget=args.budget,
        db=args.db,
        seed=args.seed,
        regrade=args.regrade,
        max_bytes=args.max_mb * 1_000_000,
        sandbox=not args.unsandboxed,
        out_mode=args.out_mode,
    )
    _summary(summary, sys.stdout)
    from .platforms.exchange import add_release_files

    # nbgrader's release_feedback needs each submission's timestamp and secret beside its page
    add_release_files(summary["out"])
    return summary["exit_code"]


class _Printable:
    """A stream that writes only printable text (and newlines)."""

    def __init__(self, stream, clean):
        self.stream, self.clean = stream, clean

    def write(self, text: str) -> None:
        self.stream.write(self.clean(text))


def _check(args) -> int:
    from .grading.selfcheck import self_check

    checked = self_check(
        args.notebook,
        course_root=args.course_root,
        assignment=args.assignment,
        timeout=args.timeout,
    )
    out = sys.stdout
    source = {"master": "its master", "release": "the released notebook",
              "notebook": "its own test cells"}[checked.against]
    out.write(f"checked {args.notebook} as assignment {checked.assignment}, against {source}\n")
    for what in checked.not_run:
        out.write(f"not run: {what}\n")
    result = checked.result
    for cell in result.cells:
        if cell.kind == "manual":
            out.write(f"{cell.grade_id:<32} {'?':>5} / {cell.max_score:g}  graded by hand\n")
            continue
        line = f"{cell.grade_id:<32} {cell.score:>5g} / {cell.max_score:g}"
        if cell.diagnosis not in (None, "none"):
            line += f"  diagnosis: {cell.diagnosis}"
        out.write(line + "\n")
        if cell.message:
            out.write(f"    {cell.message.splitlines()[0][:300]}\n")
    for problem in result.problems:
        out.write(f"problem: {problem.code}: {problem.detail}\n")
    autograded = [c for c in result.cells if c.kind == "test"]
    earned = sum(c.score for c in autograded)
    possible = sum(c.max_score for c in autograded)
    out.write(f"autograded total: {earned:g} / {possible:g}\n")
    return 0 if earned == possible and result.status in ("ok", "test-cell-restored") else 1


def main(argv=None) -> int:
    """Run the ``lossutils`` command line; return the exit code.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit code (see the module docstring).

    Examples
    --------
    >>> main(["check", "no-such-notebook.ipynb"])
    2
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["release"]:
        from . import release

        return release.main(argv[1:])
    args = _parser().parse_args(argv)
    from .grading.discover import UsageError
    from .grading.masters import MasterMismatch
    from .grading.sandbox import SandboxUnavailable
    from .platforms.lms import ExportError

    try:
        if args.command == "grade":
            return _grade(args)
        if args.command == "check":
            return _check(args)
        if args.command == "export":
            return _export(args)
        if args.command == "gradescope":
            return _gradescope(args)
        if args.command == "prairielearn":
            from .platforms.prairielearn import run

            return run(args.root, assignment=args.assignment, timeout=args.timeout,
                       source=args.source)
        from .grading.demo import run_demo

        return run_demo(
            args.out,
            source=args.source,
            assignments=args.assignments,
            timeout=args.timeout,
            workers=args.workers,
        )
    except (UsageError, MasterMismatch, SandboxUnavailable, ExportError) as exc:
        sys.stderr.write(f"lossutils {args.command}: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
