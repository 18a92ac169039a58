"""The untrusted side of verification: runs the student's solution code in the sandbox.

This file runs as a script (``python -I -c <this source>``) inside the sandbox, where
``lossutils`` is deliberately not importable: the student's code must not reach the reference
library. It therefore imports nothing but the standard library and numpy. The trusted grader
(:mod:`lossutils.grading.verify`) sends it, as JSON lines on stdin:

1. ``{"op": "load", "core": [[module, source], ...], "prelude": [...], "cells": [...],
   "names": [...]}``: the checker's calling machinery (``lossutils.checks._given``,
   ``_plain`` and ``_calling``: no reference inside),
   the master's import lines, and the student's cells; it answers which cells raised and
   whether each requested name is a function;
2. ``{"op": "call", "name": ..., "args": [...], "kwargs": {...}, "arg_names": [...]}`` per
   case (and per optimizer step): it calls the function with ``_core.call_safely``
   (arguments that name one of the student's functions, as ``train``'s ``loss_fn`` does, are
   resolved among the student's definitions) and answers with the outcome, the arguments as
   the function left them, and the exception's type name and text, all plain data;
3. ``{"op": "values", "names": [...]}`` for the steps of a derivation, whose answers are
   SymPy expressions bound to names: it answers each one encoded with the codec below, or as
   plain data when it is not a SymPy object;
4. ``{"op": "exit"}`` (optional: the grader simply kills the process when it is done).

Only JSON travels; the trusted side validates sizes and judges with the reference itself.
The SymPy codec below is shared with the trusted side, which decodes with an allow list.
"""

from __future__ import annotations

import math

__all__ = ["SympyTooComplex", "decode_sympy", "encode_sympy"]

# Nodes the codec knows; the decoder rebuilds exactly these and nothing else. They are the
# nodes the derivation checks evaluate (lossutils.checks._symeval; a test keeps the two in step):
# sums over indexed data, Kronecker deltas and the pieces of a subgradient among them.
SYMPY_FUNCTIONS = ("Add", "Mul", "Pow", "log", "exp", "Abs", "sin", "cos", "tan", "sign",
                   "sinh", "cosh", "tanh", "Max", "Min", "Heaviside", "KroneckerDelta",
                   "Piecewise", "ExprCondPair", "Sum", "Product", "Indexed", "Tuple",
                   "StrictLessThan", "LessThan", "StrictGreaterThan", "GreaterThan", "Equality",
                   "Unequality", "And", "Or", "Not")
SYMPY_CONSTANTS = ("pi", "E", "I", "oo", "-oo", "zoo", "nan", "EulerGamma", "GoldenRatio",
                   "true", "false")
SYMPY_ASSUMPTIONS = ("real", "positive", "negative", "nonnegative", "nonpositive", "integer",
                     "finite", "complex")
_MAX_NODES = 2000
_MAX_DEPTH = 60
# A bound on the polynomial degree after expansion: the judge expands, and (y + b)**10**4
# nested in a few powers would take the trusted grader hours. Honest answers have degree 3.
_MAX_DEGREE = 24
_MAX_DIGITS = 40


class SympyTooComplex(ValueError):
    """A returned expression is larger or of higher degree than any answer could be."""


def encode_sympy(expr, _budget=None, _depth=0) -> dict:
    """Encode a SymPy expression as a JSON tree of allow-listed nodes (raises ValueError)."""
    import sympy as sp

    budget = _budget if _budget is not None else [_MAX_NODES]
    budget[0] -= 1
    if budget[0] < 0 or _depth > _MAX_DEPTH:
        raise SympyTooComplex("the expression is too large")
    if isinstance(expr, sp.Symbol):
        assumptions = {k: bool(v) for k, v in expr.assumptions0.items()
                       if k in SYMPY_ASSUMPTIONS and v is not None}
        return {"sym": str(expr.name), "assumptions": assumptions}
    if isinstance(expr, sp.Integer):
        return {"int": str(int(expr))}
    if isinstance(expr, sp.Rational):
        return {"rat": [str(int(expr.p)), str(int(expr.q))]}
    if isinstance(expr, sp.Float):
        return {"float": str(expr)}
    if isinstance(expr, sp.IndexedBase):
        return {"ibase": str(expr.label)}
    for name, value in _constants().items():
        if expr is value:
            return {"const": name}
    name = type(expr).__name__
    if name not in SYMPY_FUNCTIONS:
        raise ValueError(f"unsupported SymPy node {name}")
    return {"f": name, "args": [encode_sympy(a, budget, _depth + 1) for a in expr.args]}


