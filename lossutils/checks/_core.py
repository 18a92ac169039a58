"""The checking machinery shared by every exercise.

Three separable steps, so that the grader can run step 2 in a sandbox and steps 1 and 3 in a
trusted process:

1. ``Exercise.cases(hidden, seed)`` builds the cases: a pure function of the seed.
2. ``Exercise.call(fn, case)`` runs the student's function on one case and returns an
   :class:`Outcome` (the return value, or the exception, the captured warnings and output,
   and which inputs the function modified). Nothing reaches stderr.
3. ``Exercise.judge(case, output, warnings=...)`` compares one output with the reference and
   diagnoses known mistakes. ``output`` may be the student's raw object or plain data rebuilt
   with :func:`from_plain`; the judge inspects nothing but exact built-in and numpy types.

:func:`assess` combines an :class:`Outcome` with the judge; :func:`run_check` does all three
steps for one exercise and :func:`check` is the thin, student-facing wrapper.
"""

from __future__ import annotations

import difflib
import os
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ._calling import Outcome, call_safely, quiet
from ._plain import describe_returned, expected_got, fmt, indent, is_numpy_scalar

__all__ = [
    "Case",
    "CheckFailed",
    "CheckResult",
    "Exercise",
    "FunctionExercise",
    "Mistake",
    "Uses",
    "Verdict",
    "assess",
    "check",
    "exercises",
    "get_exercise",
    "register",
    "resolve_seed",
    "run_check",
]

SEED_ENV = "LOSSUTILS_GRADING_SEED"
VISIBLE_SEED = 20240101
HIDDEN_SEED = 7_000_003

# (rtol, atol) by the dtype of the reference result: float32 carries ~7 digits, and a correct
# float32 implementation may sum in another order than the reference.
TOLERANCES = {np.dtype(np.float32): (1e-4, 1e-5), np.dtype(np.float64): (1e-6, 1e-9)}

_REGISTRY: dict[str, Exercise] = {}

# Messages for failures that are not specific to one exercise.
GENERIC = {
    "not_callable": "pass the function itself, e.g. check(\"{id}\", {name}), not its result.",
    "raised": "read the exception above: it happened inside your function on this input.",
    "not_implemented": "replace `raise NotImplementedError()` with your implementation.",
    "wrong_type": "return a numpy array (np.ndarray) or, where a scalar is due, a float.",
    "wrong_shape": "compare your result's shape with the expected one; reduce over the right "
    "axis and keep the batch axis where the contract keeps it.",
    "wrong_dtype": "keep the dtype the contract asks for.",
    "modifies_input": "your function changed its input in place (e.g. `x -= x.max()` or "
    "`state['t'] += 1` on the caller's object); work on new arrays and return them.",
    "missing_error": "the contract names inputs that are errors in the caller: check for them "
    "and raise the exception it names, with a message saying what was wrong.",
}

# What to do about a wrong dtype depends on what was returned for what input.
_DTYPE_ADVICE = {
    "integer": "return floats, not integers: an array computed from integers (or created "
    "with an integer dtype) stays integer unless you make it float.",
    "float64 for float32": "float32 in, float32 out: an array you create (zeros, an identity "
    "matrix) is float64 unless you give it the input's dtype, and mixing it in promotes the "
    "whole result to float64.",
    "float32 for float64": "do not lower the precision: the result is float64 here (integer "
    "input gives float64, as np.mean does).",
}


class CheckFailed(AssertionError):
    """A check failed: the message explains the failing case and, if known, the mistake.

    Subclass of :class:`AssertionError` so that nbgrader scores the test cell 0.

    Attributes
    ----------
    exercise : str
        The exercise id.
    diagnosis : str or None
        The id of the recognised mistake, or None.
    """

    def __init__(self, message: str, *, exercise: str, diagnosis: str | None):
        super().__init__(message)
        self.message = message
        self.exercise = exercise
        self.diagnosis = diagnosis

    def __reduce__(self):
        return _rebuild_check_failed, (self.message, self.exercise, self.diagnosis)

    def __str__(self) -> str:
        # The grader reads the diagnosis from this last line of the kernel's error output
        # (the ``evalue`` of an exception is its str); notebooks show _render_traceback_.
        return f"{self.message}\n{tag(self.exercise, self.diagnosis)}"

    def _render_traceback_(self) -> list[str]:
        """What IPython shows in a notebook: the message, without the tag or the frames."""
        first, *rest = self.message.splitlines() or [""]
        return [f"\x1b[0;31mCheckFailed\x1b[0m: {first}", *rest]


