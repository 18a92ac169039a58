"""Tests for lossutils.likelihood: scipy references, exact 0/1 probabilities, NLL, gradient."""

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import special, stats

from lossutils import likelihood as L

REDUCTIONS = ["mean", "sum", "none"]
NOT_1D = (
    "probs must be a 1-D array of per-sample probabilities p(y_m | x_m), shape (M,), got shape "
    "{shape}; for class probabilities of shape (M, C) pick each sample's true class first "
    "(probs[np.arange(M), labels]) or use categorical_log_pmf."
)
OUT_OF_RANGE = (
    "probs must hold probabilities in [0, 1], found {found}; if these are scores or logits, use "
    "the *_with_logits / logits form instead."
)


def exact(message: str) -> str:
    """A pytest.raises pattern matching exactly ``message``."""
    return "^" + re.escape(message) + "$"


def central_difference(f, x, h=1e-6):
    """Numerical gradient of the scalar function ``f`` at float64 ``x``."""
    x = np.array(x, dtype=np.float64)
    grad = np.empty_like(x)
    for i in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[i] = h
        grad[i] = (f(x + step) - f(x - step)) / (2 * h)
    return grad


# --- the unfair coin of the lecture: p(tails) = 0.7, observing tails gives 0.7 --------------


def test_coin():
    log_tails = math.log(0.7)
    np.testing.assert_allclose(L.bernoulli_log_pmf(0.7, 1), log_tails, rtol=1e-15)
    # heads = class 0, tails = class 1
    np.testing.assert_allclose(L.categorical_log_pmf([[0.3, 0.7]], [1]), [log_tails], rtol=1e-15)
    np.testing.assert_allclose(L.log_likelihood([0.7]), log_tails, rtol=1e-15)


# --- bernoulli_log_pmf ----------------------------------------------------------------------


def test_bernoulli_matches_scipy():
    rng = np.random.default_rng(0)
    probs = rng.uniform(size=(4, 5))
    target = rng.integers(0, 2, size=(4, 5))
    np.testing.assert_allclose(
        L.bernoulli_log_pmf(probs, target), stats.bernoulli.logpmf(target, probs), rtol=1e-13
    )


def test_bernoulli_exact_zero_and_one():
    probs = [0.0, 0.0, 1.0, 1.0]
    target = [0, 1, 0, 1]
    with np.errstate(divide="raise", invalid="raise"):
        out = L.bernoulli_log_pmf(probs, target)
    np.testing.assert_array_equal(out, [0.0, -np.inf, -np.inf, 0.0])
    np.testing.assert_array_equal(out, stats.bernoulli.logpmf(target, probs))


def test_bernoulli_small_probability_is_accurate():
    # log(1 - 1e-20) = -1e-20, lost entirely by log(1 - p)
    np.testing.assert_allclose(L.bernoulli_log_pmf([1e-20], [0]), [-1e-20], rtol=1e-15)


@pytest.mark.parametrize("target", [[True, False], [1, 0], [1.0, 0.0]])
def test_bernoulli_targets_of_any_numeric_dtype(target):
    np.testing.assert_allclose(
        L.bernoulli_log_pmf([0.25, 0.25], target), [math.log(0.25), math.log(0.75)], rtol=1e-15
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bernoulli_dtype_follows_probs(dtype):
    out = L.bernoulli_log_pmf(np.array([0.3, 0.9], dtype=dtype), np.array([1, 0]))
    assert out.dtype == dtype


def test_bernoulli_errors():
    with pytest.raises(
        ValueError,
        match=exact(
            "target must hold binary outcomes 0 or 1, found [0.5, 2.0]; for soft targets in "
            "[0, 1] use binary_cross_entropy."
        ),
    ):
        L.bernoulli_log_pmf([0.5, 0.5, 0.5], [0.5, 2.0, 1.0])
    with pytest.raises(
        ValueError,
        match=exact(
            "target must hold binary outcomes 0 or 1, got an array of dtype <U1; pass booleans, "
            "integers or floats."
        ),
    ):
        L.bernoulli_log_pmf([0.5], ["1"])
    with pytest.raises(ValueError, match=exact(OUT_OF_RANGE.format(found="[1.5]"))):
        L.bernoulli_log_pmf([1.5], [1])
    with pytest.raises(
        ValueError, match=re.escape("probs has shape (2,) but target has shape (1,);")
    ):
        L.bernoulli_log_pmf([0.5, 0.5], [1])


# --- categorical_log_pmf --------------------------------------------------------------------


def test_categorical_matches_scipy_multinomial():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(4), size=6)
    labels = rng.integers(0, 4, size=6)
    expected = [
        stats.multinomial.logpmf(np.eye(4)[y], n=1, p=row)
        for row, y in zip(probs, labels, strict=True)
    ]
    np.testing.assert_allclose(L.categorical_log_pmf(probs, labels), expected, rtol=1e-13)