def _constants() -> dict:
    import sympy as sp

    return {"pi": sp.pi, "E": sp.E, "I": sp.I, "oo": sp.oo, "-oo": sp.S.NegativeInfinity,
            "zoo": sp.zoo, "nan": sp.nan, "EulerGamma": sp.EulerGamma,
            "GoldenRatio": sp.GoldenRatio, "true": sp.true, "false": sp.false}


def _degree(node: dict, _depth: int = 0) -> float:
    if _depth > _MAX_DEPTH:
        raise SympyTooComplex("the expression is nested too deeply")
    if "sym" in node:
        return 1
    if "f" not in node:
        return 0
    degrees = [_degree(a, _depth + 1) for a in node["args"]]
    if node["f"] == "Add":
        return max(degrees, default=0)
    if node["f"] == "Mul":
        return sum(degrees)
    if node["f"] == "Pow" and len(node["args"]) == 2:
        exponent = node["args"][1]
        if "int" in exponent:
            return abs(int(exponent["int"])) * degrees[0]
        if "rat" in exponent:
            return math.ceil(abs(int(exponent["rat"][0])) / max(abs(int(exponent["rat"][1])),
                                                                 1)) * degrees[0]
        return degrees[0] + degrees[1] + 1
    return max(degrees, default=0) + 1


def decode_sympy(node) -> object:
    """Rebuild an expression encoded by :func:`encode_sympy`, accepting only known nodes.

    Raises ValueError (:class:`SympyTooComplex` for size and degree) on anything else.
    """
    count = [0]
    _check_tree(node, count, 0)
    if _degree(node) > _MAX_DEGREE:
        raise SympyTooComplex(f"the expression has a polynomial degree above {_MAX_DEGREE}")
    return _build(node)


def _check_tree(node, count, depth) -> None:
    count[0] += 1
    if count[0] > _MAX_NODES or depth > _MAX_DEPTH:
        raise SympyTooComplex("the expression is too large")
    if type(node) is not dict:
        raise ValueError("malformed expression")
    if "f" in node:
        if node["f"] not in SYMPY_FUNCTIONS or type(node.get("args")) is not list:
            raise ValueError(f"unsupported SymPy node {node.get('f')!r}")
        for arg in node["args"]:
            _check_tree(arg, count, depth + 1)
        return
    for key, pattern in (("int", "-0123456789"), ("float", "-+.0123456789eE")):
        if key in node:
            text = node[key]
            if type(text) is not str or not text or len(text) > _MAX_DIGITS \
                    or not set(text) <= set(pattern):
                raise SympyTooComplex(f"a number literal is too long or malformed: {text!r}")
            return
    if "rat" in node:
        parts = node["rat"]
        if type(parts) is not list or len(parts) != 2:
            raise ValueError("malformed rational")
        for part in parts:
            _check_tree({"int": part}, [0], depth)
        return
    if "const" in node:
        if node["const"] not in SYMPY_CONSTANTS:
            raise ValueError(f"unknown constant {node['const']!r}")
        return
    if "ibase" in node:
        if type(node["ibase"]) is not str or not node["ibase"].isidentifier() \
                or len(node["ibase"]) > 64:
            raise ValueError("malformed indexed symbol")
        return
    if "sym" in node:
        name, assumptions = node["sym"], node.get("assumptions", {})
        if type(name) is not str or not name.isidentifier() or len(name) > 64 \
                or type(assumptions) is not dict \
                or not all(k in SYMPY_ASSUMPTIONS and type(v) is bool
                           for k, v in assumptions.items()):
            raise ValueError("malformed symbol")
        return
    raise ValueError("malformed expression")


