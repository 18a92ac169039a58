"""Functions that travel as plain data: what the checker hands to a student's function.

Some exercises take a function as an argument: ``numerical_gradient(f, x)``,
``nesterov_step(w, grad_fn, v, lr, mu)``, ``train(loss_fn, ...)``. The grader runs the
student's function in a sandboxed process and sends it every argument as JSON, so such an
argument must be data too. Two kinds exist:

:class:`GivenFunction`
    A function made by the checker: the name of a formula from the fixed table below and its
    numeric parameters. Rebuilt on the other side, it computes the same values there.
:class:`StudentFunction`
    One of the student's own functions, by name (``train`` is graded with the student's own
    loss and optimizer step). The grader's sandbox resolves the name among the student's
    definitions; in the student's kernel the check is handed the function itself.

:mod:`lossutils.grading.verify` runs this module by source inside its sandbox, with
:mod:`._plain` and :mod:`._calling`: it imports nothing but numpy and the standard library.
"""

from __future__ import annotations

import numpy as np

__all__ = ["FORMULAS", "GivenFunction", "StudentFunction"]


# --------------------------------------------------------------------------- formulas


def _float64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _smooth_scalar(x, *, cubic, freq, quad, lin) -> float:
    """sum(cubic x^3) + sum(sin(freq x)) + 1/2 x.Q x + lin.x, in float64, of x of any shape."""
    x = _float64(x)
    flat = x.ravel()
    value = np.sum(cubic * x**3) + np.sum(np.sin(freq * x)) + 0.5 * flat @ quad @ flat \
        + lin @ flat
    return float(value)


def _quadratic_grad(w, *, hessian, center) -> np.ndarray:
    """hessian @ (w - center), the gradient of 1/2 (w - c).H(w - c), in the dtype of ``w``."""
    arr = np.asarray(w)
    dtype = arr.dtype if arr.dtype.kind == "f" else np.dtype(np.float64)
    g = hessian @ (_float64(arr).ravel() - center)
    return g.reshape(arr.shape).astype(dtype)


def _probe_loss(W, X_batch, y_batch, reg, *, labels) -> tuple:
    """Records which samples a training step used (see ``lossutils.checks._classifiers``).

    Sample ``i`` of the probe's data set is the one-hot row ``e_i`` with label
    ``labels[i]``. The gradient's first column counts the samples of the batch: 1 for a
    sample given with its own label, 100 for one given with another sample's label. The
    loss is the sum of (i + 1) over the batch, plus ``reg``, plus 1000 for every step the
    weights record already (a column of ``W`` that ``_probe_step`` wrote), so the history
    can be checked: entry s is the loss at the weights before step s.
    """
    ids = np.argmax(_float64(X_batch), axis=1)
    paired = np.asarray(y_batch) == labels[ids]
    grad = np.zeros(np.shape(W), dtype=np.asarray(W).dtype)
    np.add.at(grad[:, 0], ids, np.where(paired, 1.0, 100.0).astype(grad.dtype))
    steps_done = int(np.count_nonzero(np.any(_float64(W) != 0, axis=0)))
    return float(np.sum(ids + 1) + reg + 1000 * steps_done), grad


def _probe_step(w, grad, state, lr) -> tuple:
    """Writes the step's gradient column into column ``t`` of the weights (the last one
    collects every step beyond the expected number), so the weights record every step."""
    t = int(state["t"])
    new_w = np.array(w, copy=True)
    column = min(t, new_w.shape[1] - 1)
    new_w[:, column] -= lr * np.asarray(grad)[:, 0]
    return new_w, {"t": t + 1}


#: Formula name -> (implementation, description shown to the student with the parameters).
FORMULAS = {
    "smooth_scalar": (_smooth_scalar, "f(x) = sum(a x^3) + sum(sin(b x)) + x.Q x / 2 + c.x "
                                      "(a smooth scalar function made by the checker)"),
    "quadratic_grad": (_quadratic_grad, "grad_fn(w) = H (w - w_min), the gradient of a "
                                        "quadratic bowl made by the checker"),
    "probe_loss": (_probe_loss, "a probe loss_fn(W, X_batch, y_batch, reg) -> (loss, dW) "
                                "that records which samples each step used"),
    "probe_step": (_probe_step, "a probe step_fn(w, grad, state, lr) -> (new_w, new_state) "
                                "that records each step in its own column of w"),
}


# --------------------------------------------------------------------------- the objects


class GivenFunction:
    """A checker-made function: a formula from :data:`FORMULAS` and its parameters.

    Parameters are numpy arrays and Python numbers, so the function is plain data
    (:func:`lossutils.checks.to_plain` encodes it, ``from_plain`` rebuilds it).

    Examples
    --------
    >>> f = GivenFunction("quadratic_grad", hessian=np.eye(2), center=np.zeros(2))
    >>> f(np.array([1.0, -2.0]))
    array([ 1., -2.])
    """

    __slots__ = ("formula", "params")

    def __init__(self, formula: str, **params):
        if formula not in FORMULAS:
            raise ValueError(f"unknown formula {formula!r}; known: {', '.join(FORMULAS)}.")
        self.formula = formula
        self.params = params

    def __call__(self, *args, **kwargs):
        # Arguments by name too (loss_fn(W, X_b, y_b, reg=reg)); the parameters cannot be
        # overridden: a name given twice is a TypeError.
        return FORMULAS[self.formula][0](*args, **kwargs, **self.params)

    def __eq__(self, other) -> bool:
        if type(other) is not GivenFunction or other.formula != self.formula \
                or other.params.keys() != self.params.keys():
            return False
        return all(np.array_equal(self.params[k], other.params[k]) for k in self.params)

    __hash__ = None

    def __repr__(self) -> str:
        return f"<given function: {FORMULAS[self.formula][1]}>"


class StudentFunction:
    """Stands for the student's own function ``name`` until the sandbox resolves it."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __eq__(self, other) -> bool:
        return type(other) is StudentFunction and other.name == self.name

    __hash__ = None

    def __repr__(self) -> str:
        return f"<your function {self.name}>"
