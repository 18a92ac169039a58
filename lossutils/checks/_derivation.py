"""Derivations graded step by step: each intermediate result is a SymPy expression.

A :class:`Derivation` (for example the maximum-likelihood estimate of a coin) has named
steps (the log-likelihood, its derivative, the estimate); each step is registered as an
exercise of its own, with the id ``"<derivation>.<step>"``, and its locked test cell calls::

    check("bernoulli_mle.score", score)                   # the student's expression
    check("bernoulli_mle.p_hat", p_hat, given=score)     # may follow from the earlier step

How a step is judged (:meth:`DerivationStep.run`):

1. the answer must be a SymPy expression of the derivation's symbols (a list from
   ``sp.solve``, an equation, a string or a stray symbol gets a message saying what was
   expected);
2. it is evaluated, with the expected expression, at random values of the symbols (random
   data sets of random size M, and random parameters), drawn from the visible or the grading
   seed: any mathematically equal form passes, and where the step says "up to constants" any
   additive term that does not depend on the parameters. Steps may add points at a kink
   (where any value between two bounds is right) or in float64 at extreme inputs (where a
   numerically stable form is asked for);
3. if it is wrong but follows correctly from the student's own (wrong) earlier step, passed
   as ``given`` (its derivative, or the solution of its stationarity condition), it passes,
   provided that earlier step is an attempt at that step: a catalogued mistake of it, or an
   expression that changes with every symbol the right one changes with (see
   :meth:`DerivationStep.attempted`), so that a made-up trivial step earns nothing;
4. otherwise the catalogue of mistakes of the step is matched numerically (a missing 1/2, a
   sign, sigma for sigma^2, the log-likelihood for its negative...), then generic ones (a
   constant factor such as 1/ln 10, a factor M, a wrong constant term, a dependence on a
   parameter that should not be there).

No message shows the expected expression, nor the student's (they have it in their cell).
Evaluation goes through :mod:`._symeval`, whose cost is bounded by the size of the expression.
"""

from __future__ import annotations

import types
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ._core import CheckResult, Exercise, register, resolve_seed
from ._plain import describe_returned

__all__ = ["Derivation", "DerivationStep", "Follows", "Kink", "Stable", "Step", "Symbols",
           "Unshipped"]

# Work allowed for one expression over all points of a check: honest answers need a few
# thousand operations; the verification codec bounds a tree to 2,000 nodes.
_OPERATIONS = 400_000
_RTOL = 1e-12
_FOLLOW_RTOL = 1e-8


@dataclass(frozen=True)
class Symbols:
    """The symbols of a derivation, as the notebook defines them.

    Parameters
    ----------
    scalars : dict
        Name to SymPy assumptions, e.g. ``{"p": {"positive": True}}``.
    indexed : dict
        Name of an indexed base to how it is shown, e.g. ``{"y": "y[m]"}``.
    indices : tuple of str
        The index symbols the notebook gives (``("m",)``); the first is the one sums use.
    params : tuple of str
        The parameters: derivatives are taken in them, estimates must not contain them, and
        "up to constants" means up to terms that do not depend on them.
    count : str
        The symbol for the number of terms of the sums (``"M"``), for hints.
    names : dict
        A symbol's name to the Python name the notebook binds it to, where they differ
        (notebook 05 binds ``m`` to ``m_s`` because ``M`` and ``y`` name its data): hints
        speak the notebook's names.
    """

    scalars: dict
    indexed: dict
    indices: tuple
    params: tuple
    count: str = "M"
    names: dict = field(default_factory=dict)

    def build(self):
        """A namespace of SymPy objects: one attribute per name."""
        import sympy as sp

        ns = types.SimpleNamespace()
        for name, assumptions in self.scalars.items():
            setattr(ns, name, sp.Symbol(name, **assumptions))
        for name in self.indexed:
            setattr(ns, name, sp.IndexedBase(name))
        for name in self.indices:
            setattr(ns, name, sp.Symbol(name, integer=True, positive=True))
        return ns

    def shown(self, name: str) -> str:
        return self.indexed.get(name) or self.names.get(name, name)

    def summed(self) -> str:
        """How the notebook writes a sum over the samples."""
        return f"sp.Sum(..., ({self.shown(self.indices[0])}, 1, {self.shown(self.count)}))"