def test_categorical_zero_probabilities():
    probs = [[0.0, 1.0, 0.0], [0.5, 0.0, 0.5]]
    with np.errstate(divide="raise", invalid="raise"):
        out = L.categorical_log_pmf(probs, [1, 1])
    np.testing.assert_array_equal(out, [0.0, -np.inf])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_categorical_dtype_and_shape(dtype):
    out = L.categorical_log_pmf(np.full((3, 2), 0.5, dtype=dtype), np.array([0, 1, 1]))
    assert out.dtype == dtype
    assert out.shape == (3,)


def test_categorical_errors():
    with pytest.raises(
        ValueError,
        match=exact(
            "probs must have shape (N, C), one distribution per row, got shape (3,); reshape a "
            "single distribution with probs[None, :]."
        ),
    ):
        L.categorical_log_pmf([0.2, 0.3, 0.5], [1])
    with pytest.raises(
        ValueError, match=re.escape("probs must sum to 1 along the last (class) axis")
    ):
        L.categorical_log_pmf([[0.2, 0.3]], [1])
    with pytest.raises(ValueError, match=re.escape("target has labels outside [0, 2): [2]")):
        L.categorical_log_pmf([[0.5, 0.5]], [2])
    with pytest.raises(
        ValueError, match=re.escape("target must be integer class labels of shape (2,)")
    ):
        L.categorical_log_pmf([[0.5, 0.5], [0.5, 0.5]], [[1, 0], [0, 1]])


# --- densities ------------------------------------------------------------------------------


def test_gaussian_log_pdf_matches_scipy():
    rng = np.random.default_rng(2)
    pred, target = rng.normal(size=(2, 5)), rng.normal(scale=3, size=(2, 5))
    var = rng.uniform(0.1, 4.0, size=(2, 5))
    np.testing.assert_allclose(
        L.gaussian_log_pdf(pred, target, var=var),
        stats.norm.logpdf(target, loc=pred, scale=np.sqrt(var)),
        rtol=1e-13,
    )
    np.testing.assert_allclose(
        L.gaussian_log_pdf(pred, target), stats.norm.logpdf(target, loc=pred), rtol=1e-13
    )


