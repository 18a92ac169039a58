"""Plain data and safe display of values returned by untrusted student code.

Nothing here calls a method of a student's object: types are tested with ``type(x) is ...``
before any value is read, and anything unexpected is described by its type name only.

:mod:`lossutils.grading.verify` runs this module and :mod:`._calling` by source inside its
sandbox: they import nothing but numpy and the standard library (and each other).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ._given import FORMULAS, GivenFunction, StudentFunction

__all__ = [
    "Opaque",
    "describe_returned",
    "expected_got",
    "fmt",
    "fmt_output",
    "from_plain",
    "indent",
    "is_numpy_scalar",
    "to_plain",
]


# numpy's own scalar types; a student's subclass (even one claiming __module__ = "numpy") is
# not among them, so testing membership never runs the student's code.
_NUMPY_SCALARS = frozenset(t for t in np.sctypeDict.values() if issubclass(t, np.generic))


def is_numpy_scalar(obj: Any, kinds: str = "biufc") -> bool:
    """Whether ``obj`` is exactly a numpy scalar of one of the dtype ``kinds``."""
    return type(obj) in _NUMPY_SCALARS and np.dtype(type(obj)).kind in kinds


class Opaque:
    """Stands for a returned object the checker will not touch; only its type name is kept."""

    __slots__ = ("type_name",)

    def __init__(self, type_name: str):
        self.type_name = type_name


def _type_name(obj) -> str:
    """The qualified type name, as shown to the student (kept as is by :func:`to_plain`)."""
    if type(obj) is Opaque:
        return obj.type_name
    t = type(obj)
    module = t.__module__
    name = t.__qualname__ if module == "builtins" else f"{module}.{t.__qualname__}"
    return f"{name} (a subclass of np.ndarray)" if issubclass(t, np.ndarray) else name


_MAX_DEPTH = 4


def to_plain(value: Any, _depth: int = 0) -> dict:
    """Encode a returned value as JSON-friendly data without calling any of its methods.

    Exact numpy arrays, numpy scalars, Python numbers, strings, ``None``, tuples, lists and
    string-keyed dicts are encoded; anything else (subclasses included) keeps only its type
    name. Non-finite floats stay ``float('nan')``/``inf`` (``json`` writes them as NaN, Infinity).
    """
    t = type(value)
    if _depth > _MAX_DEPTH:
        return {"kind": "other", "type": _type_name(value)}
    if t is np.ndarray:
        if value.dtype.kind in "biuf":
            return {
                "kind": "ndarray",
                "dtype": value.dtype.str,
                "shape": list(value.shape),
                "data": value.ravel().tolist(),
            }
        return {"kind": "ndarray", "dtype": value.dtype.str, "shape": list(value.shape)}
    if is_numpy_scalar(value, "biuf"):
        return {"kind": "npscalar", "dtype": value.dtype.str, "value": value.item()}
    if t in (float, int, bool, str) or value is None:
        return {"kind": t.__name__, "value": value}
    if t in (tuple, list):
        return {"kind": t.__name__, "items": [to_plain(v, _depth + 1) for v in value]}
    if t is dict and all(type(k) is str for k in value):
        return {"kind": "dict", "items": {k: to_plain(v, _depth + 1) for k, v in value.items()}}
    if t is GivenFunction:
        return {"kind": "given", "formula": value.formula,
                "params": to_plain(value.params, _depth + 1)}
    if t is StudentFunction:
        return {"kind": "student_function", "name": value.name}
    return {"kind": "other", "type": _type_name(value)}


def from_plain(data: dict, resolve: Callable[[str], Any] | None = None) -> Any:
    """Rebuild a value encoded by :func:`to_plain`; unknown objects become :class:`Opaque`.

    ``resolve(name)``, if given, replaces a :class:`StudentFunction` by the function it
    names (the sandbox resolves them among the student's definitions).
    """
    kind = data["kind"]
    if kind == "given":
        params = from_plain(data["params"], resolve)
        if data["formula"] not in FORMULAS or type(params) is not dict:
            return Opaque("a malformed given function")
        return GivenFunction(str(data["formula"]), **params)
    if kind == "student_function":
        name = str(data["name"])
        return resolve(name) if resolve is not None else StudentFunction(name)
    if kind == "ndarray":
        dtype = np.dtype(data["dtype"])
        shape = tuple(int(n) for n in data["shape"])
        if "data" not in data:
            return np.empty(shape, dtype=dtype)
        return np.array(data["data"], dtype=dtype).reshape(shape)
    if kind == "npscalar":
        return np.dtype(data["dtype"]).type(data["value"])
    if kind in ("float", "int", "bool", "str"):
        return {"float": float, "int": int, "bool": bool, "str": str}[kind](data["value"])
    if kind == "NoneType":
        return None
    if kind in ("tuple", "list"):
        items = [from_plain(v, resolve) for v in data["items"]]
        return tuple(items) if kind == "tuple" else items
    if kind == "dict":
        return {str(k): from_plain(v, resolve) for k, v in data["items"].items()}
    return Opaque(str(data.get("type", "object")))


# --------------------------------------------------------------------------- formatting


def fmt(value: Any, prefix: str = "") -> str:
    """Short readable form of a checker-made value (arrays, scalars, dicts, tuples).

    ``prefix`` is the text the value will follow on its first line, so that the rows of a
    2-D array line up under each other.
    """
    if type(value) is np.ndarray:
        if value.dtype.kind not in "biuf":
            return f"<array of dtype {value.dtype}, shape {value.shape}>"
        text = np.array2string(
            value, precision=4, threshold=12, edgeitems=2, max_line_width=88, separator=", ",
            prefix=prefix,
        )
        return f"{text} ({value.dtype}, shape {value.shape})"
    if is_numpy_scalar(value):
        return f"{_short_repr(value.item())} ({value.dtype})"
    if type(value) in (float, int, bool, str) or value is None:
        return _short_repr(value)
    if type(value) is dict:
        return "{" + ", ".join(f"{k!r}: {fmt(v)}" for k, v in value.items()) + "}"
    if type(value) in (tuple, list):
        inner = ", ".join(fmt(v) for v in value)
        return f"({inner})" if type(value) is tuple else f"[{inner}]"
    if type(value) in (GivenFunction, StudentFunction):
        return repr(value)
    return f"<{_type_name(value)}>"


def _short_repr(value) -> str:
    """``repr`` of a builtin scalar, cut to 60 characters (an int may have 10**5 digits)."""
    if type(value) is int and not -10**40 < value < 10**40:
        return "an integer of more than 40 digits"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def describe_returned(obj: Any) -> str:
    """What the student returned, for type errors, without calling the object's methods."""
    t = type(obj)
    if t is float:
        return f"a Python float ({obj!r})"
    if t is list:
        return "a list"
    if t is tuple:
        return f"a tuple of length {len(obj)}"
    if obj is None:
        return "None (did you forget `return`?)"
    if t is np.ndarray:
        return f"an array of dtype {obj.dtype} and shape {obj.shape}"
    if is_numpy_scalar(obj):
        return f"a numpy {obj.dtype} scalar"
    if t in (int, bool):
        return f"a Python {t.__name__} ({_short_repr(obj)})"
    return f"an object of type {_type_name(obj)}"


def fmt_output(obj: Any, prefix: str = "") -> str:
    """Show a returned value if it is of a type the checker can print safely."""
    t = type(obj)
    if t is np.ndarray or t in (float, int, bool) or is_numpy_scalar(obj):
        return fmt(obj, prefix)
    return describe_returned(obj)


def expected_got(expected: Any, output: Any) -> str:
    """Two aligned lines: the reference value, and what the student returned."""
    return (f"expected: {fmt(expected, 'expected: ')}\n"
            f"got:      {fmt_output(output, 'got:      ')}")