@dataclass(frozen=True)
class Follows:
    """How a step can follow from the student's own earlier step.

    ``step`` names the earlier step, or a tuple of them when ``given`` is a tuple of the
    student's steps in that order.
    ``kind="derivative"``: this step is the derivative of step ``step`` with respect to
    ``param`` (the element ``param[index]`` when ``index`` names an index symbol).
    ``kind="root"``: the first earlier step vanishes when ``param`` takes this step's value
    (through ``transform``, e.g. a square root when the step asks for sigma^2), a value inside
    ``within`` (and positive for a positive symbol), with each parameter in ``at`` set to the
    student's answer to the step named there (the expected one when they gave none).
    ``kind="formula"``: this step is ``build(symbols, *earlier)``, an expression that holds the
    student's earlier steps as parts (built without evaluating them), at the point
    ``env(point)`` when ``env`` is given.
    """

    step: str | tuple
    kind: str
    param: str | None = None
    index: str | None = None
    transform: Callable | None = None
    at: dict | None = None
    build: Callable | None = None
    env: Callable | None = None
    within: tuple | None = None

    @property
    def steps(self) -> tuple:
        return self.step if isinstance(self.step, tuple) else (self.step,)


@dataclass(frozen=True)
class Kink:
    """Extra points where the answer is not unique: any value between two bounds is right.

    ``place(env, rng) -> env`` moves a random point onto a kink (exactly, in binary);
    ``low`` and ``high`` build the bounds from the symbols (in either order).
    """

    place: Callable
    low: Callable
    high: Callable


@dataclass(frozen=True)
class Stable:
    """The answer must also be right in float64, with ``param`` set to each of ``values``."""

    param: str
    values: tuple


@dataclass(frozen=True)
class Step:
    """One step of a derivation.

    Parameters
    ----------
    name : str
        The step id and the variable the notebook asks for (``score``).
    asks : str
        What the step is, in words, for messages ("the derivative of log L").
    truth : callable
        ``truth(s) -> sympy expression`` from the namespace of :meth:`Symbols.build`.
    uses : tuple of str
        The symbols (scalars and indexed bases) the answer may contain.
    mistakes : tuple of Mistake
        The catalogue; each mistake's ``models`` are builders like ``truth``.
    up_to_constant : bool
        Accept any additive term that does not depend on the parameters.
    follows : Follows, optional
    free_indices : tuple of str
        Index symbols that stay free in the answer (a Jacobian's i and j).
    kink : Kink, optional
    stable : Stable, optional
    draw_params : callable, optional
        Draws this step's parameters instead of the derivation's ``draw_params``.
    absent : str
        Advice when the answer contains a parameter it must not, where the step is not the
        root of an earlier one (for example, an expectation over x leaves no x).
    """

    name: str
    asks: str
    truth: Callable
    uses: tuple
    mistakes: tuple = ()
    up_to_constant: bool = False
    follows: Follows | None = None
    free_indices: tuple = ()
    kink: Kink | None = None
    stable: Stable | None = None
    draw_params: Callable | None = None
    absent: str = ""


class Derivation:
    """A derivation with named steps; registers each step as an exercise.

    Parameters
    ----------
    id : str
        The derivation id, the first part of each step's exercise id.
    notebook : str
        The notebook it belongs to.
    symbols : Symbols
    draw : callable
        ``draw(rng) -> dict``: one random data set, a name to a number or, for an indexed
        base, to a numpy array (index 1 is element 0).
    draw_params : callable
        ``draw_params(rng, data) -> dict``: random values of the parameters (and of free
        indices), in the same form.
    steps : sequence of Step
    """

    def __init__(self, id, *, notebook, symbols, draw, draw_params, steps: Sequence[Step]):
        self.id = id
        self.notebook = notebook
        self.symbols = symbols
        self.draw = draw
        self.draw_params = draw_params
        self.steps = {step.name: DerivationStep(self, step) for step in steps}
        self._ns = None
        for exercise in self.steps.values():
            register(exercise)

    @property
    def ns(self):
        if self._ns is None:
            self._ns = self.symbols.build()
        return self._ns

    def points(self, rng, groups: int, per_group: int = 2, draw_params=None) -> list:
        """Random environments: ``groups`` data sets, each with ``per_group`` parameters."""
        draw_params = draw_params or self.draw_params
        out = []
        for _ in range(groups):
            raw = self.draw(rng)
            data = _environment(raw)
            out.append([{**data, **_environment(draw_params(rng, raw))}
                        for _ in range(per_group)])
        return out


def _environment(values: dict) -> dict:
    import mpmath

    env = {}
    for name, value in values.items():
        if isinstance(value, np.ndarray):
            if value.ndim == 1:
                env[name] = {i + 1: mpmath.mpf(float(v)) for i, v in enumerate(value)}
            else:
                env[name] = {tuple(int(k) + 1 for k in idx): mpmath.mpf(float(value[idx]))
                             for idx in np.ndindex(value.shape)}
        else:
            env[name] = mpmath.mpf(float(value))
    return env


class Unshipped:
    """Stands for an expression that verification could not carry out of the sandbox.

    ``reason`` is ``"too_large"`` (beyond the codec's size budget) or ``"unsupported"``, with
    ``node`` the type name of the first node outside the codec's allow list; the step judges
    it as it judges the expression itself in the kernel.
    """

    __slots__ = ("node", "reason")

    def __init__(self, reason: str, node: str = ""):
        self.reason, self.node = reason, node


