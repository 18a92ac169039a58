"""Fold verification into the worker's result: verified scores, problems, scan findings."""

from __future__ import annotations

import ast
from collections.abc import Mapping

from ..problems import problem
from ..sandbox import Limits
from .cells import check_calls, code_to_verify, master_cells
from .scan import scan_notebook
from .session import DEFAULT_LIMITS, VerifiedScore, verify_submission

__all__ = ["apply_verification", "reconcile"]

def reconcile(records: list[dict], verified: Mapping[str, VerifiedScore]) -> list[dict]:
    """Set each checked test cell's score to the verified one; return the problems found.

    Parameters
    ----------
    records : list of dict
        The worker's per-cell records (``grade_id``, ``kind``, ``score``, ``max_score``,
        ``message``, ...); changed in place: ``score`` becomes the verified score, and
        ``kernel_score`` and ``verified`` (the :meth:`VerifiedScore.to_plain` dict) are added.
    verified : mapping
        :func:`verify_submission`'s result.

    Returns
    -------
    list of dict
        ``{"code", "detail"}`` problems: ``tampering-suspected`` where the kernel gave more
        than verification (with the evidence), ``verification-failed`` where verification
        could not run to the end.

    Examples
    --------
    >>> records = [{"grade_id": "test_softmax", "kind": "test", "score": 3.0,
    ...             "max_score": 3.0, "message": None}]
    >>> problems = reconcile(records, {"test_softmax": VerifiedScore(
    ...     "test_softmax", False, "softmax: 0/13 cases passed", "wrong_shape")})
    >>> records[0]["score"], records[0]["kernel_score"], problems[0]["code"]
    (0.0, 3.0, 'tampering-suspected')
    """
    problems = []
    for record in records:
        score = verified.get(record.get("grade_id"))
        if score is None or record.get("kind") != "test":
            continue
        kernel = record.get("score") or 0.0
        record["kernel_score"] = kernel
        record["verified"] = score.to_plain()
        record["score"] = float(record["max_score"]) if score.passed else 0.0
        if not score.passed:
            record["message"] = record.get("message") or score.error or score.message
        if score.error is not None:
            problems.append(problem("verification-failed", f"{record['grade_id']}: {score.error}"))
        if kernel > record["score"]:
            reason = score.error or (score.message.splitlines() or ["failed"])[0]
            problems.append(problem("tampering-suspected", (
                f"{record['grade_id']}: the notebook's test gave {kernel:g}/"
                f"{record['max_score']:g}, verification outside the kernel "
                f"{record['score']:g}: {reason}")[:500]))
    return problems


def apply_verification(
    result: dict,
    student_nb: Mapping,
    master,
    *,
    seed: int,
    sandbox: bool = True,
    limits: Limits = DEFAULT_LIMITS,
    call_timeout: float = 20.0,
) -> dict:
    """Verify a graded submission and fold the outcome into the worker's result.

    Runs the static scan (:func:`lossutils.grading.verify.scan.scan_notebook`) and
    :func:`verify_submission`, then :func:`reconcile`; adds the problems, the scan findings
    (``result["scan"]``) and recomputes ``result["score"]``. ``result["status"]`` is left to
    the caller, who orders problem codes.

    Parameters
    ----------
    result : dict
        The worker's result, with ``cells`` (records) and ``problems``.
    student_nb : mapping
        The submitted notebook as parsed JSON.
    master : dict or list
        The master notebook, or the grader's list of master cells.
    seed : int
        The run's grading seed.
    sandbox : bool, default True
        False only for ``--unsandboxed`` grading.
    limits : Limits
        Limits of the verification process.
    call_timeout : float
        Seconds per call of the student's function.

    Returns
    -------
    dict
        ``result``, updated.
    """
    solution_ids = [c["grade_id"] for c in master_cells(master) if c["solution"]]
    findings = scan_notebook(student_nb, solution_ids)
    result["scan"] = [f.to_plain() for f in findings]
    verified = verify_submission(student_nb, master, seed=seed, limits=limits, sandbox=sandbox,
                                 call_timeout=call_timeout)
    problems = result.setdefault("problems", [])
    found = reconcile(result.get("cells", []), verified)
    # Evidence: what the scan saw in the solution cells that define the checked functions.
    plan = check_calls(master)
    defined_in = {}
    for label, source in code_to_verify(student_nb, master)[1]:
        for node in ast.parse(source).body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                defined_in[node.name] = label
    for item in found:
        grade_id = item["detail"].split(":", 1)[0]
        cells = {defined_in.get(c.function) for c in plan.get(grade_id, ())}
        seen = sorted({f"{f.pattern} ({f.cell} line {f.line})" for f in findings
                       if f.cell in cells})
        if item["code"] == "tampering-suspected" and seen:
            item["detail"] = f"{item['detail']}; scan: {', '.join(seen)}"[:500]
    problems += found
    if findings:
        patterns = sorted({f.pattern for f in findings})
        problems.append(problem("review-suggested", (
            f"{len(findings)} finding(s): {', '.join(patterns)}; first: "
            f"{findings[0].cell} line {findings[0].line}: {findings[0].detail}")[:500]))
    result["score"] = sum(r.get("score") or 0.0 for r in result.get("cells", []))
    return result