def _build(node):
    import sympy as sp

    if "sym" in node:
        return sp.Symbol(node["sym"], **node.get("assumptions", {}))
    if "int" in node:
        return sp.Integer(int(node["int"]))
    if "rat" in node:
        return sp.Rational(int(node["rat"][0]), int(node["rat"][1]))
    if "float" in node:
        return sp.Float(node["float"])
    if "const" in node:
        return _constants()[node["const"]]
    if "ibase" in node:
        return sp.IndexedBase(node["ibase"])
    args = [_build(a) for a in node["args"]]
    name = node["f"]
    if name == "ExprCondPair":
        from sympy.functions.elementary.piecewise import ExprCondPair

        return ExprCondPair(*args)
    if name in ("Sum", "Product"):
        return getattr(sp, name)(args[0], *args[1:])
    cls = getattr(sp, name)
    # Rebuilt as sent: evaluating could turn a small tree into a huge one (2**(10**30)).
    if name in ("Add", "Mul", "Pow", "Max", "Min", "Piecewise", "StrictLessThan", "LessThan",
                "StrictGreaterThan", "GreaterThan", "Equality", "Unequality"):
        return cls(*args, evaluate=False)
    return cls(*args)


# --------------------------------------------------------------------------- the runner


class CellTimeout(BaseException):
    """A solution cell ran past its time limit while being loaded."""


def _cell_timed_out(signum, frame):
    raise CellTimeout("the cell ran past its time limit and was interrupted")