class _Failure(Exception):
    def __init__(self, message, diagnosis, advice=""):
        super().__init__(message)
        self.message, self.diagnosis, self.advice = message, diagnosis, advice


class DerivationStep(Exercise):
    """One step of a :class:`Derivation`, judged from the value the student set."""

    takes_value = True

    def __init__(self, derivation: Derivation, step: Step):
        self.derivation = derivation
        self.step = step
        shown = ", ".join(derivation.symbols.shown(n) for n in step.uses)
        super().__init__(
            f"{derivation.id}.{step.name}",
            notebook=derivation.notebook,
            signature=f"{step.name} = <SymPy expression in {shown}>",
            arg_names=(step.name,),
            mistakes=step.mistakes,
        )

    # ------------------------------------------------------------------ the answer

    def truth(self):
        """The expected expression (for the checker and its tests, never for a message)."""
        return self.step.truth(self.derivation.ns)

    def allowed(self) -> str:
        """The symbols the answer may use, in words."""
        symbols = self.derivation.symbols
        names = [symbols.shown(n) for n in self.step.uses]
        names += [f"the free index {symbols.shown(i)}" for i in self.step.free_indices]
        text = ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else names[0]
        if any(n in symbols.indexed for n in self.step.uses) and self._sums():
            text += f" (indexed symbols inside sums over their index, e.g. {symbols.summed()})"
        return text

    def _sums(self) -> bool:
        """Whether the answer sums over the samples (it has their count), or is about one."""
        return self.derivation.symbols.count in self.step.uses

    def expression(self, value, role: str | None = None):
        """``value`` as a checkable expression; raises :class:`_Failure` saying what is wrong."""
        import sympy as sp

        from ._symeval import TooComplex, structure

        name = role or self.step.name
        expected = f"expected a SymPy expression in {self.allowed()}"
        if type(value) is Unshipped:
            if value.reason == "too_large":
                raise self._too_large(name)
            raise self._unsupported(name, value.node)
        if value is None:
            # None is what the release sets: the step is not done yet, like a function that
            # still raises NotImplementedError.
            raise _Failure(f"{name} is still None: set it to your expression.",
                           "not_implemented",
                           f"write `{name} = ...` in its cell; {expected}.")
        if type(value) is int:  # a plain number is an expression without symbols
            value = sp.Integer(value)
        elif type(value) is float:
            value = sp.Float(value)
        if isinstance(value, list | tuple):
            self._refuse(f"{name} is {describe_returned(value)}", expected,
                         "sp.solve returns a list of solutions: take the one you mean, "
                         "e.g. solutions[0]")
        if isinstance(value, dict):
            self._refuse(f"{name} is a dict", expected,
                         "sp.solve(..., dict=True) returns dicts: take the value")
        if isinstance(value, str):
            self._refuse(f"{name} is a string", expected,
                         "build the expression from the SymPy symbols, not as text")
        if not isinstance(value, sp.Basic):
            what = "a function" if callable(value) else describe_returned(value)
            self._refuse(f"{name} is {what}", expected,
                         "set the variable to the expression itself")
        if isinstance(value, sp.core.relational.Relational):
            self._refuse(f"{name} is an equation or inequality", expected,
                         "give the expression itself (for a solved equation, the side that "
                         "holds the solution)")
        if not isinstance(value, sp.Expr):
            self._refuse(f"{name} is a SymPy {type(value).__name__}", expected,
                         "it must be a single expression")
        try:
            found = structure(value)
        except TooComplex:
            raise self._too_large(name) from None
        if found.unknown:
            raise self._unsupported(name, found.unknown[0])
        self._check_symbols(found, name)
        return value

    @staticmethod
    def _too_large(name) -> _Failure:
        return _Failure(f"{name} is far larger than any answer to this step.", "too_large",
                        "simplify it before setting the variable.")

    def _unsupported(self, name, node) -> _Failure:
        from ._symeval import _UNSUPPORTED

        node = node if node.isidentifier() else "a node"
        reason = _UNSUPPORTED.get(node, f"it holds {node[:40]}, which the checker does not "
                                  "evaluate")
        return _Failure(f"{name} cannot be checked: {reason}.", "unsupported",
                        f"expected a SymPy expression in {self.allowed()}, built with +, -, *, /, "
                        "**, sp.log, sp.exp, sp.sqrt, sp.Sum and the functions the notebook uses.")

    def _refuse(self, what, expected, hint):
        raise _Failure(f"{what}; {expected}.", "wrong_type", hint + ".")

    def _check_symbols(self, found, name) -> None:
        symbols = self.derivation.symbols
        uses = set(self.step.uses)
        free_ok = set(self.step.free_indices)
        loose = found.free_indices - free_ok - (uses - set(symbols.indexed))
        if loose:
            index = symbols.shown(sorted(loose)[0])
            raise _Failure(
                f"{name} uses the index {index} outside a sum over it.", "lost_sum",
                "the quantity combines all terms: sum over them, "
                f"sp.Sum(..., ({index}, 1, {symbols.shown(symbols.count)})), instead of "
                "writing one.")
        for base in sorted(found.indexed):
            if base not in uses:
                self._foreign(base, name)
        for sym in sorted(found.symbols - free_ok):
            if sym in uses and sym not in symbols.indexed:
                continue
            if sym in uses:
                raise _Failure(
                    f"{name} uses {sym} on its own; the data are {symbols.shown(sym)}.",
                    "lost_sum",
                    f"sum over them with {symbols.summed()} and write {symbols.shown(sym)} "
                    "inside.")
            self._foreign(sym, name)

    def _foreign(self, sym, name):
        symbols = self.derivation.symbols
        shown = symbols.shown(sym)
        if sym in symbols.params:
            rule = self.step.follows
            if rule is not None and rule.kind == "root" and sym in (rule.at or {}):
                advice = (f"it is computed from the data alone: in place of {shown}, put in "
                          f"your estimate {rule.at[sym]}.")
            elif rule is not None and rule.kind == "root":
                advice = (f"it is computed from the data alone: solve your condition for "
                          f"{shown} and use the solution.")
            else:
                advice = self.step.absent or f"it is an expression in {self.allowed()} only."
            raise _Failure(f"{name} contains {shown}.", "contains_parameter", advice)
        if sym == symbols.count and symbols.indices and self.step.free_indices:
            raise _Failure(
                f"{name} contains {shown}: this step is about one sample, "
                f"{symbols.shown(symbols.indices[0])}, not a sum over all of them.",
                "foreign_symbols", f"write the expression for the sample "
                f"{symbols.shown(symbols.indices[0])} alone, in {self.allowed()}.")
        raise _Failure(
            f"{name} contains {shown}, which is not one of the symbols of this step.",
            "foreign_symbols", f"use the symbols the notebook defines: {self.allowed()}.")

    @staticmethod
    def values(expr, points, budget, *, float64=False):
        """The expression at every point, a list per data set."""
        from ._symeval import evaluate

        return [[evaluate(expr, env, budget, float64=float64) for env in group]
                for group in points]

    # ------------------------------------------------------------------ judging

    def run(self, value, *, hidden: bool = False, seed: int | None = None, given=None
            ) -> CheckResult:
        """Judge the student's expression ``value`` (``given``: their earlier step)."""
        from ._symeval import Budget, NotEvaluable, TooComplex

        seed = resolve_seed(hidden, seed)
        rng = np.random.default_rng([seed, zlib.crc32(self.id.encode())])
        points = self.derivation.points(rng, 8 if hidden else 5,
                                        draw_params=self.step.draw_params)
        extra = self._extra_points(rng, points)
        n = sum(len(g) for g in points) + len(extra)
        try:
            expr = self.expression(value)
            budget = Budget(_OPERATIONS)
            try:
                got = self.values(expr, points, budget)
                truth = self.values(self.truth(), points, Budget(10 * _OPERATIONS))
                ok = _agree(got, truth, self.step.up_to_constant) or (
                    _inconclusive(got, truth) and self._symbolically_equal(expr))
                if ok:
                    self._check_extra(expr, extra, budget)
            except NotEvaluable as exc:
                raise _Failure(f"{self.step.name} cannot be evaluated: {exc}.",
                               "index_range" if exc.node == "index_range" else "unsupported",
                               self._evaluation_hint(exc)) from None
            except TooComplex:
                raise _Failure(f"{self.step.name} takes far more work to evaluate than any "
                               "answer to this step.", "too_large",
                               "simplify it before setting the variable.") from None
            if ok:
                return CheckResult(self.id, True, n, n, f"{self.id}: correct (checked at {n} "
                                   "random values of its symbols)", None)
            note = self._follows(got, given, points)
            if note:
                return CheckResult(self.id, True, n, n, f"{self.id}: {note}", None)
            raise self._diagnose(got, points)
        except _Failure as failure:
            lines = [f"{self.id}: {failure.message}"]
            if failure.advice:
                # As for every exercise: "Diagnosis" names a catalogued mistake.
                catalogued = failure.diagnosis in {m.id for m in self.mistakes}
                lines.append(f"{'Diagnosis' if catalogued else 'Hint'}: {failure.advice}")
            return CheckResult(self.id, False, n, 0, "\n".join(lines), failure.diagnosis)

    def _symbolically_equal(self, expr) -> bool:
        """The second opinion where evaluation was undefined or borderline at some points.

        Both expressions, with the sums written out for a small number of terms, are
        simplified and compared; only for small expressions with small numbers whose
        expansion stays small, so that rebuilding or simplifying the student's expression can
        never take long.
        """
        import sympy as sp

        from ._symeval import structure

        if not _small_numbers(expr) or structure(expr).nodes > 150 \
                or _expanded_terms(expr) > _SYMBOLIC_TERMS:
            return False
        ns = self.derivation.ns
        count = self.derivation.symbols.count
        mine = {s.name: s for s in (getattr(ns, n) for n in self.derivation.symbols.scalars)}
        renamed = expr.xreplace({s: mine[s.name] for s in expr.free_symbols
                                 if isinstance(s, sp.Symbol) and s.name in mine})
        terms = {mine[count]: 3} if count in mine else {}
        difference = (renamed.subs(terms) - self.truth().subs(terms)).doit()
        if structure(difference).nodes > 400 or _expanded_terms(difference) > _SYMBOLIC_TERMS:
            return False
        simplified = sp.cancel(sp.together(sp.expand_log(difference)))
        if simplified != 0 and structure(simplified).nodes <= 60:
            simplified = sp.simplify(simplified)
        if simplified == 0:
            return True
        found = structure(simplified)
        params = set(self.derivation.symbols.params)
        return self.step.up_to_constant and not (found.symbols | found.indexed) & params

    def _extra_points(self, rng, points) -> list:
        """Points on kinks (with their bounds) and float64 points, drawn after the others."""
        extra = []
        if self.step.kink is not None:
            extra += [("kink", self.step.kink.place(dict(group[0]), rng)) for group in points]
        if self.step.stable is not None:
            import mpmath

            for group in points[:2]:
                for value in self.step.stable.values:
                    extra.append(("float64", {**group[0],
                                              self.step.stable.param: mpmath.mpf(value)}))
        return extra

    def _check_extra(self, expr, extra, budget) -> None:
        from ._symeval import Budget, evaluate

        ns = self.derivation.ns
        for kind, env in extra:
            if kind == "kink":
                got = evaluate(expr, env, budget)
                bounds = [evaluate(b(ns), env, Budget(_OPERATIONS))
                          for b in (self.step.kink.low, self.step.kink.high)]
                low, high = min(b.real for b in bounds), max(b.real for b in bounds)
                tol = _RTOL * max(1, abs(low), abs(high))
                if not (_finite(got) and abs(got.imag) <= tol
                        and low - tol <= got.real <= high + tol):
                    raise _Failure(
                        f"{self.step.name} is right away from the kinks, but not at a kink.",
                        "kink", "where the function has a kink, a subgradient can be any "
                        "value between the slopes on its two sides, and only those: check "
                        "the value your expression takes exactly there (for sp.Heaviside, "
                        "its second argument).")
            else:
                got = evaluate(expr, env, budget, float64=True)
                expected = evaluate(self.truth(), env, Budget(_OPERATIONS))
                if not (np.isfinite(got) and _close(got, expected, 1e-9)):
                    value = float(env[self.step.stable.param])
                    raise _Failure(
                        f"{self.step.name} is right in exact arithmetic, but not in float64 "
                        f"at {self.step.stable.param} = {value:g}.", "unstable",
                        "an exponential overflows (exp(710) is inf in float64) or a "
                        "difference of huge numbers cancels: rewrite it so that every "
                        "exp() gets an argument <= 0.")

    def _evaluation_hint(self, exc) -> str:
        symbols = self.derivation.symbols
        if exc.node == "index_range":
            names = [symbols.shown(n) for n in self.step.uses if n in symbols.indexed]
            index, count = symbols.shown(symbols.indices[0]), symbols.shown(symbols.count)
            return (f"the data are numbered from 1 to {count}: "
                    f"{names[0] if names else 'x[m]'} for {index} = 1, ..., "
                    f"{count}, so sum over ({index}, 1, {count}).")
        return f"expected an expression in {self.allowed()}."

    def _diagnose(self, got, points) -> _Failure:
        from ._symeval import Budget, NotEvaluable, TooComplex

        ns = self.derivation.ns
        constant = self.step.up_to_constant
        truth = self.values(self.truth(), points, Budget(10 * _OPERATIONS))
        asks = f"{self.step.name} is not {self.step.asks}."
        for mistake in self.step.mistakes:
            for model in mistake.models:
                try:
                    expected = self.values(model(ns), points, Budget(10 * _OPERATIONS))
                except (NotEvaluable, TooComplex):  # the model does not apply here
                    continue
                if _agree(got, expected, constant) and not _agree(expected, truth, constant):
                    return _Failure(asks, mistake.id, mistake.message)
        symbols = self.derivation.symbols
        params = [symbols.shown(p) for p in symbols.params if p in self.step.uses]
        return _generic(asks, got, truth, points, params or ["the parameters"], constant)

    def _follows(self, got, given, points) -> str | None:
        """A note when the answer follows correctly from the student's wrong earlier steps."""
        from ._symeval import Budget, NotEvaluable, TooComplex

        rule = self.step.follows
        if rule is None or given is None:
            return None
        names = rule.steps
        if len(names) > 1:
            if not isinstance(given, list | tuple) or len(given) != len(names):
                return None
        else:
            given = (given,)
        steps = [self.derivation.steps[name] for name in names]
        try:
            budget = Budget(_OPERATIONS)
            previous, wrong, used = [], [], {}
            for name, earlier, value in zip(names, steps, given, strict=True):
                try:
                    expr = earlier.expression(value, role=name)
                except _Failure:
                    if rule.kind != "root" or name == names[0]:
                        raise
                    continue  # an estimate not given: the root is taken at the expected one
                before = earlier.values(expr, points, budget)
                truth = earlier.values(earlier.truth(), points, Budget(_OPERATIONS))
                if not _agree(before, truth, earlier.step.up_to_constant):
                    if not earlier.attempted(expr, before, points, budget):
                        return None  # a made-up earlier step earns nothing downstream
                    wrong.append(name)
                previous.append(expr)
                used[name] = expr
            if not wrong:
                return None  # right earlier steps leave this one to be right on its own
            if rule.kind == "root" and not _varies(steps[0].values(previous[0], points,
                                                                   budget)):
                return None  # every value, or none, is a root of a constant
            if rule.kind == "derivative":
                ok = _derivative_matches(previous[0], got, points, rule, budget)
            elif rule.kind == "root":
                ok = self._root_matches(previous[0], got, points, rule, budget, used)
            else:
                expected = rule.build(self.derivation.ns, *previous)
                moved = [[rule.env(env) if rule.env else env for env in group]
                         for group in points]
                ok = _agree(got, self.values(expected, moved, budget), self.step.up_to_constant)
        except (_Failure, NotEvaluable, TooComplex):
            return None
        if not ok:
            return None
        which = " and ".join(wrong)
        itself = "is not right itself (see its check)" if len(wrong) == 1 else \
            "are not right themselves (see their checks)"
        return f"follows correctly from your {which}, which {itself}: this step earns its points."

    def attempted(self, expr, values, points, budget) -> bool:
        """Whether a wrong answer to this step is an attempt at it, which later steps may build
        on: a catalogued mistake of the step, or an expression that changes with each symbol
        (parameter or data) the right answer changes with.

        A constant, or an expression of the parameters without the data, is no attempt at a
        log-likelihood; building on it would make every later step trivial.
        """
        from ._symeval import NotEvaluable, TooComplex, evaluate

        if self._diagnose(values, points).diagnosis in {m.id for m in self.mistakes}:
            return True
        symbols = self.derivation.symbols
        truth = self.truth()
        for name in self.step.uses:
            if name == symbols.count:
                continue
            moved = [{**group[0], name: _nudged(group[0][name], symbols.scalars.get(name))}
                     for group in points if name in group[0]]
            try:
                pairs = [(evaluate(e, env, budget), evaluate(e, group[0], budget))
                         for env, group in zip(moved, points, strict=False)
                         for e in (truth, expr)]
            except (NotEvaluable, TooComplex):
                return False
            changes = [not _close(a, b, 1e-9) for a, b in pairs]
            if any(changes[0::2]) and not any(changes[1::2]):
                return False
        return True

    def _root_matches(self, previous, got, points, rule, budget, given) -> bool:
        from ._symeval import evaluate

        positive = self.derivation.symbols.scalars.get(rule.param, {}).get("positive")
        for group, values in zip(points, got, strict=True):
            value = values[0]
            if not _finite(value) or abs(value.imag) > 1e-20:
                return False
            env = dict(group[0])
            for name, step in (rule.at or {}).items():
                expr = given.get(step)
                if expr is None:
                    expr = self.derivation.steps[step].truth()
                env[name] = evaluate(expr, env, budget)
            root = rule.transform(value.real) if rule.transform else value.real
            if not _finite(root) or abs(getattr(root, "imag", 0)) > 1e-20:
                return False
            root = root.real
            if (positive and root <= 0) or (rule.within and not
                                            rule.within[0] < root < rule.within[1]):
                return False  # no root where the parameter lives
            env[rule.param] = root
            at_root = evaluate(previous, env, budget)
            scale = max(abs(evaluate(previous, g, budget)) for g in group)
            if not _finite(at_root) or not scale or abs(at_root) > _FOLLOW_RTOL * scale:
                return False
        return True


