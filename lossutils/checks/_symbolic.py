"""The derivation exercise of notebook 02: -log N(y; y_hat, 1/beta) as a SymPy expression.

SymPy is imported only when this exercise runs, so ``import lossutils.checks`` stays cheap.
"""

from __future__ import annotations

from ._core import Case, Exercise, Mistake, Verdict, register
from ._plain import describe_returned

__all__ = ["SymbolicExercise"]

# Points (y, y_hat, beta) at which expressions are compared numerically: model matching by
# evaluation is much faster than simplify, and tolerates 0.5 for 1/2 or 3.14159 for pi.
_POINTS = ((0.3, -1.2, 2.5), (2.0, 0.5, 0.4), (-1.0, 1.7, 7.0))


def _truth(y, y_hat, beta):
    import sympy as sp

    return sp.log(2 * sp.pi) / 2 - sp.log(beta) / 2 + beta * (y - y_hat) ** 2 / 2


def _std_instead_of_variance(y, y_hat, beta):
    import sympy as sp

    # sigma = 1/beta instead of sigma**2 = 1/beta
    return sp.log(2 * sp.pi) / 2 - sp.log(beta) + beta**2 * (y - y_hat) ** 2 / 2


def _precision_as_variance(y, y_hat, beta):
    import sympy as sp

    return sp.log(2 * sp.pi) / 2 + sp.log(beta) / 2 + (y - y_hat) ** 2 / (2 * beta)


def _missing_half_quadratic(y, y_hat, beta):
    import sympy as sp

    return sp.log(2 * sp.pi) / 2 - sp.log(beta) / 2 + beta * (y - y_hat) ** 2


def _missing_half_everywhere(y, y_hat, beta):
    import sympy as sp

    return sp.log(2 * sp.pi) - sp.log(beta) + beta * (y - y_hat) ** 2


def _log_likelihood(y, y_hat, beta):
    return -_truth(y, y_hat, beta)


def _quadratic_sign(y, y_hat, beta):
    import sympy as sp

    return sp.log(2 * sp.pi) / 2 - sp.log(beta) / 2 - beta * (y - y_hat) ** 2 / 2


MISTAKES = (
    Mistake(
        "std_instead_of_variance",
        "you used 1/beta as the standard deviation; beta is the precision, so 1/beta is the "
        "variance sigma^2 and sigma = 1/sqrt(beta).",
        models=(_std_instead_of_variance,),
    ),
    Mistake(
        "precision_as_variance",
        "you used beta as the variance; beta is the precision, the variance is 1/beta.",
        models=(_precision_as_variance,),
    ),
    Mistake(
        "missing_half",
        "a factor 1/2 is missing: the density has exp(-beta (y - y_hat)^2 / 2) and a "
        "normalising constant sqrt(beta / (2 pi)), whose log is (log beta - log 2 pi) / 2.",
        models=(_missing_half_quadratic, _missing_half_everywhere),
    ),
    Mistake(
        "sign_error",
        "a sign is wrong: the negative log-likelihood is 1/2 log(2 pi) - 1/2 log(beta) "
        "+ beta/2 (y - y_hat)^2, which grows with the squared error.",
        models=(_log_likelihood, _quadratic_sign),
    ),
    Mistake(
        "constant_off",
        "the part that depends on y_hat is right, but the constant term differs: check the "
        "normalising constant 1/2 log(2 pi) - 1/2 log(beta).",
    ),
    Mistake(
        "foreign_symbols",
        "your expression uses symbols other than the arguments y, y_hat, beta: build it "
        "from the function's arguments.",
    ),
)


def _values(expr, symbols):
    """Numeric values of ``expr`` at the comparison points (complex and nan allowed)."""
    out = []
    for point in _POINTS:
        value = complex(expr.subs(dict(zip(symbols, point, strict=True))).evalf())
        out.append(value)
    return out


def _agree(a, b) -> bool:
    return all(abs(x - z) <= 1e-9 * max(1.0, abs(z)) for x, z in zip(a, b, strict=True))


class SymbolicExercise(Exercise):
    """Compare a returned SymPy expression with the exact Gaussian NLL of one sample."""

    def make_cases(self, rng, hidden):
        import sympy as sp

        y, y_hat = sp.symbols("y y_hat", real=True)
        beta = sp.Symbol("beta", positive=True)
        return [Case("SymPy symbols y, y_hat (real) and beta (positive)", (y, y_hat, beta))]

    def describe_input(self, case):
        return "y, y_hat, beta = SymPy symbols (y, y_hat real; beta positive)"

    def judge(self, case, output, warnings=()):
        import sympy as sp

        mistakes = {m.id: m for m in self.mistakes}
        if not isinstance(output, sp.Expr):
            return Verdict(
                False,
                f"returned {describe_returned(output)}; expected a SymPy expression built "
                "from y, y_hat and beta (e.g. with sp.log and sp.pi).",
                "wrong_type",
                "return the expression itself, not a number or a string.",
            )
        symbols = case.args
        by_name = {s.name: s for s in symbols}
        free = output.free_symbols
        unknown = sorted(str(s) for s in free if getattr(s, "name", None) not in by_name)
        shown = f"got:      {sp.sstr(output)}"
        if unknown:
            return Verdict(False, f"your expression contains {', '.join(unknown)}.\n{shown}",
                           "foreign_symbols", mistakes["foreign_symbols"].message)
        # Symbols of the same name but other assumptions (sp.Symbol("beta")) are the same
        # variable to the student: rename rather than fail.
        expr = output.xreplace({s: by_name[s.name] for s in free})
        truth = _truth(*symbols)
        # expand + expand_log settles these expressions in milliseconds; simplify can take a
        # second, and the numeric comparison below backs up any form expand leaves unsettled.
        diff = sp.expand(sp.expand_log(expr - truth, force=True))
        try:
            got_values = _values(expr, symbols)
        except (TypeError, ValueError):
            got_values = None
        if diff == 0 or (got_values is not None and _agree(got_values, _values(truth, symbols))):
            return Verdict(True)
        message = f"your expression is not -log N(y; y_hat, 1/beta).\nexpected: " \
            f"{sp.sstr(truth)}\n{shown}"
        if got_values is not None:
            for mistake in self.mistakes:
                if any(_agree(got_values, _values(m(*symbols), symbols)) for m in mistake.models):
                    return Verdict(False, message, mistake.id, mistake.message)
        if not diff.has(symbols[1]):
            off = mistakes["constant_off"]
            return Verdict(False, f"{message}\nit differs from the answer by the constant "
                           f"{sp.sstr(diff)}.", off.id, off.message)
        return Verdict(False, message, None)


register(
    SymbolicExercise(
        "gaussian_nll_symbolic",
        notebook="02-gaussian-l2",
        signature="gaussian_nll_symbolic(y, y_hat, beta)",
        arg_names=("y", "y_hat", "beta"),
        mistakes=MISTAKES,
    )
)