def _main() -> None:  # pragma: no cover - runs in the sandbox, exercised through verify/
    import io
    import json
    import os
    import signal
    import sys
    import types

    # The protocol keeps private copies of stdin and stdout; the student's code gets
    # /dev/null and a capped buffer, so a stray print or input() cannot corrupt it.
    proto_in = os.fdopen(os.dup(0), "r", encoding="utf-8")
    proto_out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)

    class _Sink(io.StringIO):
        def write(self, text):
            if self.tell() < 100_000:
                super().write(text[:100_000])
            return len(text)

    sys.stdin = io.StringIO()
    sys.stdout = sys.stderr = _Sink()
    # The reference library stays out of reach even if it were on disk.
    sys.modules["lossutils"] = None

    def send(message):
        proto_out.write(json.dumps(message, allow_nan=True) + "\n")
        proto_out.flush()

    def short(exc):
        try:
            text = str(exc)
        except Exception:  # an exception whose __str__ fails
            text = "?"
        return {"type": type(exc).__name__, "text": text[:201]}

    namespace: dict = {"__name__": "__main__"}
    core = None
    for line in proto_in:
        request = json.loads(line)
        op = request["op"]
        if op == "exit":
            return
        if op == "values":
            send({"op": "values", "values": {name: _value(core, namespace, name)
                                             for name in request["names"]}})
            continue
        if op == "load":
            # The checker's calling helpers, as a package of their own so that their
            # relative imports resolve; the last module is the one that calls.
            package = types.ModuleType("checks_core")
            package.__path__ = []
            sys.modules[package.__name__] = package
            for name, source in request["core"]:
                core = types.ModuleType(f"checks_core.{name}")
                core.__package__ = package.__name__
                sys.modules[core.__name__] = core
                exec(compile(source, f"<checks {name}>", "exec"), core.__dict__)
            for source in request["prelude"]:
                try:
                    exec(compile(source, "<prelude>", "exec"), namespace)
                except BaseException:  # an import the sandbox lacks: the cells will say so
                    pass
            cells = []
            for label, source in request["cells"]:
                # Like the kernel's per-cell timeout: a cell that runs too long is interrupted
                # and the next one still runs (``while True: pass`` costs only its own cell).
                signal.signal(signal.SIGALRM, _cell_timed_out)
                signal.setitimer(signal.ITIMER_REAL, request.get("cell_timeout", 0))
                try:
                    exec(compile(source, f"<cell {label}>", "exec"), namespace)
                    cells.append(None)
                except BaseException as exc:  # SystemExit, KeyboardInterrupt: the student's
                    cells.append(short(exc))
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            status = {}
            for name in request["names"]:
                fn = namespace.get(name)
                status[name] = "missing" if fn is None else (
                    "callable" if callable(fn) else "not callable")
            sys.stdout.seek(0)
            sys.stdout.truncate()
            send({"op": "loaded", "cells": cells, "names": status})
            continue
        # op == "call"
        fn = namespace.get(request["name"])
        args = [_decode_arg(core, a, namespace) for a in request["args"]]
        kwargs = {k: _decode_arg(core, v, namespace) for k, v in request["kwargs"].items()}
        seen: dict = {}

        def wrapper(*a, _fn=fn, _seen=seen, **k):
            _seen["args"], _seen["kwargs"] = a, k
            try:
                result = _fn(*a, **k)
            except BaseException as exc:
                _seen["exc"] = short(exc)
                raise
            _seen["result"] = result
            return result

        try:
            outcome = core.call_safely(wrapper, tuple(args), kwargs, request["arg_names"])
        except KeyboardInterrupt:  # call_safely lets it through; it is the student's error
            outcome = core.Outcome(error="KeyboardInterrupt()")
        reply = outcome.to_plain()
        reply["stdout"] = reply["stdout"][:10_000]
        reply["exc"] = seen.get("exc")
        reply["args"] = [_encode(core, a) for a in seen.get("args", ())]
        reply["kwargs"] = {k: _encode(core, v) for k, v in seen.get("kwargs", {}).items()}
        reply["sympy"] = None
        if "result" in seen and type(seen["result"]).__module__.startswith("sympy"):
            try:
                reply["sympy"] = encode_sympy(seen["result"])
            except Exception as exc:  # unsupported node or too large: the judge says so
                reply["sympy"] = {"error": str(exc)[:200]}
        sys.stdout.seek(0)
        sys.stdout.truncate()
        send({"op": "result", **reply})


def _value(core, namespace, name):
    """A name's value for the trusted side: a SymPy tree, plain data, or why it is neither."""
    if name not in namespace:
        return {"missing": True}
    value = namespace[name]
    if not type(value).__module__.startswith("sympy"):
        return {"plain": core.to_plain(value)}
    try:
        return {"sympy": encode_sympy(value)}
    except SympyTooComplex:
        return {"too_large": True}
    except Exception:  # a node outside the allow list: name its type, for the message
        return {"unsupported": type(value).__name__ if not hasattr(value, "args")
                else _first_unsupported(value)}


def _first_unsupported(expr, _depth=0) -> str:
    """The type name of the first node of ``expr`` that the codec does not know."""
    import sympy as sp

    name = type(expr).__name__
    if _depth > _MAX_DEPTH or not isinstance(expr, sp.Basic):
        return name
    if name not in SYMPY_FUNCTIONS:
        return name
    for arg in expr.args:
        try:
            encode_sympy(arg)
        except SympyTooComplex:
            continue
        except Exception:
            return _first_unsupported(arg, _depth + 1)
    return name


def _decode_arg(core, data, namespace):
    if type(data) is dict and data.get("kind") == "sympy":
        return _build(data["tree"])
    return core.from_plain(data, resolve=namespace.get)


def _encode(core, value):
    if type(value).__module__.startswith("sympy"):
        return {"kind": "other", "type": "sympy"}
    return core.to_plain(value)


if __name__ == "__main__":
    _main()