def _nudged(value, assumptions):
    """A value of a symbol moved so that anything depending on it changes."""
    if isinstance(value, dict):
        return {key: 1.3 * v + 0.61 for key, v in value.items()}
    if assumptions and assumptions.get("integer"):
        return value + 1
    if assumptions and assumptions.get("positive"):
        return 1.37 * value
    return value + 0.61


def _derivative_matches(previous, got, points, rule, budget) -> bool:
    """Whether ``got`` is the derivative of ``previous`` (central differences, 30 digits)."""
    import mpmath

    from ._symeval import DIGITS

    with mpmath.workdps(DIGITS):
        return _derivative_matches_here(previous, got, points, rule, budget)


def _derivative_matches_here(previous, got, points, rule, budget) -> bool:
    from ._symeval import evaluate

    for group, values in zip(points, got, strict=True):
        for env, value in zip(group, values, strict=True):
            slopes = []
            for sign in (1, -1):
                moved = dict(env)
                if rule.index is None:
                    h = 1e-12 * max(1, abs(env[rule.param]))
                    moved[rule.param] = env[rule.param] + sign * h
                else:
                    key = int(env[rule.index])
                    h = 1e-12 * max(1, abs(env[rule.param][key]))
                    moved[rule.param] = {**env[rule.param],
                                         key: env[rule.param][key] + sign * h}
                slopes.append(evaluate(previous, moved, budget))
            slope = (slopes[0] - slopes[1]) / (2 * h)
            if not (_finite(slope) and _finite(value)) \
                    or abs(slope - value) > _FOLLOW_RTOL * max(1, abs(slope)):
                return False
    return True


