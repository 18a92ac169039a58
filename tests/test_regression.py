"""Tests for lossutils.regression: hand values, scipy references, gradients, reductions, errors."""

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import stats

from lossutils import regression as R

# (loss, grad, keyword arguments) for every loss of the module; kwargs chosen away from defaults
# where that exercises more code.
LOSSES = [
    pytest.param(R.mse_loss, R.mse_loss_grad, {}, id="mse"),
    pytest.param(R.l1_loss, R.l1_loss_grad, {}, id="l1"),
    pytest.param(R.lp_loss, R.lp_loss_grad, {"p": 3.0}, id="lp3"),
    pytest.param(R.lp_loss, R.lp_loss_grad, {"p": 1.5}, id="lp1.5"),
    pytest.param(R.huber_loss, R.huber_loss_grad, {"delta": 0.7}, id="huber"),
    pytest.param(R.gaussian_nll_loss, R.gaussian_nll_loss_grad, {"var": 2.5}, id="gauss"),
    pytest.param(
        R.gaussian_nll_loss, R.gaussian_nll_loss_grad, {"var": 0.3, "full": True}, id="gauss-full"
    ),
    pytest.param(
        R.laplace_nll_loss, R.laplace_nll_loss_grad, {"scale": 0.4, "full": True}, id="laplace"
    ),
]
REDUCTIONS = ["mean", "sum", "none"]
SHAPE_MSG = (
    "pred has shape (3,) but target has shape (2,); they must have the same shape "
    "(lossutils never broadcasts silently: reshape one of them, e.g. "
    "target.reshape(pred.shape), if that is what you mean)."
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


def away_from_kinks(rng, shape, kinks=(0.0,), gap=0.05):
    """A random (pred, target) pair whose differences stay ``gap`` away from |d| in kinks."""
    target = rng.normal(size=shape)
    diff = rng.uniform(gap, 2.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)
    for kink in kinks:
        if kink:
            near = np.abs(np.abs(diff) - kink) < gap
            diff[near] += np.sign(diff[near]) * 2 * gap
    return target + diff, target


# --- closed-form values ---------------------------------------------------------------------


def test_mse_hand_values():
    pred, target = [[3.0, 0.0, 1.0], [0.0, 2.0, 0.0]], [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    # squares 4, 0, 1, 0, 4, 0: sum 9, mean over all six elements 1.5
    assert R.mse_loss(pred, target, reduction="sum") == 9.0
    assert R.mse_loss(pred, target) == 1.5
    np.testing.assert_array_equal(
        R.mse_loss(pred, target, reduction="none"), [[4.0, 0.0, 1.0], [0.0, 4.0, 0.0]]
    )


def test_half_sum_of_squares_is_the_gaussian_l2_loss():
    # CURRICULUM: the Gaussian L2 loss of L([3], [1]) is 2, not 4.
    assert 0.5 * R.mse_loss([3.0], [1.0], reduction="sum") == 2.0
    rng = np.random.default_rng(0)
    pred, target = rng.normal(size=7), rng.normal(size=7)
    np.testing.assert_allclose(
        R.gaussian_nll_loss(pred, target, var=1.0, reduction="sum"),
        0.5 * R.mse_loss(pred, target, reduction="sum"),
        rtol=1e-14,
    )


def test_mse_docstring_states_the_half():
    doc = R.mse_loss.__doc__
    assert r"L_2 = \tfrac12 \sum_i" in doc
    assert "one half" in doc


def test_l1_and_lp_hand_values():
    pred, target = [3.0, -1.0, 0.5], [1.0, 0.0, 0.5]
    assert R.l1_loss(pred, target, reduction="sum") == 3.0
    assert R.l1_loss(pred, target) == 1.0
    np.testing.assert_array_equal(R.lp_loss(pred, target, p=3, reduction="none"), [8.0, 1.0, 0.0])
    np.testing.assert_allclose(R.lp_loss([2.0], [0.0], p=1.5, reduction="sum"), 2.0**1.5)


def test_lp_reduces_to_l1_and_mse():
    rng = np.random.default_rng(1)
    pred, target = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    np.testing.assert_allclose(R.lp_loss(pred, target, p=1), R.l1_loss(pred, target))
    np.testing.assert_allclose(R.lp_loss(pred, target, p=2), R.mse_loss(pred, target))
    np.testing.assert_allclose(
        R.lp_loss_grad(pred, target, p=2), R.mse_loss_grad(pred, target), rtol=1e-14
    )


def test_huber_hand_values():
    diffs = np.array([0.0, 0.5, -0.5, 1.0, 3.0, -3.0])
    expected = [0.0, 0.125, 0.125, 0.5, 2.5, 2.5]  # 0.5 d^2 inside, |d| - 0.5 outside
    np.testing.assert_allclose(
        R.huber_loss(diffs, np.zeros(6), reduction="none"), expected, rtol=1e-15
    )
    # delta = 2: 0.5 * 1^2 = 0.5 and 2 * (3 - 1) = 4
    np.testing.assert_allclose(
        R.huber_loss([1.0, 3.0], [0.0, 0.0], delta=2.0, reduction="none"), [0.5, 4.0]
    )


def test_huber_matches_torch_formula_written_independently():
    rng = np.random.default_rng(2)
    pred, target = rng.normal(scale=2, size=50), rng.normal(scale=2, size=50)
    delta = 0.8
    # torch's piecewise definition rewritten with min(): quadratic up to delta, then linear.
    a = np.abs(pred - target)
    m = np.minimum(a, delta)
    reference = 0.5 * m**2 + delta * (a - m)
    np.testing.assert_allclose(
        R.huber_loss(pred, target, delta=delta, reduction="none"), reference, rtol=1e-14
    )
    np.testing.assert_allclose(
        R.huber_loss(pred, target, delta=delta), reference.mean(), rtol=1e-14
    )


def test_huber_with_large_delta_is_half_mse():
    pred, target = [0.3, -1.2, 2.0], [0.0, 0.1, -0.4]
    np.testing.assert_allclose(
        R.huber_loss(pred, target, delta=100.0), 0.5 * R.mse_loss(pred, target), rtol=1e-15
    )


def test_gaussian_nll_hand_value():
    # d = -2, var 4: 0.5 * (log 4 + 4 / 4)
    expected = 0.5 * (math.log(4.0) + 1.0)
    np.testing.assert_allclose(R.gaussian_nll_loss([1.0], [3.0], var=4.0), expected, rtol=1e-15)
    np.testing.assert_allclose(
        R.gaussian_nll_loss([1.0], [3.0], var=4.0, full=True),
        expected + 0.5 * math.log(2 * math.pi),
        rtol=1e-15,
    )


def test_gaussian_nll_full_is_scipy_negative_logpdf():
    rng = np.random.default_rng(3)
    pred, target = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    var = rng.uniform(0.1, 3.0, size=(3, 4))
    np.testing.assert_allclose(
        R.gaussian_nll_loss(pred, target, var=var, full=True, reduction="none"),
        -stats.norm.logpdf(target, loc=pred, scale=np.sqrt(var)),
        rtol=1e-13,
    )


def test_gaussian_nll_with_precision_beta_is_the_lecture_formula():
    # M/2 log 2pi - M/2 log beta + beta/2 sum (y - yhat)^2, with var = 1 / beta
    rng = np.random.default_rng(4)
    pred, target, beta = rng.normal(size=6), rng.normal(size=6), 2.5
    m = pred.size
    expected = (
        m / 2 * math.log(2 * math.pi)
        - m / 2 * math.log(beta)
        + beta / 2 * np.sum((target - pred) ** 2)
    )
    np.testing.assert_allclose(
        R.gaussian_nll_loss(pred, target, var=1 / beta, full=True, reduction="sum"),
        expected,
        rtol=1e-13,
    )


def test_gaussian_nll_eps_clamps_only_when_asked():
    pred, target = [0.0, 1.0], [1.0, 1.0]
    clamped = R.gaussian_nll_loss(pred, target, var=[0.0, 0.5], eps=0.1, reduction="none")
    np.testing.assert_allclose(
        clamped, R.gaussian_nll_loss(pred, target, var=[0.1, 0.5], reduction="none")
    )
    # a variance above eps is untouched
    np.testing.assert_allclose(
        R.gaussian_nll_loss(pred, target, var=2.0, eps=0.1),
        R.gaussian_nll_loss(pred, target, var=2.0),
    )
    np.testing.assert_allclose(
        R.gaussian_nll_loss_grad(pred, target, var=[0.0, 0.5], eps=0.1, reduction="none"),
        [-10.0, 0.0],
    )


def test_laplace_nll_hand_value_and_scipy():
    np.testing.assert_allclose(
        R.laplace_nll_loss([1.0], [3.0], scale=2.0), 1.0 + math.log(2.0), rtol=1e-15
    )
    rng = np.random.default_rng(5)
    pred, target = rng.normal(size=10), rng.normal(size=10)
    scale = rng.uniform(0.2, 2.0, size=10)
    np.testing.assert_allclose(
        R.laplace_nll_loss(pred, target, scale=scale, full=True, reduction="none"),
        -stats.laplace.logpdf(target, loc=pred, scale=scale),
        rtol=1e-13,
    )


def test_laplace_with_unit_scale_is_l1():
    rng = np.random.default_rng(6)
    pred, target = rng.normal(size=8), rng.normal(size=8)
    np.testing.assert_allclose(R.laplace_nll_loss(pred, target), R.l1_loss(pred, target))


# --- gradients ------------------------------------------------------------------------------


@pytest.mark.parametrize(("loss", "grad", "kwargs"), LOSSES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradient_matches_central_difference(loss, grad, kwargs, reduction):
    rng = np.random.default_rng(7)
    pred, target = away_from_kinks(rng, (3, 2), kinks=(0.0, kwargs.get("delta", 0.0)))

    def objective(x):
        value = loss(x, target, reduction=reduction, **kwargs)
        return value.sum() if reduction == "none" else value

    analytic = grad(pred, target, reduction=reduction, **kwargs)
    np.testing.assert_allclose(analytic, central_difference(objective, pred), rtol=1e-6, atol=1e-9)


def test_gaussian_gradient_with_per_element_variance():
    rng = np.random.default_rng(8)
    pred, target = rng.normal(size=5), rng.normal(size=5)
    var = rng.uniform(0.2, 2.0, size=5)
    np.testing.assert_allclose(
        R.gaussian_nll_loss_grad(pred, target, var=var, reduction="sum"),
        central_difference(
            lambda x: R.gaussian_nll_loss(x, target, var=var, reduction="sum"), pred
        ),
        rtol=1e-6,
    )


@pytest.mark.parametrize(
    ("grad", "kwargs"),
    [(R.l1_loss_grad, {}), (R.lp_loss_grad, {"p": 1.0}), (R.laplace_nll_loss_grad, {"scale": 3.0})],
)
def test_subgradient_at_the_kink_is_zero(grad, kwargs):
    g = grad([1.0, 2.0], [1.0, 0.0], reduction="none", **kwargs)
    assert g[0] == 0.0
    assert g[1] > 0


def test_lp_gradient_at_zero_error_for_p_above_one():
    np.testing.assert_array_equal(R.lp_loss_grad([0.5], [0.5], p=1.5), [0.0])


def test_huber_gradient_is_clipped_error():
    np.testing.assert_array_equal(
        R.huber_loss_grad([0.5, 3.0, -3.0, 1.0], np.zeros(4), reduction="none"),
        [0.5, 1.0, -1.0, 1.0],
    )


# --- reductions -----------------------------------------------------------------------------


@pytest.mark.parametrize(("loss", "grad", "kwargs"), LOSSES)
def test_mean_is_over_all_elements(loss, grad, kwargs):
    rng = np.random.default_rng(9)
    pred, target = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    per_element = loss(pred, target, reduction="none", **kwargs)
    assert per_element.shape == (4, 3)
    np.testing.assert_allclose(loss(pred, target, **kwargs), per_element.sum() / 12, rtol=1e-14)
    np.testing.assert_allclose(
        grad(pred, target, **kwargs),
        grad(pred, target, reduction="sum", **kwargs) / 12,
        rtol=1e-14,
    )


finite = st.floats(-1e3, 1e3, allow_nan=False, allow_subnormal=False)


@settings(max_examples=40, deadline=None)
@given(
    data=hnp.arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 3)), elements=finite),
    shift=st.floats(-5, 5),
)
def test_sum_is_n_times_mean_and_none_sums_to_sum(data, shift):
    pred, target = data, data[::-1] + shift
    for loss, _, kwargs in (case.values for case in LOSSES):
        mean = loss(pred, target, reduction="mean", **kwargs)
        total = loss(pred, target, reduction="sum", **kwargs)
        none = loss(pred, target, reduction="none", **kwargs)
        np.testing.assert_allclose(total, pred.size * mean, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(none.sum(), total, rtol=1e-12, atol=1e-12)


def test_empty_batch():
    empty = np.zeros((0, 2))
    assert R.mse_loss(empty, empty, reduction="sum") == 0.0
    assert R.mse_loss(empty, empty, reduction="none").shape == (0, 2)
    message = exact("reduction='mean' of an empty batch is undefined; pass at least one sample.")
    with pytest.raises(ValueError, match=message):
        R.mse_loss(empty, empty)
    with pytest.raises(ValueError, match=message):
        R.mse_loss_grad(empty, empty)


# --- dtypes, inputs -------------------------------------------------------------------------


@pytest.mark.parametrize(("loss", "grad", "kwargs"), LOSSES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_dtype_is_preserved(loss, grad, kwargs, dtype, reduction):
    pred = np.array([[0.5, -1.0], [2.0, 0.25]], dtype=dtype)
    target = np.array([[0.0, 1.0], [1.5, 0.5]], dtype=dtype)
    value = loss(pred, target, reduction=reduction, **kwargs)
    g = grad(pred, target, reduction=reduction, **kwargs)
    assert value.dtype == dtype
    assert g.dtype == dtype
    assert g.shape == pred.shape
    if reduction == "none":
        assert value.shape == pred.shape
    else:
        assert isinstance(value, np.floating)


@pytest.mark.parametrize(("loss", "grad", "kwargs"), LOSSES)
def test_float32_values_agree_with_float64(loss, grad, kwargs):
    rng = np.random.default_rng(10)
    pred, target = away_from_kinks(rng, (20,), kinks=(0.0, kwargs.get("delta", 0.0)))
    value32 = loss(pred.astype(np.float32), target.astype(np.float32), **kwargs)
    np.testing.assert_allclose(value32, loss(pred, target, **kwargs), rtol=1e-5)
    grad32 = grad(pred.astype(np.float32), target.astype(np.float32), **kwargs)
    np.testing.assert_allclose(grad32, grad(pred, target, **kwargs), rtol=1e-5, atol=1e-7)


def test_lists_ints_and_mixed_precision_give_float64():
    assert R.mse_loss([3, 0], [1, 0]).dtype == np.float64
    assert R.l1_loss_grad([3, 0], [1, 0]).dtype == np.float64
    mixed = R.mse_loss(np.ones(2, dtype=np.float32), np.zeros(2, dtype=np.float64))
    assert mixed.dtype == np.float64


def test_float32_stays_float32_with_default_variance_and_scale():
    pred = np.ones(3, dtype=np.float32)
    assert R.gaussian_nll_loss(pred, pred * 0).dtype == np.float32
    assert R.gaussian_nll_loss(pred, pred * 0, var=np.full(3, 2.0)).dtype == np.float32
    assert R.laplace_nll_loss(pred, pred * 0, scale=0.5).dtype == np.float32


@pytest.mark.parametrize(("loss", "grad", "kwargs"), LOSSES)
def test_inputs_are_not_modified(loss, grad, kwargs):
    pred = np.array([0.5, -1.0, 2.0])
    target = np.array([0.0, 1.0, 2.0])
    pred_copy, target_copy = pred.copy(), target.copy()
    for reduction in REDUCTIONS:
        out = loss(pred, target, reduction=reduction, **kwargs)
        g = grad(pred, target, reduction=reduction, **kwargs)
        assert not np.shares_memory(g, pred)
        assert not np.shares_memory(out, pred)
    np.testing.assert_array_equal(pred, pred_copy)
    np.testing.assert_array_equal(target, target_copy)


def test_per_element_variance_is_not_modified():
    var = np.array([0.0, 0.5])
    R.gaussian_nll_loss([0.0, 1.0], [1.0, 1.0], var=var, eps=0.1)
    np.testing.assert_array_equal(var, [0.0, 0.5])


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("loss", "grad", "kwargs"), LOSSES)
def test_shape_mismatch_is_refused(loss, grad, kwargs):
    for f in (loss, grad):
        with pytest.raises(ValueError, match=exact(SHAPE_MSG)):
            f([1.0, 2.0, 3.0], [1.0, 2.0], **kwargs)


@pytest.mark.parametrize(("loss", "grad", "kwargs"), LOSSES)
def test_unknown_reduction_is_refused(loss, grad, kwargs):
    message = exact("reduction must be one of 'mean', 'sum', 'none', got 'avg'.")
    for f in (loss, grad):
        with pytest.raises(ValueError, match=message):
            f([1.0], [2.0], reduction="avg", **kwargs)


def test_column_against_row_is_not_broadcast():
    message = re.escape("pred has shape (3, 1) but target has shape (3,);")
    with pytest.raises(ValueError, match=message):
        R.mse_loss(np.zeros((3, 1)), np.zeros(3))


@pytest.mark.parametrize("p", [0.5, 0.0, -1.0, math.inf, math.nan])
def test_bad_p(p):
    message = exact(
        f"p must be a finite number >= 1, got {p!r}; for p < 1 the Lp loss is not convex and its "
        "gradient is infinite at zero error (use p=1 for L1, p=2 for squared error)."
    )
    for f in (R.lp_loss, R.lp_loss_grad):
        with pytest.raises(ValueError, match=message):
            f([1.0], [0.0], p=p)


def test_non_numeric_p():
    with pytest.raises(ValueError, match=exact("p must be a real number, got 'two'.")):
        R.lp_loss([1.0], [0.0], p="two")


@pytest.mark.parametrize("delta", [0.0, -1.0, math.inf])
def test_bad_delta(delta):
    message = exact(
        f"delta must be a positive finite number, got {delta!r}; it is the error size where the "
        "Huber loss turns from quadratic to linear (torch's default is 1.0)."
    )
    for f in (R.huber_loss, R.huber_loss_grad):
        with pytest.raises(ValueError, match=message):
            f([1.0], [0.0], delta=delta)


@pytest.mark.parametrize(
    ("var", "found"), [(0.0, "[0.0]"), (-1.0, "[-1.0]"), ([1.0, 0.0], "[0.0]")]
)
def test_non_positive_variance_without_eps(var, found):
    message = exact(
        f"var must be strictly positive, found {found}; a variance or scale of zero or less "
        "has no density."
    )
    for f in (R.gaussian_nll_loss, R.gaussian_nll_loss_grad):
        with pytest.raises(ValueError, match=message):
            f([1.0, 2.0], [0.0, 0.0], var=var)


def test_negative_variance_with_eps():
    message = exact(
        "var must be non-negative, found [-0.5]; eps only raises small variances to eps, it "
        "does not repair negative ones (predict a variance through exp or softplus)."
    )
    with pytest.raises(ValueError, match=message):
        R.gaussian_nll_loss([1.0, 2.0], [0.0, 0.0], var=[1.0, -0.5], eps=1e-6)


def test_negative_eps():
    message = exact(
        "eps must be a finite number >= 0, got -1e-06; it is the lower bound the variance is "
        "clamped to, and eps=0.0 (the default) disables clamping."
    )
    with pytest.raises(ValueError, match=message):
        R.gaussian_nll_loss([1.0], [0.0], eps=-1e-6)


@pytest.mark.parametrize(
    ("f", "name"), [(R.gaussian_nll_loss, "var"), (R.laplace_nll_loss_grad, "scale")]
)
def test_parameter_of_wrong_shape(f, name):
    message = exact(
        f"{name} has shape (2,) but pred has shape (2, 2); pass a scalar {name} or one {name} per "
        "element of pred (exactly pred's shape; lossutils never broadcasts silently)."
    )
    with pytest.raises(ValueError, match=message):
        f(np.zeros((2, 2)), np.zeros((2, 2)), **{name: [1.0, 2.0]})


def test_non_positive_scale():
    message = exact(
        "scale must be strictly positive, found [0.0]; a variance or scale of zero or less has "
        "no density."
    )
    for f in (R.laplace_nll_loss, R.laplace_nll_loss_grad):
        with pytest.raises(ValueError, match=message):
            f([1.0], [0.0], scale=0.0)


def test_ragged_input():
    with pytest.raises(ValueError, match=r"^pred could not be converted to a numeric array"):
        R.mse_loss([[1.0], [1.0, 2.0]], [1.0, 2.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_large_inputs_reduce_block_by_block_to_the_float64_value(dtype, reduction):
    # More than three blocks plus a remainder, in a non-contiguous (transposed) layout: the
    # blocked reduction must give the exactly-rounded float64 value, in the input's dtype.
    rng = np.random.default_rng(3)
    pred = rng.normal(size=(317, 331)).astype(dtype).T
    target = rng.normal(size=(317, 331)).astype(dtype).T
    diff = pred.astype(np.float64) - target.astype(np.float64)
    for loss, terms in ((R.mse_loss, diff**2), (R.l1_loss, np.abs(diff))):
        expected = terms.mean() if reduction == "mean" else terms.sum()
        got = loss(pred, target, reduction=reduction)
        assert got.dtype == dtype
        np.testing.assert_allclose(got, expected, rtol=1e-6 if dtype == np.float32 else 1e-13)
