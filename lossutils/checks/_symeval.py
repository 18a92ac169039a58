"""Numeric evaluation of SymPy expressions for the derivation checks, with a work budget.

The derivation checks compare a student's expression with the expected one by evaluating
both at random values of the symbols. SymPy's own ``subs``/``evalf`` rebuild the expression
with automatic evaluation, which turns ``Pow(2, 10**30, evaluate=False)`` into an exact
integer of 10**30 bits; this module instead walks the tree once per point and computes every
node in mpmath at a fixed precision, so the cost is bounded by the number of nodes (and the
terms of the sums), whatever the expression holds. Anything it does not know is reported, not
guessed.

SymPy and mpmath are imported when a function here is first called.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Budget", "NotEvaluable", "Structure", "TooComplex", "evaluate", "structure"]

#: Digits of the evaluation: enough that a difference of 1e-12 is not rounding.
DIGITS = 30
#: Terms one sum or product may have (the checks draw M <= 8; a student's 1..10**9 is refused).
MAX_TERMS = 64
#: Nodes a checked expression may have (the verification codec allows as many).
MAX_NODES = 2000


class NotEvaluable(ValueError):
    """The expression holds a node the checker does not evaluate (``node`` names it)."""

    def __init__(self, node: str, message: str):
        super().__init__(message)
        self.node = node


class TooComplex(ValueError):
    """Evaluating the expression would take more work than any answer needs."""


class Budget:
    """Operations left for evaluation; shared by every point of one check."""

    __slots__ = ("left",)

    def __init__(self, operations: int):
        self.left = operations

    def spend(self, n: int = 1) -> None:
        self.left -= n
        if self.left < 0:
            raise TooComplex("the expression takes too much work to evaluate")


@dataclass
class Structure:
    """What an expression is made of, read without evaluating it.

    ``symbols``: names of free plain symbols; ``indexed``: names of indexed bases used;
    ``free_indices``: names of symbols used as an index outside any sum binding them;
    ``plain_bases``: names used both as a plain symbol and as an indexed base;
    ``unknown``: type names of nodes :func:`evaluate` does not handle; ``nodes``: the count.
    """

    symbols: set = field(default_factory=set)
    indexed: set = field(default_factory=set)
    free_indices: set = field(default_factory=set)
    unknown: list = field(default_factory=list)
    nodes: int = 0


def _sympy():
    import sympy

    return sympy


_FUNCTIONS = ("exp", "log", "Abs", "sign", "sin", "cos", "tan", "sinh", "cosh", "tanh",
              "Max", "Min", "Heaviside", "KroneckerDelta", "Piecewise")
_LOGIC = ("And", "Or", "Not", "StrictLessThan", "LessThan", "StrictGreaterThan",
          "GreaterThan", "Equality", "Unequality")


def structure(expr, max_nodes: int = MAX_NODES) -> Structure:
    """Walk ``expr`` once: its free symbols, indexed bases, free indices and unknown nodes.

    Raises
    ------
    TooComplex
        If the expression has more than ``max_nodes`` nodes.
    """
    sp = _sympy()
    out = Structure()
    stack = [(expr, frozenset())]
    while stack:
        node, bound = stack.pop()
        out.nodes += 1
        if out.nodes > max_nodes:
            raise TooComplex(f"the expression has more than {max_nodes} parts")
        if isinstance(node, sp.Symbol):
            if node.name not in bound:
                out.symbols.add(node.name)
            continue
        if isinstance(node, sp.Indexed):
            out.indexed.add(node.base.label.name if isinstance(node.base, sp.IndexedBase)
                            else str(type(node.base).__name__))
            for index in node.indices:
                for sym in _symbols_in(index):
                    if sym not in bound:
                        out.free_indices.add(sym)
                stack.append((index, bound))
            continue
        if isinstance(node, sp.Sum | sp.Product):
            inner = set(bound)
            # The last limit is the outermost: its variable may bound the earlier ones.
            for limit in reversed(node.limits):
                if len(limit) != 3:
                    out.unknown.append(f"{type(node).__name__} without limits")
                    continue
                var, low, high = limit
                stack.append((low, frozenset(inner)))
                stack.append((high, frozenset(inner)))
                inner.add(var.name)
            stack.append((node.function, frozenset(inner)))
            continue
        if isinstance(node, sp.Number) or node in _constants():
            continue
        name = type(node).__name__
        if isinstance(node, sp.Add | sp.Mul | sp.Pow) or name in _FUNCTIONS or name in _LOGIC \
                or name == "ExprCondPair" or isinstance(node, sp.logic.boolalg.BooleanAtom):
            stack.extend((arg, bound) for arg in node.args)
            continue
        out.unknown.append(name)
    return out


def _symbols_in(expr) -> set:
    sp = _sympy()
    if isinstance(expr, sp.Symbol):
        return {expr.name}
    found = set()
    for arg in getattr(expr, "args", ()):
        found |= _symbols_in(arg)
    return found


def _constants() -> dict:
    sp = _sympy()
    return {sp.pi: "pi", sp.E: "e", sp.EulerGamma: "euler", sp.GoldenRatio: "phi",
            sp.I: "j", sp.oo: "inf", sp.S.NegativeInfinity: "-inf", sp.zoo: "nan",
            sp.nan: "nan"}


def evaluate(expr, env: dict, budget: Budget, *, float64: bool = False):
    """The value of ``expr`` with every symbol taken from ``env`` (an mpmath number).

    ``env`` maps a symbol's name to a number, and an indexed base's name to a dict from an
    index (an int, or a tuple of ints) to a number. Sums and products bind their variable for
    their body. Non-real intermediate values are allowed (``log`` of a negative number is
    complex); a division by zero gives nan.

    With ``float64=True`` every operation is done in numpy float64 instead, as numpy code
    written from the expression would do it (``exp(800)`` is inf): this shows whether a
    formula is numerically stable. The result is then a numpy float.

    Raises
    ------
    NotEvaluable
        For a node it does not evaluate, a symbol missing from ``env`` or an index outside
        the data (the message says which).
    TooComplex
        When ``budget`` runs out.
    """
    import mpmath

    if float64:
        import numpy

        with numpy.errstate(all="ignore"):
            floats = {k: (numpy.float64(float(v)) if not isinstance(v, dict) else
                          {i: numpy.float64(float(x)) for i, x in v.items()})
                      for k, v in env.items()}
            return _eval(expr, floats, budget, _sympy(), _Float64)
    with mpmath.workdps(DIGITS):
        return _eval(expr, env, budget, _sympy(), mpmath)


def _to_float(number: int):
    try:
        return _Float64.mpf(number)
    except OverflowError:
        return _Float64.mpf(_Float64.inf if number > 0 else -_Float64.inf)


class _Float64:
    """The few mpmath names :func:`_eval` uses, in numpy float64 arithmetic."""

    import math as _math

    import numpy as _np

    inf, nan, pi, e = _np.inf, _np.nan, _np.float64(_math.pi), _np.float64(_math.e)
    euler, phi = _np.float64(0.5772156649015329), _np.float64(1.618033988749895)
    j = _np.complex128(1j)
    mpf = _np.float64
    exp, log, sin, cos, tan = _np.exp, _np.log, _np.sin, _np.cos, _np.tan
    sinh, cosh, tanh = _np.sinh, _np.cosh, _np.tanh
    re, im, isfinite = _np.real, _np.imag, _np.isfinite

    @staticmethod
    def fsum(values):
        total = _Float64.mpf(0)
        for value in values:
            total = total + value
        return total

    @staticmethod
    def power(base, exponent):
        return _Float64._np.power(base, exponent)

    @staticmethod
    def nint(value):
        return _Float64._np.rint(value)


def _integer(value, what: str, mp) -> int:
    real = mp.re(value)
    if abs(mp.im(value)) > 1e-20 or not mp.isfinite(real) or abs(real - mp.nint(real)) > 1e-9:
        raise NotEvaluable("index", f"{what} is not a whole number")
    number = int(mp.nint(real))
    if abs(number) > 10**6:
        raise NotEvaluable("index", f"{what} is far outside the data")
    return number


def _real(value, mp):
    if abs(mp.im(value)) > 1e-20:
        raise NotEvaluable("complex", "a comparison, Max or Min met a complex number")
    return mp.re(value)


def _eval(node, env, budget, sp, mp):
    budget.spend()
    if isinstance(node, sp.Symbol):
        if node.name not in env or isinstance(env[node.name], dict):
            raise NotEvaluable("symbol", f"the symbol {node.name} has no value here")
        return env[node.name]
    if isinstance(node, sp.Rational):  # integers included
        if mp is _Float64:
            return _to_float(int(node.p)) / _to_float(int(node.q))
        return mp.mpf(int(node.p)) / int(node.q)
    if isinstance(node, sp.Float):
        return _Float64.mpf(float(node)) if mp is _Float64 else mp.mpf(node._mpf_)
    if isinstance(node, sp.Add):
        return mp.fsum(_eval(a, env, budget, sp, mp) for a in node.args)
    if isinstance(node, sp.Mul):
        value = mp.mpf(1)
        for arg in node.args:
            value = value * _eval(arg, env, budget, sp, mp)
        return value
    if isinstance(node, sp.Pow):
        base = _eval(node.base, env, budget, sp, mp)
        exponent = _eval(node.exp, env, budget, sp, mp)
        budget.spend(4)
        try:
            return mp.power(base, exponent)
        except ZeroDivisionError:
            return mp.nan
    if isinstance(node, sp.Indexed):
        name = node.base.label.name if isinstance(node.base, sp.IndexedBase) else None
        data = env.get(name)
        if not isinstance(data, dict):
            raise NotEvaluable("indexed", f"{name}[...] has no values here")
        index = tuple(_integer(_eval(i, env, budget, sp, mp), f"an index of {name}", mp)
                      for i in node.indices)
        key = index[0] if len(index) == 1 else index
        if key not in data:
            raise NotEvaluable("index_range", f"{name}[{', '.join(map(str, index))}] is "
                               "outside the data")
        return data[key]
    if isinstance(node, sp.Sum | sp.Product):
        return _eval_sum(node, env, budget, sp, mp)
    constant = _constants().get(node) if isinstance(node, sp.Atom) else None
    if constant is not None:
        return {"pi": mp.pi, "e": mp.e, "euler": mp.euler, "phi": mp.phi, "j": mp.j,
                "inf": mp.inf, "-inf": -mp.inf, "nan": mp.nan}[constant]
    name = type(node).__name__
    if isinstance(node, sp.logic.boolalg.BooleanAtom):
        return bool(node)
    if name == "Piecewise":
        for pair in node.args:
            if _eval(pair.cond, env, budget, sp, mp):
                return _eval(pair.expr, env, budget, sp, mp)
        return mp.nan
    args = [_eval(a, env, budget, sp, mp) for a in node.args]
    budget.spend(4)
    try:
        return _apply(name, args, mp)
    except ZeroDivisionError:
        return mp.nan


def _apply(name, args, mp):
    unary = {"exp": mp.exp, "log": mp.log, "Abs": abs, "sin": mp.sin, "cos": mp.cos,
             "tan": mp.tan, "sinh": mp.sinh, "cosh": mp.cosh, "tanh": mp.tanh}
    if name in unary and len(args) == 1:
        return unary[name](args[0])
    if name == "sign":
        z = args[0]
        return mp.mpf(0) if z == 0 else z / abs(z)
    if name in ("Max", "Min"):
        reals = [_real(a, mp) for a in args]
        return max(reals) if name == "Max" else min(reals)
    if name == "Heaviside":
        x = _real(args[0], mp)
        at_zero = args[1] if len(args) > 1 else mp.mpf(0.5)
        return mp.mpf(1) if x > 0 else mp.mpf(0) if x < 0 else at_zero
    if name == "KroneckerDelta":
        return mp.mpf(1) if args[0] == args[1] else mp.mpf(0)
    if name in ("StrictLessThan", "LessThan", "StrictGreaterThan", "GreaterThan"):
        a, b = _real(args[0], mp), _real(args[1], mp)
        return {"StrictLessThan": a < b, "LessThan": a <= b, "StrictGreaterThan": a > b,
                "GreaterThan": a >= b}[name]
    if name in ("Equality", "Unequality"):
        return (args[0] == args[1]) == (name == "Equality")
    if name == "And":
        return all(args)
    if name == "Or":
        return any(args)
    if name == "Not":
        return not args[0]
    raise NotEvaluable(name, _UNSUPPORTED.get(name, f"the checker does not evaluate {name}"))


_UNSUPPORTED = {
    "Derivative": "it holds an unevaluated derivative: call .doit() on it (or use sp.diff)",
    "Integral": "it holds an unevaluated integral: call .doit() on it, or do the integral "
                "by hand",
    "erf": "it holds erf, the error function, which sp.integrate leaves where it has not "
           "simplified its result: call sp.simplify on it, or do the integral by hand (for an "
           "expectation under a Gaussian, from its mean and variance)",
    "erfc": "it holds erfc, the complementary error function, which sp.integrate leaves where "
            "it has not simplified its result: call sp.simplify on it, or do the integral by "
            "hand (for an expectation under a Gaussian, from its mean and variance)",
    "Subs": "it holds an unevaluated substitution: call .doit() on it",
    "Limit": "it holds an unevaluated limit",
}


def _eval_sum(node, env, budget, sp, mp):
    is_sum = isinstance(node, sp.Sum)
    if any(len(limit) != 3 for limit in node.limits):
        raise NotEvaluable("limits", "a sum or product needs limits, e.g. (m, 1, M)")

    def run(limits, scope):
        if not limits:
            return _eval(node.function, scope, budget, sp, mp)
        var, low, high = limits[0]
        first = _integer(_eval(low, scope, budget, sp, mp), "the lower limit of a sum", mp)
        last = _integer(_eval(high, scope, budget, sp, mp), "the upper limit of a sum", mp)
        if last - first + 1 > MAX_TERMS:
            raise NotEvaluable("limits", f"a sum or product runs over {last - first + 1} "
                               "terms; the data have far fewer")
        total = mp.mpf(0) if is_sum else mp.mpf(1)
        for value in range(first, last + 1):
            inner = dict(scope)
            inner[var.name] = mp.mpf(value)
            term = run(limits[1:], inner)
            total = total + term if is_sum else total * term
        return total

    return run(list(reversed(node.limits)), env)