# --------------------------------------------------------------------------- comparisons


def _finite(value) -> bool:
    import mpmath

    return bool(mpmath.isfinite(value))


def _close(a, b, rtol=_RTOL) -> bool:
    if not (_finite(a) and _finite(b)):
        return False
    return abs(a - b) <= rtol * max(1, abs(a), abs(b))


def _agree(got, truth, up_to_constant: bool) -> bool:
    """Equal at every point, or (up to constants) equal up to one offset per data set."""
    for g_group, t_group in zip(got, truth, strict=True):
        if not up_to_constant:
            if not all(_close(g, t) for g, t in zip(g_group, t_group, strict=True)):
                return False
            continue
        if not all(_finite(v) for v in (*g_group, *t_group)):
            return False
        offsets = [g - t for g, t in zip(g_group, t_group, strict=True)]
        scale = max(1, *(abs(v) for v in (*g_group, *t_group)))
        if any(abs(o - offsets[0]) > _RTOL * scale for o in offsets[1:]):
            return False
    return True


def _inconclusive(got, truth) -> bool:
    """Undefined where the answer is defined at some points, or equal but for rounding."""
    pairs = [(g, t) for gg, tg in zip(got, truth, strict=True)
             for g, t in zip(gg, tg, strict=True)]
    undefined = [not _finite(g) and _finite(t) for g, t in pairs]
    agree = [_close(g, t, 1e-6) for g, t in pairs]
    defined_elsewhere = all(u or a for u, a in zip(undefined, agree, strict=True))
    borderline = all(agree) and not all(_close(g, t) for g, t in pairs)
    return (any(undefined) and defined_elsewhere) or borderline


