"""One submission's verification: every checked test cell graded again, outside the kernel.

:func:`verify_submission` loads the student's code into a fresh verification process, and for
each ``check`` call of the master's test cells builds the cases (hidden ones with the run's
seed) and judges what the student's function returned, all in the trusted process.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..limited import Exhausted, run_limited
from ..sandbox import Limits, require_sandbox
from .cells import check_calls, code_to_verify
from .channel import Fatal, Runner, verification_zygote
from .remote import Remote, fetch_values

__all__ = ["DEFAULT_LIMITS", "VerifiedScore", "verify_submission"]

# Verification runs small functions on small inputs: far tighter than a notebook's limits.
DEFAULT_LIMITS = Limits(memory_bytes=1 * 2**30, cpu_seconds=60, wall_seconds=120,
                        max_processes=16, max_output_bytes=4_000_000,
                        file_size_bytes=16 * 2**20, tmp_bytes=64 * 2**20)

#: Memory the checker may add to the worker's while it judges a symbolic answer.
JUDGE_MEMORY_BYTES = 1 * 2**30


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
        The checker's diagnosis id of that failure, if any (the trusted checker's: never read
        from anything the student's code printed or raised).
    check : str or None
        The exercise id of that failure.
    error : str or None
        Why verification could not run to the end: ``"timeout: ..."``, ``"memory: ..."``,
        ``"crashed: ..."``, ``"protocol: ..."``, ``"checker: ..."`` (judging the answer ran out
        of time or memory), ``"budget: ..."`` (the submission's time budget ran out),
        ``"unverifiable: ..."``; None otherwise.
    exercises : list of str
        The exercise ids the cell checks.
    """

    grade_id: str
    passed: bool
    message: str = ""
    diagnosis: str | None = None
    error: str | None = None
    exercises: list[str] = field(default_factory=list)
    check: str | None = None

    def to_plain(self) -> dict:
        """JSON-friendly form for the grading result."""
        return {"grade_id": self.grade_id, "passed": self.passed, "message": self.message,
                "diagnosis": self.diagnosis, "check": self.check, "error": self.error,
                "exercises": list(self.exercises)}



def verify_submission(
    student_nb: Mapping,
    master_nb,
    *,
    seed: int,
    limits: Limits = DEFAULT_LIMITS,
    sandbox: bool = True,
    call_timeout: float = 20.0,
    deadline: float | None = None,
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
        Seconds one call of the student's function (or loading the cells) may take, and the
        checker judging what it returned, when that is a SymPy expression, or a derivation
        step's value (the judge then runs in a child process with
        :data:`JUDGE_MEMORY_BYTES` of memory).
    deadline : float, optional
        A :func:`time.monotonic` instant by which verification must end (the submission's
        budget); checks not done by then fail with a ``budget:`` error.

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
    from lossutils.checks import StudentFunction, get_exercise

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
                if deadline is not None and time.monotonic() >= deadline:
                    score.passed = False
                    score.error = "budget: the submission as a whole ran out of its time budget"
                    break
                if runner is None or runner.dead:
                    if runner is not None:
                        runner.close()
                    runner = Runner(limits=limits, sandbox=sandbox, call_timeout=call_timeout,
                                    zygote=verification_zygote(limits, prelude)
                                    if sandbox else None, deadline=deadline)
                    try:
                        loaded = runner.load(prelude, cells, names)
                    except Fatal as exc:
                        score.passed, score.error = False, str(exc)
                        break
                if getattr(exercise, "takes_value", False):
                    # A step of a derivation: the answer is an expression bound to a name.
                    left = call_timeout if deadline is None else deadline - time.monotonic()
                    try:
                        result = _judge_step(runner, call, seed if call.hidden else None,
                                             min(call_timeout, max(left, 0.1)))
                    except Fatal as exc:
                        score.passed, score.error = False, str(exc)
                        break
                    except Exhausted as exc:
                        score.passed = False
                        score.error = (f"checker: judging {call.function} stopped: {exc} "
                                       "(an answer far larger than the step needs)")
                        break
                    except Exception as exc:  # a judge that chokes on a value
                        score.passed = False
                        score.error = f"unverifiable: the checker failed ({type(exc).__name__})"
                        break
                    if not result.passed:
                        score.passed, score.message = False, result.message
                        score.diagnosis, score.check = result.diagnosis, call.exercise
                        break
                    score.message = result.message
                    continue
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
                hidden_seed = seed if call.hidden else None
                try:
                    outcomes = [exercise.call(remote, case, uses)
                                for case in exercise.cases(hidden=call.hidden, seed=hidden_seed)]
                    if runner.dead:
                        score.passed, score.error = False, runner.dead
                        break
                    left = call_timeout if deadline is None else deadline - time.monotonic()
                    result = _judge(call.exercise, outcomes, call.hidden, hidden_seed,
                                    min(call_timeout, max(left, 0.1)))
                except Exhausted as exc:
                    score.passed = False
                    score.error = (f"checker: judging what {call.function} returned stopped: "
                                   f"{exc} (an answer far larger than the exercise needs)")
                    break
                except Exception as exc:  # a judge that chokes on a returned value
                    score.passed = False
                    score.error = f"unverifiable: the checker failed ({type(exc).__name__})"
                    break
                if not result.passed:
                    score.passed, score.message = False, result.message
                    score.diagnosis, score.check = result.diagnosis, call.exercise
                    break
                score.message = result.message
    finally:
        if runner is not None:
            runner.close()
    return results