def test_laplace_log_pdf_matches_scipy():
    rng = np.random.default_rng(3)
    pred, target = rng.normal(size=7), rng.normal(scale=3, size=7)
    np.testing.assert_allclose(
        L.laplace_log_pdf(pred, target, scale=0.6),
        stats.laplace.logpdf(target, loc=pred, scale=0.6),
        rtol=1e-13,
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_densities_keep_dtype(dtype):
    x = np.array([0.5, -1.0], dtype=dtype)
    assert L.gaussian_log_pdf(x, x * 2, var=0.5).dtype == dtype
    assert L.laplace_log_pdf(x, x * 2, scale=0.5).dtype == dtype


def test_density_errors():
    with pytest.raises(ValueError, match=re.escape("var must be strictly positive, found [0.0]")):
        L.gaussian_log_pdf([0.0], [1.0], var=0.0)
    with pytest.raises(
        ValueError, match=re.escape("scale must be strictly positive, found [-1.0]")
    ):
        L.laplace_log_pdf([0.0], [1.0], scale=-1.0)
    with pytest.raises(
        ValueError, match=re.escape("pred has shape (2,) but target has shape (1,);")
    ):
        L.gaussian_log_pdf([0.0, 1.0], [1.0])


# --- log_likelihood -------------------------------------------------------------------------


def test_log_likelihood_hand_value():
    np.testing.assert_allclose(
        L.log_likelihood([0.7, 0.7, 0.3]), 2 * math.log(0.7) + math.log(0.3), rtol=1e-15
    )


def test_log_likelihood_survives_where_the_product_underflows():
    probs = np.full(1000, 0.1)
    assert np.prod(probs) == 0.0
    np.testing.assert_allclose(L.log_likelihood(probs), 1000 * math.log(0.1), rtol=1e-12)


def test_log_likelihood_of_an_impossible_sample_is_minus_infinity():
    with np.errstate(divide="raise", invalid="raise"):
        assert L.log_likelihood([0.5, 0.0, 1.0]) == -np.inf


def test_log_likelihood_of_no_samples_is_zero():
    assert L.log_likelihood(np.array([])) == 0.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_likelihood_returns_a_scalar_of_the_input_dtype(dtype):
    out = L.log_likelihood(np.array([0.5, 0.25], dtype=dtype))
    assert isinstance(out, np.floating)
    assert out.dtype == dtype


def test_log_likelihood_errors():
    with pytest.raises(ValueError, match=exact(NOT_1D.format(shape="(2, 2)"))):
        L.log_likelihood([[0.5, 0.5], [0.2, 0.8]])
    with pytest.raises(ValueError, match=exact(NOT_1D.format(shape="()"))):
        L.log_likelihood(0.5)
    with pytest.raises(ValueError, match=exact(OUT_OF_RANGE.format(found="[-0.1, 1.2]"))):
        L.log_likelihood([-0.1, 0.5, 1.2])


# --- negative_log_likelihood ----------------------------------------------------------------


def test_nll_hand_values():
    probs = [0.5, 0.25]
    np.testing.assert_allclose(
        L.negative_log_likelihood(probs, reduction="none"), [math.log(2), math.log(4)]
    )
    np.testing.assert_allclose(
        L.negative_log_likelihood(probs, reduction="sum"), math.log(8), rtol=1e-15
    )
    np.testing.assert_allclose(L.negative_log_likelihood(probs), math.log(8) / 2, rtol=1e-15)


def test_nll_sum_is_minus_log_likelihood_and_scipy_xlogy():
    rng = np.random.default_rng(4)
    probs = rng.uniform(size=20)
    total = L.negative_log_likelihood(probs, reduction="sum")
    np.testing.assert_allclose(total, -L.log_likelihood(probs), rtol=1e-15)
    np.testing.assert_allclose(total, -special.xlogy(1, probs).sum(), rtol=1e-13)


def test_nll_at_zero_and_one():
    with np.errstate(divide="raise", invalid="raise"):
        none = L.negative_log_likelihood([1.0, 0.0], reduction="none")
        grad = L.negative_log_likelihood_grad([1.0, 0.0], reduction="none")
    np.testing.assert_array_equal(none, [0.0, np.inf])
    np.testing.assert_array_equal(grad, [-1.0, -np.inf])


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_gradient_matches_central_difference(reduction):
    rng = np.random.default_rng(5)
    probs = rng.uniform(0.1, 0.9, size=6)

    def objective(p):
        value = L.negative_log_likelihood(p, reduction=reduction)
        return value.sum() if reduction == "none" else value

    np.testing.assert_allclose(
        L.negative_log_likelihood_grad(probs, reduction=reduction),
        central_difference(objective, probs),
        rtol=1e-6,
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_dtype(dtype, reduction):
    probs = np.array([0.5, 0.125], dtype=dtype)
    value = L.negative_log_likelihood(probs, reduction=reduction)
    grad = L.negative_log_likelihood_grad(probs, reduction=reduction)
    assert value.dtype == dtype
    assert grad.dtype == dtype
    assert grad.shape == (2,)
    if reduction != "none":
        assert isinstance(value, np.floating)


def test_nll_lists_and_ints():
    assert L.negative_log_likelihood([1, 1]).dtype == np.float64
    assert L.negative_log_likelihood_grad([1, 1]).dtype == np.float64


def test_nothing_is_modified_in_place():
    probs = np.array([0.5, 0.0, 1.0])
    target = np.array([1, 0, 1])
    table = np.array([[0.5, 0.5], [1.0, 0.0]])
    originals = [probs.copy(), target.copy(), table.copy()]
    L.bernoulli_log_pmf(probs, target)
    L.categorical_log_pmf(table, [0, 0])
    L.log_likelihood(probs)
    for reduction in REDUCTIONS:
        L.negative_log_likelihood(probs, reduction=reduction)
        L.negative_log_likelihood_grad(probs, reduction=reduction)
    for array, original in zip([probs, target, table], originals, strict=True):
        np.testing.assert_array_equal(array, original)


def test_nll_errors():
    message = exact("reduction must be one of 'mean', 'sum', 'none', got 'batchmean'.")
    for f in (L.negative_log_likelihood, L.negative_log_likelihood_grad):
        with pytest.raises(ValueError, match=message):
            f([0.5], reduction="batchmean")
        with pytest.raises(ValueError, match=exact(NOT_1D.format(shape="(1, 2)"))):
            f([[0.5, 0.5]])
        with pytest.raises(ValueError, match=exact(OUT_OF_RANGE.format(found="[2.0]"))):
            f([2.0])
    empty = exact("reduction='mean' of an empty batch is undefined; pass at least one sample.")
    with pytest.raises(ValueError, match=empty):
        L.negative_log_likelihood([])
    with pytest.raises(ValueError, match=empty):
        L.negative_log_likelihood_grad([])


probabilities = hnp.arrays(
    np.float64, st.integers(1, 30), elements=st.floats(0.001, 1.0, allow_subnormal=False)
)


@settings(max_examples=50, deadline=None)
@given(probs=probabilities)
def test_nll_reductions_are_consistent(probs):
    mean = L.negative_log_likelihood(probs, reduction="mean")
    total = L.negative_log_likelihood(probs, reduction="sum")
    none = L.negative_log_likelihood(probs, reduction="none")
    np.testing.assert_allclose(total, probs.size * mean, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(none.sum(), total, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(total, -L.log_likelihood(probs), rtol=1e-12, atol=1e-300)
    assert total >= 0