# Terms an expression may have once expanded for the symbolic second opinion to run.
_SYMBOLIC_TERMS = 2000


def _expanded_terms(expr, cap: int = 10 * _SYMBOLIC_TERMS) -> int:
    """An upper bound of the number of terms of ``expr`` expanded (capped at ``cap``)."""
    import sympy as sp

    if isinstance(expr, sp.Add):
        return min(cap, sum(_expanded_terms(a, cap) for a in expr.args))
    if isinstance(expr, sp.Mul):
        product = 1
        for arg in expr.args:
            product = min(cap, product * _expanded_terms(arg, cap))
        return product
    if isinstance(expr, sp.Pow) and isinstance(expr.exp, sp.Integer):
        base = _expanded_terms(expr.base, cap)
        return cap if base > 1 and abs(int(expr.exp)) > 64 else min(cap, base ** abs(int(
            expr.exp)))
    return min(cap, max([1] + [_expanded_terms(a, cap) for a in getattr(expr, "args", ())]))


def _small_numbers(expr) -> bool:
    """Every integer and rational of ``expr`` below 100 (no sum or power can blow up)."""
    import sympy as sp

    for node in sp.preorder_traversal(expr):
        if isinstance(node, sp.Rational) and (abs(node.p) > 100 or node.q > 100):
            return False
    return True