def _rebuild_check_failed(message: str, exercise: str, diagnosis: str | None) -> CheckFailed:
    return CheckFailed(message, exercise=exercise, diagnosis=diagnosis)


def tag(exercise: str, diagnosis: str | None) -> str:
    """The machine-readable line ``[check: <id>; diagnosis: <mistake id or none>]``."""
    return f"[check: {exercise}; diagnosis: {diagnosis or 'none'}]"


@dataclass(frozen=True)
class Case:
    """One input to an exercise: positional ``args``, keyword ``kwargs`` and a ``label``.

    A case with ``raises`` expects the function to raise that exception instead of returning.
    """

    label: str
    args: tuple
    kwargs: dict = field(default_factory=dict)
    raises: tuple[str, str] | None = None
    """For an invalid input the contract names: ``(exception name, why it is invalid)``."""


@dataclass(frozen=True)
class Uses:
    """In a case's arguments: the student's function given to ``check`` as ``role=...``.

    ``check("train", train, loss_fn=softmax_loss_vectorized)`` grades ``train`` with the
    student's own loss function: the case holds ``Uses("loss_fn")`` where that goes.
    """

    role: str


@dataclass(frozen=True)
class Mistake:
    """A known mistake: an id, what to tell the student, and how to recognise it.

    Recognised either by ``models`` (buggy implementations with the student's signature: the
    student's output matches one of them but not the reference) or by ``detect(case, got,
    expected, warnings) -> bool``, a targeted probe on the validated output.
    """

    id: str
    message: str
    models: tuple[Callable, ...] = ()
    detect: Callable | None = None


@dataclass(frozen=True)
class Verdict:
    """The judgement of one output: ``ok``, or a ``message`` and a ``diagnosis`` id.

    ``explained_by`` lists every catalogued mistake consistent with this output (the first is
    the ``diagnosis``); :func:`run_check` votes over them across the failing cases.
    """

    ok: bool
    message: str = ""
    diagnosis: str | None = None
    advice: str = ""
    explained_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class CheckResult:
    """The result of a whole battery."""

    exercise: str
    passed: bool
    n_cases: int
    n_passed: int
    message: str
    diagnosis: str | None


# --------------------------------------------------------------------------- values


def input_dtype(args: Sequence) -> str | None:
    """How messages name the dtype of a case's array inputs: "float32 input", "integer input"."""
    arrays = [a for a in args if type(a) is np.ndarray]
    floats = [a.dtype for a in arrays if a.dtype.kind == "f"]
    if floats:
        return f"{np.result_type(*floats)} input"
    return "integer input" if any(a.dtype.kind in "biu" for a in arrays) else None


