"""One submission's verification: every checked test cell graded again, outside the kernel.

:func:`verify_submission` loads the student's code into a fresh verification process, and for
each ``check`` call of the master's test cells builds the cases (hidden ones with the run's
seed) and judges what the student's function returned, all in the trusted process.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..sandbox import Limits, require_sandbox
from .cells import check_calls, code_to_verify
from .channel import Fatal, Runner, verification_zygote
from .remote import Remote

__all__ = ["DEFAULT_LIMITS", "VerifiedScore", "verify_submission"]

# Verification runs small functions on small inputs: far tighter than a notebook's limits.
DEFAULT_LIMITS = Limits(memory_bytes=1 * 2**30, cpu_seconds=60, wall_seconds=120,
                        max_processes=16, max_output_bytes=4_000_000,
                        file_size_bytes=16 * 2**20, tmp_bytes=64 * 2**20)


@dataclass
class VerifiedScore:
    """The verified result of one test cell.

    Attributes
    ----------
    grade_id : str
        The test cell's nbgrader grade id (``test_<solution id>``).
    passed : bool
        Every check call of the cell passed outside the kernel. False whenever verification
        could not complete (see ``error``).
    message : str
        The first failing check's message (hidden-test inputs included: instructor only), or
        a summary of the passed cases.
    diagnosis : str or None
        The checker's diagnosis id of that failure, if any.
    error : str or None
        Why verification could not run to the end: ``"timeout: ..."``, ``"memory: ..."``,
        ``"crashed: ..."``, ``"protocol: ..."``, ``"unverifiable: ..."``; None otherwise.
    exercises : list of str
        The exercise ids the cell checks.
    """

    grade_id: str
    passed: bool
    message: str = ""
    diagnosis: str | None = None
    error: str | None = None
    exercises: list[str] = field(default_factory=list)

    def to_plain(self) -> dict:
        """JSON-friendly form for the grading result."""
        return {"grade_id": self.grade_id, "passed": self.passed, "message": self.message,
                "diagnosis": self.diagnosis, "error": self.error,
                "exercises": list(self.exercises)}



def verify_submission(
    student_nb: Mapping,
    master_nb,
    *,
    seed: int,
    limits: Limits = DEFAULT_LIMITS,
    sandbox: bool = True,
    call_timeout: float = 20.0,
) -> dict[str, VerifiedScore]:
    """Grade every checked test cell again, outside the student's kernel.

    Parameters
    ----------
    student_nb : mapping
        The submitted notebook as parsed JSON (untrusted: any structure).
    master_nb : dict or list
        The master notebook as a dict, or a task's master cells (``task.master.cells``).
    seed : int
        The run's ``LOSSUTILS_GRADING_SEED``, for the hidden cases.
    limits : Limits
        Limits of the verification process (one per submission, restarted after a fatal
        error); ``wall_seconds`` bounds each process, ``call_timeout`` each call.
    sandbox : bool, default True
        Run the student's code in the sandbox. False is for ``--unsandboxed`` grading only.
    call_timeout : float
        Seconds one call of the student's function (or loading the cells) may take.

    Returns
    -------
    dict
        Test cell grade id to :class:`VerifiedScore`, for every test cell of the master
        that calls the course's ``check`` on registered exercises (see :func:`check_calls`).

    Raises
    ------
    SandboxUnavailable
        If ``sandbox`` is True and bubblewrap does not work here.
    """
    from lossutils.checks import StudentFunction, get_exercise, run_check

    if sandbox:
        require_sandbox()
    plan = check_calls(master_nb)
    prelude, cells = code_to_verify(student_nb, master_nb)
    names = sorted({name for calls in plan.values() for c in calls
                    for name in (c.function, *(n for _, n in c.uses))})
    results: dict[str, VerifiedScore] = {}
    runner = None
    loaded: dict = {}
    try:
        for grade_id, calls in plan.items():
            try:
                exercises = {c.exercise: get_exercise(c.exercise) for c in calls}
            except ValueError:
                # The master names an exercise this lossutils does not know: the kernel's
                # check fails the same way, and the student had no part in it.
                continue
            score = VerifiedScore(grade_id, True, exercises=[c.exercise for c in calls])
            results[grade_id] = score
            for call in calls:
                exercise = exercises[call.exercise]
                if runner is None or runner.dead:
                    if runner is not None:
                        runner.close()
                    runner = Runner(limits=limits, sandbox=sandbox, call_timeout=call_timeout,
                                     zygote=verification_zygote(limits, prelude)
                                     if sandbox else None)
                    try:
                        loaded = runner.load(prelude, cells, names)
                    except Fatal as exc:
                        score.passed, score.error = False, str(exc)
                        break
                broken = [(name, loaded["names"].get(name))
                          for name in (call.function, *(n for _, n in call.uses))
                          if loaded["names"].get(name) != "callable"]
                if broken:
                    name, status = broken[0]
                    score.passed = False
                    score.message = (f"{name} is "
                                     f"{'not defined' if status == 'missing' else 'not a function'}"
                                     " after running the solution cells"
                                     f"{_cell_errors(loaded)}.")
                    break
                remote = Remote(runner, call.function, exercise.arg_names)
                # The student's other functions travel by name: the sandbox resolves them.
                uses = {role: StudentFunction(name) for role, name in call.uses}
                try:
                    result = run_check(call.exercise, remote, hidden=call.hidden,
                                       seed=seed if call.hidden else None, uses=uses)
                except Exception as exc:  # a judge that chokes on a returned value
                    score.passed = False
                    score.error = f"unverifiable: the checker failed ({type(exc).__name__})"
                    break
                if runner.dead:
                    score.passed, score.error = False, runner.dead
                    break
                if not result.passed:
                    score.passed, score.message = False, result.message
                    score.diagnosis = result.diagnosis
                    break
                score.message = result.message
    finally:
        if runner is not None:
            runner.close()
    return results



def _cell_errors(loaded: dict) -> str:
    for label, error in zip(loaded["labels"], loaded["cells"], strict=False):
        if type(error) is dict:
            return (f" (cell {label} raised {str(error.get('type'))[:60]}: "
                    f"{str(error.get('text'))[:120]})")
    return ""