def _varies(values) -> bool:
    return any(not _close(v, group[0], 1e-9) for group in values for v in group)


_NAMED_FACTORS = []


def _named_factors() -> list:
    if not _NAMED_FACTORS:
        import mpmath

        ln2, ln10 = mpmath.log(2), mpmath.log(10)
        _NAMED_FACTORS.extend([
            (2, "twice the answer: a factor 1/2 is missing"),
            (mpmath.mpf(1) / 2, "half the answer: a factor 2 is missing, or one 1/2 too many"),
            (4, "four times the answer"), (mpmath.mpf(1) / 4, "a quarter of the answer"),
            (1 / ln10, "the answer divided by ln 10: a logarithm has base 10 (np.log10, "
                       "sp.log(x, 10)); the natural logarithm is meant"),
            (1 / ln2, "the answer divided by ln 2: a logarithm has base 2; the natural "
                      "logarithm is meant"),
            (ln10, "the answer times ln 10: check the base of your logarithms"),
            (ln2, "the answer times ln 2: check the base of your logarithms"),
        ])
    return _NAMED_FACTORS


_M_FACTORS = (
    (lambda m: m, "your expression is M times the answer: a sum over the samples where the "
                  "answer has none, or a mean divided by M once too often."),
    (lambda m: 1 / m, "your expression is the answer divided by M: a mean where the answer "
                      "has a sum, or a division by M too many."),
    (lambda m: (m - 1) / m, "your expression is the answer times (M - 1)/M: check what you "
                            "divide by."),
    (lambda m: m / (m - 1), "your expression is the answer times M/(M - 1): you divided by "
                            "M - 1 where maximum likelihood divides by M."),
)


