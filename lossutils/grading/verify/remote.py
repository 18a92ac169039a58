"""The student's function as the trusted grader sees it: calls out as JSON, answers in.

:class:`Remote` stands in for the student's function while the exercise's own ``call`` and
``judge`` run in the trusted process: it ships each call's arguments to the verification
process and replays what came back (return value, exception, warnings, printed text, changed
arguments), after checking that the plain data is well formed and small enough to rebuild.
"""

from __future__ import annotations

import builtins
import warnings
from collections.abc import Sequence

import numpy as np

from ._runner import decode_sympy, encode_sympy
from .channel import Runner

__all__ = ["Remote", "fetch_values", "validate_plain"]

#: What one reply may make the trusted side build, all its values together (arrays by their
#: bytes, strings by their length, containers by their items): a reply line is capped at the
#: verification limits' ``max_output_bytes``, but a few bytes of JSON can describe far more.
MAX_REPLY_BYTES = 64 * 2**20


class _Budget:
    """Bytes a reply may still make the trusted side build (raise ValueError past it)."""

    def __init__(self, total: int):
        self.left = total

    def spend(self, n: float) -> None:
        self.left -= n
        if self.left < 0:
            raise ValueError(f"the reply describes more than {MAX_REPLY_BYTES} bytes of values")


def validate_plain(data, budget: _Budget | None = None, depth: int = 0) -> None:
    """Refuse encoded values that would be costly or unsafe to rebuild (raise ValueError).

    ``budget`` is shared by every value of one reply (default: :data:`MAX_REPLY_BYTES` for
    ``data`` alone). An array of numbers must carry its data (the runner's encoder always sends
    it): one without would be rebuilt from uninitialised memory of the trusted process, and
    costs its whole size in a few bytes of JSON. An array of another dtype (complex), which the
    encoder sends without data, is turned into an opaque value in place, never allocated.
    """
    budget = _Budget(MAX_REPLY_BYTES) if budget is None else budget
    if depth > 8 or type(data) is not dict:
        raise ValueError("malformed value")
    budget.spend(64)
    kind = data.get("kind")
    if kind == "ndarray":
        dtype = np.dtype(str(data["dtype"]))
        shape = data["shape"]
        if dtype.kind not in "biufc" or type(shape) is not list or len(shape) > 32 \
                or not all(type(n) is int and n >= 0 for n in shape):
            raise ValueError("malformed array")
        size = int(np.prod(shape, dtype=np.float64))
        if "data" not in data:
            if dtype.kind in "biuf":
                raise ValueError(f"an array of {dtype} arrived without its data")
            data.clear()
            data.update(kind="other", type=f"numpy.ndarray of dtype {dtype}")
            return
        budget.spend(size * dtype.itemsize)
        if type(data["data"]) is not list or len(data["data"]) != size \
                or not all(type(v) in (int, float, bool) for v in data["data"]):
            raise ValueError("malformed array data")
    elif kind == "npscalar":
        if np.dtype(str(data["dtype"])).kind not in "biuf" \
                or type(data["value"]) not in (int, float, bool):
            raise ValueError("malformed scalar")
    elif kind in ("float", "int", "bool", "str"):
        if type(data.get("value")) is not {"float": float, "int": int, "bool": bool,
                                           "str": str}[kind] and kind != "float":
            raise ValueError("malformed number")
        if kind == "int" and abs(data["value"]) > 2**63:
            raise ValueError("integer too large")
        if kind == "str":
            budget.spend(len(data["value"]))
    elif kind == "given":
        if type(data.get("formula")) is not str or len(data["formula"]) > 64:
            raise ValueError("malformed given function")
        validate_plain(data.get("params"), budget, depth + 1)
    elif kind == "student_function":
        if type(data.get("name")) is not str or len(data["name"]) > 200:
            raise ValueError("malformed function name")
    elif kind in ("tuple", "list"):
        if type(data.get("items")) is not list:
            raise ValueError("malformed sequence")
        for item in data["items"]:
            validate_plain(item, budget, depth + 1)
    elif kind == "dict":
        if type(data.get("items")) is not dict:
            raise ValueError("malformed dict")
        for key, item in data["items"].items():
            budget.spend(len(key))
            validate_plain(item, budget, depth + 1)
    elif kind not in ("NoneType", "other"):
        raise ValueError("unknown kind")


def _encode_arg(value):
    from lossutils.checks import to_plain

    if type(value).__module__.startswith("sympy"):
        return {"kind": "sympy", "tree": encode_sympy(value)}
    return to_plain(value)