def _judge(name: str, outcomes, hidden: bool, seed: int | None, seconds: float):
    """The exercise's verdict on ``outcomes``: in a limited child process when one holds a
    SymPy expression, whose expansion and comparison cost what the student made them cost;
    in this process otherwise (arrays and numbers are bounded by the reply budget)."""
    from lossutils.checks import run_check

    if any(type(o.output).__module__.startswith("sympy") for o in outcomes):
        return run_limited(run_check, name, hidden=hidden, seed=seed, outcomes=outcomes,
                           seconds=seconds, memory_bytes=JUDGE_MEMORY_BYTES)
    return run_check(name, hidden=hidden, seed=seed, outcomes=outcomes)


def _judge_step(runner: Runner, call, seed: int | None, seconds: float):
    """Judge a derivation step: its value (and the earlier step's, ``given``) fetched by name
    from the verification process, rebuilt and judged by the trusted checker exactly as the
    kernel's check judges it, in a limited child process like any symbolic answer."""
    given = [name for role, name in call.uses if role == "given"]
    values = fetch_values(runner, [call.function, *given])
    _load_the_judge()
    return run_limited(_rebuild_and_check, call.exercise, values[call.function],
                       [values[name] for name in given], call.hidden, seed,
                       seconds=seconds, memory_bytes=JUDGE_MEMORY_BYTES)


@functools.cache
def _load_the_judge() -> None:
    """Import SymPy and the steps' judge in this worker, once: each limited child is forked
    from it and would otherwise import them again, a second or so per step."""
    import sympy  # noqa: F401

    import lossutils.checks  # noqa: F401

    from . import _runner  # noqa: F401  (decode_sympy)


def _rebuild_and_check(exercise: str, value: dict, given: list, hidden: bool,
                       seed: int | None):
    """``given``: the earlier steps the master's cell passes, one or a tuple of several."""
    from lossutils.checks import run_check

    earlier = tuple(_rebuilt(g) for g in given)
    return run_check(exercise, _rebuilt(value), hidden=hidden, seed=seed,
                     given=None if not earlier else earlier[0] if len(earlier) == 1
                     else earlier)


def _rebuilt(data: dict):
    """A value :func:`fetch_values` checked, as the step's judge takes it."""
    from lossutils.checks import Unshipped, from_plain

    from ._runner import SympyTooComplex, decode_sympy

    if "missing" in data:
        # Not defined after the student's cells (they deleted the line of the answer cell
        # that sets it to None): the step is not done, and fails in the kernel too.
        return None
    if "sympy" in data:
        try:
            return decode_sympy(data["sympy"])
        except SympyTooComplex:
            return Unshipped("too_large")
        except (ValueError, TypeError, KeyError, RecursionError):
            return Unshipped("unsupported")
    if "too_large" in data:
        return Unshipped("too_large")
    if "unsupported" in data:
        return Unshipped("unsupported", data["unsupported"])
    return from_plain(data["plain"])


def _cell_errors(loaded: dict) -> str:
    for label, error in zip(loaded["labels"], loaded["cells"], strict=False):
        if type(error) is dict:
            return (f" (cell {label} raised {str(error.get('type'))[:60]}: "
                    f"{str(error.get('text'))[:120]})")
    return ""
