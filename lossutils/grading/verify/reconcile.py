"""Fold verification into the worker's result: verified scores, problems, scan findings."""

from __future__ import annotations

import ast
from collections.abc import Mapping

from ..problems import Problem
from ..sandbox import Limits
from ..task import CellRecord
from .cells import check_calls, code_to_verify, master_cells
from .scan import Finding, scan_notebook
from .session import DEFAULT_LIMITS, VerifiedScore, verify_submission

__all__ = ["apply_verification", "reconcile"]


def reconcile(records: list[CellRecord], verified: Mapping[str, VerifiedScore]) -> list[Problem]:
    """Set each checked test cell's score to the verified one; return the problems found.

    Parameters
    ----------
    records : list of CellRecord
        The worker's per-cell records; changed in place: ``score`` becomes the verified
        score, ``kernel_score`` and ``verified`` are set.
    verified : mapping
        :func:`verify_submission`'s result.

    Returns
    -------
    list of Problem
        ``tampering-suspected`` where the kernel and verification disagree, either way (with
        the evidence): more points in the kernel, or a test cell that ran to the end in the
        kernel and failed there while the answer passed outside it (the kernel saw other code,
        or code that behaves otherwise there); ``verification-failed`` where verification
        could not run to the end. A failed cell's check and diagnosis become the verified
        ones: the kernel's output is the student's to forge.

    Examples
    --------
    >>> records = [CellRecord("test_softmax", "test", 3.0, score=3.0)]
    >>> problems = reconcile(records, {"test_softmax": VerifiedScore(
    ...     "test_softmax", False, "softmax: 0/13 cases passed", "wrong_shape")})
    >>> records[0].score, records[0].kernel_score, problems[0].code
    (0.0, 3.0, 'tampering-suspected')
    >>> records = [CellRecord("test_softmax", "test", 3.0, score=0.0, message="ValueError: x")]
    >>> problems = reconcile(records, {"test_softmax": VerifiedScore(
    ...     "test_softmax", True, "softmax: 13/13 cases passed")})
    >>> records[0].score, problems[0].detail[:44]
    (3.0, "test_softmax: the notebook's test gave 0/3, ")
    """
    problems = []
    for record in records:
        score = verified.get(record.grade_id)
        if score is None or record.kind != "test":
            continue
        kernel = record.score or 0.0
        # a cell the kernel never finished says nothing about the answer
        judged = not (record.message or "").startswith(("not run:", "CellTimeoutError"))
        record.kernel_score = kernel
        record.verified = score
        record.score = float(record.max_score) if score.passed else 0.0
        record.check, record.diagnosis = (None, None) if score.passed \
            else (score.check, score.diagnosis)
        if not score.passed:
            record.message = record.message or score.error or score.message
        if score.error is not None:
            problems.append(Problem("verification-failed", f"{record.grade_id}: {score.error}"))
        budget_ran_out = (score.error or "").startswith("budget:")
        if (kernel > record.score and not budget_ran_out) \
                or (kernel < record.score and judged):
            reason = score.error or (score.message.splitlines() or ["failed"])[0]
            if kernel < record.score:
                # what the kernel said: a NameError may be a function defined in a later
                # cell (an honest notebook that runs out of order), not a forgery
                said = (record.message or "").strip().splitlines()
                error = said[-1] if said else "?"
                reason += f"; the notebook's test failed with: {error}"
                if error.startswith("NameError"):
                    reason += " (a name defined only in a later cell?)"
            problems.append(Problem("tampering-suspected", (
                f"{record.grade_id}: the notebook's test gave {kernel:g}/"
                f"{record.max_score:g}, verification outside the kernel "
                f"{record.score:g}: {reason}")[:500]))
    return problems


def apply_verification(
    records: list[CellRecord],
    problems: list[Problem],
    student_nb: Mapping,
    master,
    *,
    seed: int,
    sandbox: bool = True,
    limits: Limits = DEFAULT_LIMITS,
    call_timeout: float = 20.0,
    deadline: float | None = None,
) -> list[Finding]:
    """Verify a graded submission and fold the outcome into the worker's records.

    Runs the static scan (:func:`lossutils.grading.verify.scan.scan_notebook`) and
    :func:`verify_submission`, then :func:`reconcile`, and adds the problems found, with the
    scan's findings as evidence. The result's status and total are left to the caller.

    Parameters
    ----------
    records : list of CellRecord
        The worker's per-cell records, changed in place (see :func:`reconcile`).
    problems : list of Problem
        The worker's problems, extended in place.
    student_nb : mapping
        The submitted notebook as parsed JSON.
    master : dict or sequence
        The master notebook, or the task's master cells.
    seed : int
        The run's grading seed.
    sandbox : bool, default True
        False only for ``--unsandboxed`` grading.
    limits : Limits
        Limits of the verification process.
    call_timeout : float
        Seconds per call of the student's function.
    deadline : float, optional
        The :func:`time.monotonic` instant the submission's time budget ends.

    Returns
    -------
    list of Finding
        The static scan's findings.
    """
    solution_ids = [c["grade_id"] for c in master_cells(master) if c["solution"]]
    findings = scan_notebook(student_nb, solution_ids)
    verified = verify_submission(student_nb, master, seed=seed, limits=limits, sandbox=sandbox,
                                 call_timeout=call_timeout, deadline=deadline)
    found = reconcile(records, verified)
    # Evidence: what the scan saw in the solution cells that define the checked functions.
    plan = check_calls(master)
    defined_in = {}
    for label, source in code_to_verify(student_nb, master)[1]:
        for node in ast.parse(source).body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                defined_in[node.name] = label
    for index, item in enumerate(found):
        grade_id = item.detail.split(":", 1)[0]
        cells = {defined_in.get(c.function) for c in plan.get(grade_id, ())}
        seen = sorted({f"{f.pattern} ({f.cell} line {f.line})" for f in findings
                       if f.cell in cells})
        if item.code == "tampering-suspected" and seen:
            found[index] = Problem(item.code, f"{item.detail}; scan: {', '.join(seen)}"[:500])
    problems += found
    if findings:
        patterns = sorted({f.pattern for f in findings})
        problems.append(Problem("review-suggested", (
            f"{len(findings)} finding(s): {', '.join(patterns)}; first: "
            f"{findings[0].cell} line {findings[0].line}: {findings[0].detail}")[:500]))
    return findings