def float_value(
    obj: Any, expected: Any, source: str | None = None, any_float: bool = False
) -> tuple[Any, tuple[str, str] | None]:
    """Validate ``obj`` against the reference value ``expected``; return (array, failure).

    ``expected`` is a checker-made numpy scalar or array. On success ``array`` is a float64
    copy of the student's value with the reference's shape and ``failure`` is None; otherwise
    ``failure`` is ``(stage, message)`` with stage "type", "shape" or "dtype" and ``array`` is
    the converted value when it could be converted safely (for shape errors), else None.
    ``source`` names the input in dtype messages (see :func:`input_dtype`); ``any_float``
    says that the contract accepts any float dtype. Only exact types are accepted, so no
    method of a student's object is ever called.
    """
    exp = np.asarray(expected)
    source = source or f"{exp.dtype} input"
    t = type(obj)
    if exp.ndim == 0:
        if t is float:
            return np.float64(obj), None
        if t is np.ndarray and obj.ndim == 0 and obj.dtype.kind == "f":
            value = obj
        elif t in (np.float32, np.float64):
            value = obj
        elif t is np.ndarray and obj.dtype.kind in "biuf":
            return np.asarray(obj, dtype=np.float64), (
                "shape",
                f"returned {describe_returned(obj)}; expected a scalar "
                f"(a float, e.g. from np.sum or np.mean without axis).",
            )
        else:
            extra = ""
            if t in (int, bool) or is_numpy_scalar(obj, "biu"):
                extra = " (an integer: check for integer division or a missing float conversion)"
            return None, (
                "type",
                f"returned {describe_returned(obj)}{extra}; expected a float "
                f"(a numpy {exp.dtype} scalar or a Python float).",
            )
        if exp.dtype == np.float64 and value.dtype == np.float32:
            return None, (
                "dtype",
                f"returned a float32 scalar for {source}; expected a float64 scalar.",
            )
        return np.float64(value), None
    if t is not np.ndarray:
        what = describe_returned(obj)
        # An exact float scalar is safe to convert: models may still explain it (a sum over
        # every axis instead of the last one).
        conv = np.float64(obj) if t in (float, np.float32, np.float64) else None
        return conv, (
            "type",
            f"returned {what}; expected a numpy array (np.ndarray) of shape {exp.shape} "
            f"and dtype {exp.dtype}.",
        )
    if obj.shape != exp.shape:
        conv = np.asarray(obj, dtype=np.float64) if obj.dtype.kind in "biuf" else None
        return conv, (
            "shape",
            f"returned an array of shape {obj.shape}; expected shape {exp.shape}.",
        )
    if obj.dtype.kind != "f":
        wanted = "a float array" if any_float else f"floats ({exp.dtype})"
        return None, (
            "dtype",
            f"returned an array of dtype {obj.dtype} for {source}; expected {wanted}.",
        )
    if obj.dtype != exp.dtype and not any_float:
        return None, (
            "dtype",
            f"returned dtype {obj.dtype} for {source}; expected {exp.dtype}.",
        )
    return np.asarray(obj, dtype=np.float64), None


def dtype_advice(obj: Any, expected_dtype: np.dtype) -> str:
    """The hint for a wrong dtype: integers, float64 for float32, or float32 for float64."""
    if type(obj) in (int, bool) or is_numpy_scalar(obj, "biu") or (
            type(obj) is np.ndarray and obj.dtype.kind in "biu"):
        return _DTYPE_ADVICE["integer"]
    if np.dtype(expected_dtype) == np.float32:
        return _DTYPE_ADVICE["float64 for float32"]
    return _DTYPE_ADVICE["float32 for float64"]