def _generic(asks, got, truth, points, params, up_to_constant) -> _Failure:
    """Diagnoses that need no catalogue: a sign, a factor, a constant, a dependence."""
    flat = [(g, t) for gg, tg in zip(got, truth, strict=True)
            for g, t in zip(gg, tg, strict=True)]
    if all(_finite(g) and abs(g) <= 1e-20 * max(1, abs(t)) for g, t in flat):
        # an expression equal to 0 (whatever rounding leaves of it): no factor to speak of
        return _Failure(asks, "zero", "your expression is 0 at every point checked: a "
                        "term that cancelled, or a step that was not carried out.")
    if _agree([[-g for g in group] for group in got], truth, up_to_constant):
        return _Failure(asks, "sign", "it has the opposite sign of the answer: check the "
                        "minus signs (for example, the log-likelihood and its negative).")
    factors = _ratios(got, truth, up_to_constant)
    if factors is not None:
        if all(_close(f, factors[0], 1e-9) for f in factors):
            for value, text in _named_factors():
                if _close(factors[0], value, 1e-9):
                    return _Failure(asks, "factor", f"your expression is {text}.")
            return _Failure(asks, "factor", "your expression is the answer times a constant "
                            f"factor (about {float(abs(factors[0])):.4g}"
                            f"{', with the opposite sign' if factors[0].real < 0 else ''}): "
                            "look for a factor you dropped or added.")
        sizes = [group[0].get("M") for group in points]
        if all(s is not None and s > 1 for s in sizes):
            for relation, text in _M_FACTORS:
                if all(_close(f, relation(s), 1e-9)
                       for f, s in zip(factors, sizes, strict=True)):
                    return _Failure(asks, "factor_m", text)
    names = " or ".join(params)
    if not up_to_constant and _varies(truth) and _agree(got, truth, True):
        return _Failure(asks, "constant_off",
                        f"the part that changes with {names} is right, but a term that does "
                        f"not depend on {names} is wrong or missing: here that term counts.")
    if any(not _finite(g) and _finite(t) for g, t in flat):
        return _Failure(asks, "not_finite", "your expression is undefined (a division by "
                        "zero, a log of zero or of a negative number) where the answer is "
                        "finite.")
    if any(abs(g.imag) > 1e-12 * max(1, abs(g)) for g, _ in flat):
        return _Failure(asks, "complex", "your expression is complex where the answer is "
                        "real: a logarithm or square root of a negative quantity.")
    if _varies(truth) and not _varies(got):
        return _Failure(asks, "misses_parameter",
                        f"your expression does not change with {names}, but the answer does.")
    if _varies(got) and not _varies(truth):
        return _Failure(asks, "extra_parameter",
                        f"your expression changes with {names}, but the answer does not.")
    return _Failure(asks, None, "")


def _ratios(got, truth, up_to_constant):
    """One factor per data set when got = factor * truth in every set, else None."""
    per_group = []
    for g_group, t_group, in zip(got, truth, strict=True):
        if up_to_constant:
            g_group = [g - g_group[0] for g in g_group[1:]]
            t_group = [t - t_group[0] for t in t_group[1:]]
        pairs = [(g, t) for g, t in zip(g_group, t_group, strict=True)
                 if _finite(t) and abs(t) > 1e-9 and _finite(g)]
        if not pairs or len(pairs) < len(g_group):
            return None
        factor = pairs[0][0] / pairs[0][1]
        if not all(_close(g, factor * t, 1e-9) for g, t in pairs):
            return None
        per_group.append(factor)
    return per_group
