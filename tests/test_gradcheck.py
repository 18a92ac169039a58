"""Tests of lossutils.gradcheck against closed-form gradients and scipy."""

import math
import re

import numpy as np
import pytest
from scipy.special import logsumexp, softmax

from lossutils import gradient_check, numerical_gradient


def test_numerical_gradient_of_known_functions():
    x = np.array([1.0, -2.0, 0.5])
    np.testing.assert_allclose(numerical_gradient(lambda v: np.sum(v**3), x), 3 * x**2, rtol=1e-9)
    a = np.array([[2.0, 1.0, 0.0], [-1.0, 3.0, 0.5], [0.0, 4.0, 1.0]])
    np.testing.assert_allclose(
        numerical_gradient(lambda v: v @ a @ v, x), (a + a.T) @ x, rtol=1e-9
    )
    np.testing.assert_allclose(
        numerical_gradient(lambda v: math.sin(v), 0.3), math.cos(0.3), rtol=1e-9
    )


def test_numerical_gradient_keeps_the_shape():
    x = np.arange(6.0).reshape(2, 3)
    g = numerical_gradient(lambda v: np.sum(v**2 * np.arange(6.0).reshape(2, 3)), x)
    assert g.shape == (2, 3)
    np.testing.assert_allclose(g, 2 * x * np.arange(6.0).reshape(2, 3), rtol=1e-8, atol=1e-8)


def test_numerical_gradient_divides_by_the_step_actually_taken():
    # 1e6 + 0.1 +- 1e-6 is not representable; f(x) = x makes the numerator exactly the
    # represented step, so the quotient is exactly 1 (dividing by 2 * eps errs by ~1e-4).
    assert numerical_gradient(lambda v: v[0], [1e6 + 0.1]).tolist() == [1.0]


def test_numerical_gradient_is_float64_and_leaves_x_alone():
    x = np.array([1.0, 2.0], dtype=np.float32)
    x0 = x.copy()
    seen = []

    def f(v):
        seen.append(v.dtype)
        v *= 2  # a careless f writing into its argument must not reach x or later calls
        return float(np.sum(v))

    g = numerical_gradient(f, x)
    assert g.dtype == np.float64
    np.testing.assert_allclose(g, [2.0, 2.0], rtol=1e-9)
    np.testing.assert_array_equal(x, x0)
    assert set(seen) == {np.dtype(np.float64)}
    assert numerical_gradient(lambda v: np.sum(v**2), [1, 2]).dtype == np.float64


def test_gradient_check_relative_error_formula():
    # f is linear, so the central difference is exact: n = [2, 0, -1]. With a = [3, 0, -1]:
    # |3 - 2| / 3 = 1/3; both 0 -> 0 (not 0/0); equal -> 0; opposite signs -> 2, the largest.
    def f(v):
        return 2 * v[0] - v[2]

    assert gradient_check(f, lambda v: np.array([3.0, 0.0, -1.0]), [1.0, 5.0, 2.0]) == 1 / 3
    assert gradient_check(f, lambda v: np.array([2.0, 0.0, -1.0]), [1.0, 5.0, 2.0]) == 0.0
    assert gradient_check(f, lambda v: np.array([2.0, 0.0, 1.0]), [1.0, 5.0, 2.0]) == 2.0


def test_gradient_check_against_scipy():
    # d logsumexp / dx = softmax(x): a correct gradient is "good" (<= 1e-7, CS231n).
    rng = np.random.default_rng(0)
    for _ in range(5):
        x = rng.normal(size=5)
        assert gradient_check(logsumexp, softmax, x) <= 1e-7


def test_gradient_check_flags_wrong_gradients():
    x = np.array([0.3, -1.2, 2.0])
    assert gradient_check(logsumexp, lambda v: np.exp(v), x) > 1e-2  # forgot to normalise
    assert gradient_check(lambda v: 0.5 * np.sum(v**2), lambda v: 2 * v, x) > 1e-2


def test_gradient_check_at_a_kink():
    # max(0, 1 - s) with s = 1 - 5e-7: the difference straddles the kink, so the numerical
    # slope is an average of -1 and 0, and the check fails even for a correct subgradient.
    def hinge(s):
        return float(np.maximum(0, 1 - s).sum())

    assert gradient_check(hinge, lambda s: -np.ones_like(s), [1 - 5e-7]) > 1e-2
    assert gradient_check(hinge, lambda s: -np.ones_like(s), [0.5]) <= 1e-7


def test_float32_needs_a_larger_step():
    def f(v):
        return np.sum(np.square(v.astype(np.float32)))

    x = np.array([0.7, -1.3, 2.1])
    assert gradient_check(f, lambda v: 2 * v, x, eps=1e-6) > 1e-2
    assert gradient_check(f, lambda v: 2 * v, x, eps=1e-3) < 1e-3


def test_gradient_check_edge_cases():
    assert gradient_check(lambda v: 0.0, lambda v: v, np.zeros(0)) == 0.0
    assert math.isnan(gradient_check(lambda v: np.sum(v), lambda v: v * np.nan, [1.0, 2.0]))
    assert math.isnan(gradient_check(lambda v: np.sum(v), lambda v: v * np.inf, [1.0, 2.0]))
    assert isinstance(gradient_check(np.sum, np.ones_like, [1.0]), float)


def test_gradient_check_leaves_x_alone():
    x = np.array([1.0, 2.0])

    def grad(v):
        g = 2 * v
        v += 100  # writing into its argument must not reach x or the numerical gradient
        return g

    assert gradient_check(lambda v: np.sum(v**2), grad, x) <= 1e-7
    np.testing.assert_array_equal(x, [1.0, 2.0])


def test_errors():
    with pytest.raises(
        ValueError,
        match=re.escape(
            "grad_f returned shape (3,) but x has shape (2,); the gradient of a scalar "
            "function has the shape of its argument."
        ),
    ):
        gradient_check(np.sum, lambda v: np.ones(3), [1.0, 2.0])
    with pytest.raises(
        ValueError,
        match=re.escape(
            "f must return a real scalar, got ndarray of shape (2,) and dtype float64; "
            "reduce it (e.g. with reduction='sum') first."
        ),
    ):
        numerical_gradient(lambda v: v * 2, [1.0, 2.0])
    with pytest.raises(ValueError, match=re.escape("f must return a real scalar, got str")):
        numerical_gradient(lambda v: "1", [1.0])
    for eps in (0.0, -1e-6, math.nan, True, "1e-6"):
        with pytest.raises(
            ValueError,
            match=re.escape(f"eps must be a positive finite number, got {eps!r}; 1e-6 suits"),
        ):
            numerical_gradient(np.sum, [1.0], eps=eps)
    with pytest.raises(ValueError, match=re.escape("x must hold real numbers")):
        numerical_gradient(np.sum, ["a"])