def close(got: np.ndarray, ref: Any, dtype: Any) -> bool:
    """Equal up to the tolerance of ``dtype``; non-finite entries must match exactly."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if got.shape != ref.shape:
        return False
    fin = np.isfinite(ref)
    if not np.array_equal(np.isfinite(got), fin):
        return False
    if not np.array_equal(got[~fin], ref[~fin], equal_nan=True):
        return False
    rtol, atol = TOLERANCES.get(np.dtype(dtype), TOLERANCES[np.dtype(np.float64)])
    return bool(np.all(np.abs(got[fin] - ref[fin]) <= atol + rtol * np.abs(ref[fin])))


def compare(got: np.ndarray, expected: Any, dtype: Any) -> tuple[str, str] | None:
    """Finiteness, then values; None when equal, else ``(stage, message)``."""
    ref = np.asarray(expected, dtype=np.float64)
    bad = ~np.isfinite(got) & np.isfinite(ref)
    if bad.any():
        what = "nan" if np.isnan(got[bad]).any() else "-inf" if (got[bad] < 0).any() else "inf"
        return "finite", f"returned {what} where the expected value is finite."
    if close(got, ref, dtype):
        return None
    if ref.size > 1:
        idx = np.unravel_index(np.argmax(_error(got, ref)), ref.shape)
        where = f" (largest difference at index {tuple(int(i) for i in idx)}: expected " \
            f"{ref[idx].item():.8g}, got {got[idx].item():.8g})"
    else:
        where = ""
    return "values", f"returned wrong values{where}."


def _error(got, ref):
    with np.errstate(all="ignore"):
        err = np.abs(got - ref)
    return np.where(np.isnan(err), np.inf, err)


# --------------------------------------------------------------------------- exercises


class Exercise:
    """Base class: an exercise id, its cases, how to call the student, how to judge.

    Subclasses implement :meth:`make_cases` and :meth:`judge`; :meth:`call` runs the student's
    function once per case by default.

    Parameters
    ----------
    id : str
        The exercise id used in ``check(id, fn)`` (see ``docs/exercises.md``).
    notebook : str
        The notebook it belongs to, e.g. ``"03-cross-entropy"``; orders :func:`exercises`.
    signature : str
        The student's signature, for messages and documentation.
    arg_names : sequence of str
        Names of the positional arguments, to show inputs and name a modified one.
    mistakes : sequence of Mistake
        The catalogue of known mistakes, most specific first (ties are broken by order).
    uses : sequence of str
        Roles of the student's other functions that the check must be given, e.g.
        ``("loss_fn", "step_fn")`` for ``check("train", train, loss_fn=..., step_fn=...)``;
        the cases hold :class:`Uses` placeholders for them.
    no_warnings : str, optional
        For an exercise whose contract forbids warnings: the advice shown when the function
        returns the right value but raises a warning (diagnosis ``warns``). Without it,
        warnings are only shown when a case fails.
    modified_advice : str, optional
        The advice for a right value computed by modifying an input in place, where the
        exercise has a better one than the generic "work on new arrays".
    """

    def __init__(
        self,
        id: str,
        *,
        notebook: str,
        signature: str,
        arg_names: Sequence[str],
        mistakes: Sequence[Mistake] = (),
        uses: Sequence[str] = (),
        no_warnings: str | None = None,
        modified_advice: str | None = None,
    ):
        self.id = id
        self.notebook = notebook
        self.signature = signature
        self.arg_names = tuple(arg_names)
        self.mistakes = tuple(mistakes)
        self.uses = tuple(uses)
        self.no_warnings = no_warnings
        self.modified_advice = modified_advice

    def __repr__(self) -> str:
        return f"<exercise {self.id!r} ({self.notebook}): {self.signature}>"

    def make_cases(self, rng: np.random.Generator, hidden: bool) -> list[Case]:
        raise NotImplementedError

    def cases(self, hidden: bool = False, seed: int | None = None) -> list[Case]:
        """The battery: hand-made cases first, then random ones drawn from the seed."""
        seed = resolve_seed(hidden, seed)
        rng = np.random.default_rng([seed, zlib.crc32(self.id.encode())])
        return self.make_cases(rng, hidden)

    def call(self, fn: Callable, case: Case, uses: Mapping | None = None) -> Outcome:
        """Run the student's function on one case (safe for untrusted code).

        ``uses`` maps each role of :attr:`uses` to the function that stands in the case's
        :class:`Uses` placeholders.
        """
        args = tuple(uses[a.role] if type(a) is Uses else a for a in case.args)
        kwargs = {k: uses[v.role] if type(v) is Uses else v for k, v in case.kwargs.items()}
        return call_safely(fn, args, kwargs, self.arg_names)

    def judge(self, case: Case, output: Any, warnings: Sequence[str] = ()) -> Verdict:
        raise NotImplementedError

    def describe_input(self, case: Case) -> str:
        names = self.arg_names
        named = [(names[i] if i < len(names) else f"argument {i + 1}", a)
                 for i, a in enumerate(case.args)]
        named += list(case.kwargs.items())
        return "\n".join(f"{k} = {fmt(v, prefix=f'{k} = ')}" for k, v in named)

    def verdict(self, message: str, stage: str, explained: Sequence[Mistake],
                advice: str | None = None) -> Verdict:
        """A failing verdict: diagnosed by the first mistake that explains it, else by stage.

        ``advice`` replaces the generic hint of the stage (a dtype hint that fits the case).
        """
        if explained:
            first = explained[0]
            return Verdict(False, message, first.id, first.message,
                           tuple(m.id for m in explained))
        diag = {"type": "wrong_type", "shape": "wrong_shape", "dtype": "wrong_dtype"}.get(stage)
        return Verdict(False, message, diag, advice or (GENERIC[diag] if diag else ""))


def case_dtype(expected: Any) -> np.dtype:
    dt = np.asarray(expected).dtype
    return dt if dt.kind == "f" else np.dtype(np.float64)


class FunctionExercise(Exercise):
    """An exercise whose answer is one array or scalar computed by a reference function.

    Parameters
    ----------
    reference : callable
        Same signature as the student's function; imports :mod:`lossutils` lazily.
    cases : callable
        ``cases(rng, hidden) -> list[Case]``.
    any_float : bool
        Accept any floating dtype (for results whose dtype the contract leaves open).
    """

    def __init__(
        self,
        id: str,
        *,
        reference: Callable,
        cases: Callable[[np.random.Generator, bool], list[Case]],
        any_float: bool = False,
        **kw: Any,
    ):
        super().__init__(id, **kw)
        self.reference = reference
        self._cases = cases
        self.any_float = any_float

    def make_cases(self, rng: np.random.Generator, hidden: bool) -> list[Case]:
        return self._cases(rng, hidden)

    def expected(self, case: Case) -> Any:
        return quiet(self.reference, *case.args, **case.kwargs)

    def adjust_expected(self, case: Case, got: np.ndarray, expected: Any) -> Any:
        """Hook for answers that are not unique (subgradients): the reference to compare with."""
        return expected

    def judge(self, case: Case, output: Any, warnings: Sequence[str] = ()) -> Verdict:
        expected = self.expected(case)
        exp = np.asarray(expected)
        got, failure = float_value(output, expected, input_dtype(case.args), self.any_float)
        if failure is None:
            expected = self.adjust_expected(case, got, expected)
            failure = compare(got, expected, exp.dtype)
        if failure is None:
            return Verdict(True)
        stage, message = failure
        message = f"{message}\n{expected_got(expected, output)}"
        explained: tuple[Mistake, ...] = ()
        if got is not None and stage != "dtype":
            explained = self.explain(case, got, expected, warnings)
        advice = dtype_advice(output, exp.dtype) if stage == "dtype" else None
        return self.verdict(message, stage, explained, advice)

    def explain(self, case: Case, got: np.ndarray, expected: Any,
                warn: Sequence[str]) -> tuple[Mistake, ...]:
        """Every catalogued mistake that explains the validated output ``got``."""
        dtype = case_dtype(expected)
        found = []
        for mistake in self.mistakes:
            if mistake.detect is not None:
                try:
                    hit = quiet(mistake.detect, case, got, expected, tuple(warn))
                except Exception:  # a probe that does not apply to this case
                    hit = False
                if hit:
                    found.append(mistake)
                    continue
            for model in mistake.models:
                try:
                    m = np.asarray(quiet(model, *case.args, **case.kwargs), dtype=np.float64)
                except Exception:  # the buggy model raises here: it cannot explain the output
                    continue
                if close(got, m, dtype) and not close(m, expected, dtype):
                    found.append(mistake)
                    break
        return tuple(found)


# --------------------------------------------------------------------------- registry


def register(exercise: Exercise) -> Exercise:
    """Add ``exercise`` to the registry under its id, and return it.

    Raises
    ------
    ValueError
        If an exercise with the same id is already registered.
    """
    if exercise.id in _REGISTRY:
        raise ValueError(f"exercise {exercise.id!r} is already registered.")
    _REGISTRY[exercise.id] = exercise
    return exercise


def exercises() -> list[str]:
    """The registered exercise ids, in notebook order (a notebook's functions, then its steps).

    Examples
    --------
    >>> exercises()[:3]
    ['log_likelihood', 'negative_log_likelihood', 'bernoulli_mle']
    """
    ordered = sorted(_REGISTRY.values(),
                     key=lambda e: (e.notebook, getattr(e, "takes_value", False)))
    return [e.id for e in ordered]


def get_exercise(name: str) -> Exercise:
    """The :class:`Exercise` registered under ``name``.

    Raises
    ------
    ValueError
        If there is none; the message suggests a close id and lists all of them.

    Examples
    --------
    >>> ex = get_exercise("kl_divergence")
    >>> ex.signature
    'kl_divergence(p, q)'
    >>> ex.cases()[0].label
    'KL([.9, .1] || [.5, .5]) = 0.368'
    """
    if type(name) is str and name in _REGISTRY:
        return _REGISTRY[name]
    close_ids = difflib.get_close_matches(str(name), list(_REGISTRY), n=1)
    hint = f" Did you mean {close_ids[0]!r}?" if close_ids else ""
    raise ValueError(
        f"unknown exercise {name!r}.{hint} Known exercises: {', '.join(exercises())}."
    )


def resolve_seed(hidden: bool, seed: int | None = None) -> int:
    """The seed of the random cases: ``seed`` if given, else the visible or hidden default.

    Hidden batteries take ``LOSSUTILS_GRADING_SEED`` from the environment when it is set, so
    the grader draws fresh cases per run and outputs cannot be hard-coded.

    Raises
    ------
    ValueError
        If ``seed`` or the environment variable is not a non-negative integer.
    """
    if seed is not None:
        if type(seed) is not int or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}.")
        return seed
    if not hidden:
        return VISIBLE_SEED
    raw = os.environ.get(SEED_ENV)
    if raw is None or raw.strip() == "":
        return HIDDEN_SEED
    try:
        value = int(raw.strip())
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(
            f"the environment variable {SEED_ENV} must be a non-negative integer, got "
            f"{raw!r}; unset it or set it to e.g. 12345."
        )
    return value


# --------------------------------------------------------------------------- running


def assess(exercise: Exercise, case: Case, outcome: Outcome) -> Verdict:
    """Judge one :class:`Outcome`: an exception, the output, modified inputs, then warnings."""
    if case.raises is not None:
        return _assess_error(case.raises, outcome)
    if outcome.error is not None:
        return _raised(outcome.error)
    verdict = exercise.judge(case, outcome.output, warnings=outcome.warnings)
    if verdict.ok and outcome.modified:
        return Verdict(
            False,
            f"your function modified its input {outcome.modified[0]} in place.",
            "modifies_input",
            exercise.modified_advice or GENERIC["modifies_input"],
        )
    if verdict.ok and outcome.warnings and exercise.no_warnings is not None:
        return Verdict(
            False,
            "your function returned the right value but raised a warning on this valid "
            "input; the exercise asks for none.",
            "warns",
            exercise.no_warnings,
        )
    return verdict


def _raised(error: str) -> Verdict:
    diag = "not_implemented" if error.startswith("NotImplementedError(") else "raised"
    return Verdict(False, f"your function raised {error} on this input.", diag, GENERIC[diag])


def _assess_error(raises: tuple[str, str], outcome: Outcome) -> Verdict:
    """A case whose input the contract calls invalid: the named exception is the answer."""
    name, why = raises
    if outcome.error is not None and outcome.error.startswith(f"{name}("):
        return Verdict(True)
    if outcome.error is not None and outcome.error.startswith("NotImplementedError("):
        return _raised(outcome.error)
    did = (f"raised {outcome.error}" if outcome.error is not None
           else f"returned {describe_returned(outcome.output)}")
    return Verdict(False, f"your function {did} on this input; expected a {name}: {why}.",
                   "missing_error", GENERIC["missing_error"])


def run_check(
    name: str,
    fn: Callable | None = None,
    hidden: bool = False,
    seed: int | None = None,
    *,
    outcomes: Sequence[Outcome] | None = None,
    uses: Mapping | None = None,
    given: Any = None,
) -> CheckResult:
    """Run the battery of exercise ``name`` on ``fn``, or judge outcomes produced elsewhere.

    Every case is run and judged; on failure the result reports the first failing case and,
    when a catalogued mistake explains failing cases, the one that explains the most of them
    (see :class:`Mistake`).

    Parameters
    ----------
    name : str
        Exercise id (see :func:`exercises`).
    fn : callable, optional
        The student's function. Not needed with ``outcomes``.
    hidden : bool, default False
        Use the hidden battery (more random cases, drawn from ``LOSSUTILS_GRADING_SEED``
        when it is set).
    seed : int, optional
        Seed of the random cases, overriding the visible/hidden default and the environment.
    outcomes : sequence of Outcome, optional
        One :class:`Outcome` per case of ``get_exercise(name).cases(hidden, seed)``, in order,
        for instance rebuilt with :meth:`Outcome.from_plain` from what a sandboxed process
        shipped back; ``fn`` is then not called, and the verdict is the same as in-process.
    uses : mapping, optional
        The student's other functions the exercise is graded with, by role (exactly the
        exercise's ``uses``), e.g. ``{"loss_fn": softmax_loss_vectorized}``.
    given : optional
        For a step of a derivation (whose ``fn`` is the student's expression, not a
        function): the student's earlier step it may follow from (see
        :mod:`lossutils.checks._derivation`).

    Returns
    -------
    CheckResult
        ``passed``, ``n_cases``, ``n_passed``, the student-facing ``message`` and the
        ``diagnosis`` id (None when no mistake was recognised).

    Raises
    ------
    ValueError
        For an unknown exercise, a malformed seed, outcomes that are not one per case, or
        ``uses`` that do not name exactly the exercise's roles.

    Examples
    --------
    >>> import numpy as np
    >>> result = run_check("l2_loss", lambda pred, target: np.sum((pred - target) ** 2))
    >>> result.passed, result.diagnosis
    (False, 'missing_half')
    >>> print(result.message.splitlines()[0])
    l2_loss: 0/9 cases passed; case 1 (hand-made: L([3], [1])) failed.
    >>> print(result.message.splitlines()[-1])  # doctest: +ELLIPSIS
    Diagnosis: the factor 1/2 is missing: ...
    """
    exercise = get_exercise(name)
    if getattr(exercise, "takes_value", False):
        if outcomes is not None or uses:
            raise ValueError(f"{name}: a derivation step is judged from its value alone.")
        return exercise.run(fn, hidden=hidden, seed=seed, given=given)
    if given is not None:
        raise ValueError(f"{name}: `given` is only for the steps of a derivation.")
    uses = dict(uses or {})
    if outcomes is None and set(uses) != set(exercise.uses):
        wanted = ", ".join(f"{role}=..." for role in exercise.uses)
        raise ValueError(
            f"check({name!r}, ...) takes " + (f"exactly {wanted}" if wanted else "no other "
            "functions") + f", got {', '.join(sorted(uses)) or 'none'}; the test cell of "
            "the exercise shows the call."
        )
    if outcomes is None and not callable(fn):
        got = "None" if fn is None else describe_returned(fn)
        message = (
            f"{name}: expected your function, got {got}.\n"
            f"Hint: {GENERIC['not_callable'].format(id=name, name=name)}"
        )
        return CheckResult(name, False, 0, 0, message, "not_callable")
    cases = exercise.cases(hidden=hidden, seed=seed)
    if outcomes is None:
        outcomes = [exercise.call(fn, case, uses) for case in cases]
    elif len(outcomes) != len(cases):
        raise ValueError(f"{name}: got {len(outcomes)} outcomes for {len(cases)} cases.")
    verdicts = [assess(exercise, c, o) for c, o in zip(cases, outcomes, strict=True)]
    n_passed = sum(v.ok for v in verdicts)
    if n_passed == len(cases):
        return CheckResult(name, True, len(cases), n_passed,
                           f"{name}: {n_passed}/{len(cases)} cases passed", None)
    i, verdict, seen_in = _report(exercise, verdicts)
    message = _failure_message(exercise, cases, outcomes[i], verdict, i, seen_in, n_passed)
    return CheckResult(name, False, len(cases), n_passed, message, verdict.diagnosis)


def _report(exercise: Exercise, verdicts: Sequence[Verdict]) -> tuple[int, Verdict, int | None]:
    """The first failing case, its verdict, and the case the diagnosis was seen in if another.

    One case can be consistent with several mistakes (with lr = 1 two momentum conventions
    agree), so the mistake consistent with the most failing cases wins, ties going to the
    catalogue's order. When it does not explain the first failing case (two bugs, or a case
    where the buggy model happens to be right), the message says which case it explains.
    """
    failing = [i for i, v in enumerate(verdicts) if not v.ok]
    first = failing[0]
    order = [m.id for m in exercise.mistakes]
    votes = {d: sum(d in verdicts[i].explained_by for i in failing) for d in order}
    best = max(order, key=lambda d: votes[d], default=None)
    if best is None or not votes[best]:
        return first, verdicts[first], None
    mistake = exercise.mistakes[order.index(best)]
    verdict = replace(verdicts[first], diagnosis=best, advice=mistake.message)
    if best in verdicts[first].explained_by:
        return first, verdict, None
    return first, verdict, next(i for i in failing if best in verdicts[i].explained_by)


def _failure_message(exercise: Exercise, cases: Sequence[Case], outcome: Outcome,
                     verdict: Verdict, i: int, seen_in: int | None, n_passed: int) -> str:
    case = cases[i]
    lines = [
        f"{exercise.id}: {n_passed}/{len(cases)} cases passed; case {i + 1} ({case.label}) "
        "failed.",
        "input:",
        indent(exercise.describe_input(case)),
        verdict.message,
    ]
    if outcome.warnings:
        shown = list(dict.fromkeys(outcome.warnings))[:3]
        lines.append("warnings raised inside your function: " + "; ".join(shown))
    if outcome.stdout.strip():
        printed = [line[:100] for line in outcome.stdout.strip().splitlines()[:4]]
        if len(printed) > 3:
            printed[3] = "..."
        lines.append("your function printed:\n" + indent("\n".join(printed)))
    if verdict.advice:
        catalogued = verdict.diagnosis in {m.id for m in exercise.mistakes}
        label = "Diagnosis" if catalogued else "Hint"
        if seen_in is not None:
            label += f" (from case {seen_in + 1}, {cases[seen_in].label})"
        lines.append(f"{label}: {verdict.advice}")
    return "\n".join(lines)


def check(name: str, fn: Callable, *, hidden: bool = False, given: Any = None,
          **uses: Callable) -> None:
    """Check the student's ``fn`` for exercise ``name``: print one line, or raise.

    The test cell of every autograded exercise calls this. On success it prints a single
    verdict such as ``softmax: 13/13 cases passed``; otherwise it raises :class:`CheckFailed`
    (an :class:`AssertionError`, so nbgrader scores the cell 0) whose message shows the
    failing case, expected and returned values, and the diagnosis of a known mistake.
    Nothing is written to stderr and no warning escapes, whatever ``fn`` does.

    Parameters
    ----------
    name : str
        Exercise id (see :func:`exercises`).
    fn : callable
        The student's function, with the signature of the exercise.
    hidden : bool, default False
        Use the hidden battery, seeded from ``LOSSUTILS_GRADING_SEED`` when set.
    given : optional
        For a step of a derivation, where ``fn`` is the student's SymPy expression: their
        earlier step, from which this one may follow (see ``docs/checks.md``).
    **uses
        The student's other functions an exercise is graded with, by role: ``train`` runs
        with the student's own loss and optimizer step,
        ``check("train", train, loss_fn=softmax_loss_vectorized, step_fn=rmsprop_step)``.

    Raises
    ------
    CheckFailed
        If a case fails; the message explains the case and the recognised mistake.
    ValueError
        For an unknown exercise id or a malformed ``LOSSUTILS_GRADING_SEED``.

    See Also
    --------
    run_check : the same battery, returning a :class:`CheckResult` instead of raising.

    Examples
    --------
    >>> import numpy as np
    >>> def softmax(logits):
    ...     e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    ...     return e / e.sum(axis=-1, keepdims=True)
    >>> check("softmax", softmax)
    softmax: 13/13 cases passed
    >>> def naive_softmax(logits):
    ...     return np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    >>> try:
    ...     check("softmax", naive_softmax)
    ... except CheckFailed as failure:
    ...     print(failure.diagnosis)
    overflow
    """
    result = run_check(name, fn, hidden=hidden, uses=uses, given=given)
    if not result.passed:
        raise CheckFailed(result.message, exercise=name, diagnosis=result.diagnosis) from None
    print(result.message)
