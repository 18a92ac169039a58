"""Checks that teach: the checker every autograded test cell calls.

Usage in a notebook test cell::

    from lossutils.checks import check
    check("softmax", softmax)               # visible cases
    check("softmax", softmax, hidden=True)  # in nbgrader's hidden-tests region

See ``docs/checks.md`` for what a failing check looks like and how to add an exercise.
"""

# Importing the exercise modules registers their exercises, in notebook order.
from . import (  # noqa: F401
    _classification,
    _classifiers,
    _derivations,
    _information,
    _likelihood,
    _margin,
    _optim,
    _regression,
)
from ._calling import Outcome
from ._core import (
    Case,
    CheckFailed,
    CheckResult,
    Exercise,
    FunctionExercise,
    Mistake,
    Uses,
    Verdict,
    assess,
    check,
    exercises,
    get_exercise,
    register,
    resolve_seed,
    run_check,
)
from ._derivation import Unshipped
from ._given import GivenFunction, StudentFunction
from ._plain import from_plain, to_plain

# Tracebacks name the public path, lossutils.checks.CheckFailed.
CheckFailed.__module__ = __name__

__all__ = [
    "Case",
    "CheckFailed",
    "CheckResult",
    "Exercise",
    "FunctionExercise",
    "GivenFunction",
    "Mistake",
    "Outcome",
    "StudentFunction",
    "Unshipped",
    "Uses",
    "Verdict",
    "assess",
    "check",
    "exercises",
    "from_plain",
    "get_exercise",
    "register",
    "resolve_seed",
    "run_check",
    "to_plain",
]