def _named(base: type, name) -> type:
    """A stand-in class carrying the student's exception or warning class name."""
    name = str(name)
    builtin = getattr(builtins, name, None)
    if isinstance(builtin, type) and issubclass(builtin, base) and builtin is not base \
            and not issubclass(builtin, KeyboardInterrupt | SystemExit | GeneratorExit):
        return builtin
    return type(name if name.isidentifier() else base.__name__, (base,), {})


def _write_back(given, after) -> None:
    """Make the trusted copy of an argument show the change the student made to theirs."""
    from lossutils.checks import from_plain

    if type(after) is not dict or after.get("kind") == "other":
        return
    new = from_plain(after)
    if type(given) is np.ndarray:
        if type(new) is np.ndarray and new.shape == given.shape:
            np.copyto(given, new, casting="unsafe")
        elif given.size:
            # Not representable in place: any change makes the checker report it.
            given.flat[0] = ~given.flat[0] if given.dtype == bool else given.flat[0] + 1
    elif type(given) is dict and type(new) is dict:
        given.clear()
        given.update(new)
    elif type(given) is list and type(new) is list:
        given[:] = new


class Remote:
    """Stands in for the student's function in the trusted process."""

    def __init__(self, runner: Runner, name: str, arg_names: Sequence[str]):
        self.runner, self.name, self.arg_names = runner, name, list(arg_names)

    def __call__(self, *args, **kwargs):
        from lossutils.checks import from_plain

        reply = self.runner.request({
            "op": "call", "name": self.name, "arg_names": self.arg_names,
            "args": [_encode_arg(a) for a in args],
            "kwargs": {k: _encode_arg(v) for k, v in kwargs.items()},
        }, self.runner.call_timeout)
        try:
            output = reply["output"]
            budget = _Budget(MAX_REPLY_BYTES)
            validate_plain(output, budget)
            for item in [*reply["args"], *reply["kwargs"].values()]:
                validate_plain(item, budget)
            stdout = str(reply["stdout"])[:10_000]
            texts = [str(w)[:1000] for w in reply["warnings"]][:100]
            value = from_plain(output) if reply.get("sympy") is None else None
            for given, after in zip(args, reply["args"], strict=False):
                _write_back(given, after)
            for key, after in reply["kwargs"].items():
                if key in kwargs:
                    _write_back(kwargs[key], after)
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            self.runner.fail("protocol", str(exc) if isinstance(exc, ValueError) else None)
        if stdout:
            print(stdout, end="")
        for text in texts:
            category, _, message = text.partition(": ")
            warnings.warn(message, _named(Warning, category), stacklevel=2)
        if reply.get("error") is not None:
            exc = reply.get("exc") if type(reply.get("exc")) is dict else {}
            name = exc.get("type", "Exception")
            raise _named(Exception, name)(str(exc.get("text", ""))[:201])
        if reply.get("sympy") is not None:
            tree = reply["sympy"]
            if "error" in tree:
                raise _named(Exception, "UnsupportedExpression")(str(tree["error"])[:200])
            return decode_sympy(tree)
        return value


def fetch_values(runner: Runner, names: Sequence[str]) -> dict[str, dict]:
    """The values bound to ``names`` in the verification process, for a derivation's steps.

    Each arrives as ``{"sympy": tree}`` (an expression, rebuilt only by
    :func:`~._runner.decode_sympy`, which bounds its size), ``{"plain": data}`` (validated
    here, all of them against one reply budget), ``{"missing": True}``, ``{"too_large": True}``
    or ``{"unsupported": type name}``; anything else ends the process as a protocol error.
    """
    reply = runner.request({"op": "values", "names": list(names)}, runner.call_timeout)
    values = reply.get("values")
    if reply.get("op") != "values" or type(values) is not dict:
        runner.fail("protocol")
    budget = _Budget(MAX_REPLY_BYTES)
    checked = {}
    for name in names:
        data = values.get(name)
        if type(data) is not dict or len(data) != 1:
            runner.fail("protocol")
        ((key, value),) = data.items()
        if key == "plain":
            try:
                validate_plain(value, budget)
            except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
                runner.fail("protocol", str(exc) if isinstance(exc, ValueError) else None)
        elif key == "unsupported":
            if type(value) is not str:
                runner.fail("protocol")
            data = {key: value[:40]}
        elif key not in ("sympy", "missing", "too_large"):
            runner.fail("protocol")
        checked[name] = data
    return checked

