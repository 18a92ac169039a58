"""The calling convention of the library (docs/design.md), checked across every public loss.

Module tests check each function's values; this file checks that all of them keep the same
promises: a ``*_grad`` for every loss with the same signature, ``reduction`` semantics, dtype
preservation, no mutation of inputs, lists accepted, and a cheap ``import lossutils``.
"""

from __future__ import annotations

import inspect
import subprocess
import sys

import numpy as np
import pytest

import lossutils as lu

RNG = np.random.default_rng(20261126)
N, C = 5, 4


def _binary_pm1():
    return np.where(RNG.random(N) < 0.5, -1.0, 1.0)


def _probs(shape):
    p = RNG.random(shape) + 0.05
    return p / p.sum(-1, keepdims=True)


# loss name -> (first argument, target or None, extra keywords). First arguments are float64.
BATCH_LOSSES = {
    "mse_loss": (lambda: RNG.normal(size=(N, 3)), lambda: RNG.normal(size=(N, 3)), {}),
    "l1_loss": (lambda: RNG.normal(size=(N, 3)), lambda: RNG.normal(size=(N, 3)), {}),
    "lp_loss": (lambda: RNG.normal(size=(N,)), lambda: RNG.normal(size=(N,)), {"p": 3.0}),
    "huber_loss": (lambda: RNG.normal(size=(N,)), lambda: RNG.normal(size=(N,)), {}),
    "gaussian_nll_loss": (lambda: RNG.normal(size=(N,)), lambda: RNG.normal(size=(N,)),
                          {"var": 0.5, "full": True}),
    "laplace_nll_loss": (lambda: RNG.normal(size=(N,)), lambda: RNG.normal(size=(N,)),
                         {"scale": 2.0}),
    "cross_entropy": (lambda: RNG.normal(size=(N, C)), lambda: RNG.integers(0, C, N), {}),
    "nll_loss": (lambda: np.log(_probs((N, C))), lambda: RNG.integers(0, C, N), {}),
    "binary_cross_entropy": (lambda: RNG.uniform(0.05, 0.95, N), lambda: RNG.random(N), {}),
    "binary_cross_entropy_with_logits": (lambda: RNG.normal(size=N), lambda: RNG.random(N), {}),
    "zero_one_loss": (lambda: RNG.normal(size=N), _binary_pm1, {}),
    "perceptron_loss": (lambda: RNG.normal(size=N), _binary_pm1, {}),
    "hinge_loss": (lambda: RNG.normal(size=N), _binary_pm1, {}),
    "squared_hinge_loss": (lambda: RNG.normal(size=N), _binary_pm1, {}),
    "multiclass_hinge_loss": (lambda: RNG.normal(size=(N, C)), lambda: RNG.integers(0, C, N),
                              {}),
    "negative_log_likelihood": (lambda: RNG.uniform(0.05, 1.0, N), None, {}),
}


def _call(name, x, target, kwargs, **extra):
    fn = getattr(lu, name)
    args = (x,) if target is None else (x, target)
    return fn(*args, **kwargs, **extra)


def _sample(name):
    make_x, make_t, kwargs = BATCH_LOSSES[name]
    return make_x(), (None if make_t is None else make_t()), kwargs


def test_every_loss_in_the_table_is_public_and_every_public_loss_is_in_the_table():
    public_losses = {
        name for name in dir(lu)
        if callable(getattr(lu, name)) and "reduction" in _params(getattr(lu, name))
        and not name.endswith("_grad")
    }
    assert public_losses == set(BATCH_LOSSES)


def _params(fn):
    try:
        return inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}


@pytest.mark.parametrize("name", sorted(BATCH_LOSSES))
def test_every_loss_has_a_grad_with_the_same_signature(name):
    # the same parameters; the return types differ (a loss may be reduced, a gradient is not)
    grad = getattr(lu, f"{name}_grad")
    assert inspect.signature(grad).parameters == inspect.signature(getattr(lu, name)).parameters


@pytest.mark.parametrize("name", sorted(BATCH_LOSSES))
def test_reduction_default_is_mean_and_sum_is_n_times_mean(name):
    x, t, kw = _sample(name)
    assert inspect.signature(getattr(lu, name)).parameters["reduction"].default == "mean"
    none = _call(name, x, t, kw, reduction="none")
    total = _call(name, x, t, kw, reduction="sum")
    mean = _call(name, x, t, kw)
    np.testing.assert_allclose(total, none.sum(), rtol=1e-12)
    np.testing.assert_allclose(mean, total / none.size, rtol=1e-12)


@pytest.mark.parametrize("name", sorted(BATCH_LOSSES))
def test_grad_of_sum_is_n_times_grad_of_mean(name):
    x, t, kw = _sample(name)
    g_sum = _call(f"{name}_grad", x, t, kw, reduction="sum")
    g_mean = _call(f"{name}_grad", x, t, kw)
    g_none = _call(f"{name}_grad", x, t, kw, reduction="none")
    assert g_sum.shape == x.shape
    n = _call(name, x, t, kw, reduction="none").size
    np.testing.assert_allclose(g_sum, g_mean * n, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(g_none, g_sum, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", sorted(BATCH_LOSSES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_in_is_dtype_out(name, dtype):
    x, t, kw = _sample(name)
    x = x.astype(dtype)
    if t is not None and t.dtype.kind == "f":
        t = t.astype(dtype)
    for fn in (name, f"{name}_grad"):
        for reduction in ("mean", "sum", "none"):
            out = _call(fn, x, t, kw, reduction=reduction)
            assert out.dtype == dtype, (fn, reduction, out.dtype)


@pytest.mark.parametrize("name", sorted(BATCH_LOSSES))
def test_inputs_are_not_modified(name):
    x, t, kw = _sample(name)
    x0 = x.copy()
    t0 = None if t is None else t.copy()
    for fn in (name, f"{name}_grad"):
        for reduction in ("mean", "sum", "none"):
            _call(fn, x, t, kw, reduction=reduction)
    np.testing.assert_array_equal(x, x0)
    if t is not None:
        np.testing.assert_array_equal(t, t0)


@pytest.mark.parametrize("name", sorted(BATCH_LOSSES))
def test_lists_are_accepted_and_give_float64(name):
    x, t, kw = _sample(name)
    expected = _call(name, x, t, kw)
    got = _call(name, x.tolist(), None if t is None else t.tolist(), kw)
    assert np.asarray(got).dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-15)


@pytest.mark.parametrize("name", sorted(BATCH_LOSSES))
def test_unknown_reduction_is_refused(name):
    x, t, kw = _sample(name)
    with pytest.raises(ValueError, match="reduction must be one of 'mean', 'sum', 'none'"):
        _call(name, x, t, kw, reduction="avg")


def test_importing_lossutils_pulls_in_no_course_machinery():
    code = (
        "import sys, lossutils; heavy = {'scipy', 'nbgrader', 'nbformat', 'matplotlib', 'sympy',"
        " 'jupyter_client', 'dask', 'torch'}; print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "name", ["mse_loss", "l1_loss", "huber_loss", "binary_cross_entropy_with_logits",
             "hinge_loss", "cross_entropy"]
)
def test_integer_targets_do_not_promote_float32(name):
    x, t, kw = _sample(name)
    t_int = np.rint(t).astype(np.int64) if t.dtype.kind == "f" else t
    if name == "binary_cross_entropy_with_logits":
        t_int = (t > 0.5).astype(np.int64)
    assert _call(name, x.astype(np.float32), t_int, kw).dtype == np.float32
