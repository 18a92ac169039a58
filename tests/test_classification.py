"""Tests for lossutils.classification.

References are independent of the code under test: scipy.special (float64), closed forms
derived by hand in the comments, and central finite differences for every gradient.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import special

import lossutils as lu

RNG_SEED = 20240611
# Few examples keep the file fast; no deadline, since the test machines are shared and slow.
PROPERTY_SETTINGS = settings(max_examples=40, deadline=None)

# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def numerical_grad(f, x, h=1e-6):
    """Central differences (f(x + h e_i) - f(x - h e_i)) / 2h of a scalar function, float64."""
    x = np.array(x, dtype=np.float64)
    grad = np.empty_like(x)
    for idx in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[idx] += h
        minus[idx] -= h
        grad[idx] = (float(f(plus)) - float(f(minus))) / (2 * h)
    return grad


def scalar_loss(loss, reduction, **kwargs):
    """The scalar whose gradient ``loss_grad(..., reduction=reduction)`` returns."""

    def f(x, target):
        value = loss(x, target, reduction=reduction, **kwargs)
        return np.sum(value) if reduction == "none" else value

    return f


def random_logits(rng, n=5, c=4, scale=3.0):
    return rng.normal(scale=scale, size=(n, c))


def random_probs(rng, n=5, c=4):
    p = rng.random((n, c)) + 0.05
    return p / p.sum(axis=1, keepdims=True)


@pytest.fixture
def rng():
    return np.random.default_rng(RNG_SEED)


finite_floats = st.floats(-50.0, 50.0, allow_nan=False, allow_infinity=False)
small_arrays = hnp.arrays(
    np.float64,
    hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5),
    elements=finite_floats,
)
batches = hnp.arrays(
    np.float64,
    hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=6),
    elements=finite_floats,
)

# ---------------------------------------------------------------------------------------------
# one_hot
# ---------------------------------------------------------------------------------------------


def test_one_hot_values_shape_and_dtype():
    out = lu.one_hot([2, 0, 1], 3)
    expected = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], dtype=np.float64)
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.float64
    assert lu.one_hot(np.array([1]), 2, dtype=np.float32).dtype == np.float32
    assert lu.one_hot(np.zeros((2, 3), dtype=int), 4).shape == (2, 3, 4)
    np.testing.assert_array_equal(lu.one_hot([1.0], 2), [[0.0, 1.0]])  # whole floats are labels


@pytest.mark.parametrize(
    ("labels", "num_classes", "message"),
    [
        ([0, 3], 3, "labels outside [0, 3): [3]"),
        ([-1], 3, "labels outside [0, 3): [-1]"),
        ([0.5], 3, "non-integer values such as [0.5]"),
        ([0], 0, "num_classes must be a positive integer, got 0"),
        ([0], 2.0, "num_classes must be a positive integer, got 2.0"),
        ([0], True, "num_classes must be a positive integer, got True"),
    ],
)
def test_one_hot_rejects_bad_input(labels, num_classes, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        lu.one_hot(labels, num_classes)


# ---------------------------------------------------------------------------------------------
# log-sum-exp, softmax, log-softmax: scipy and hand values
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("shape", "axis"), [((7,), -1), ((4, 6), -1), ((4, 6), 0), ((3, 4, 5), 1)])
def test_softmax_family_matches_scipy(rng, shape, axis):
    x = rng.normal(scale=20.0, size=shape)
    np.testing.assert_allclose(
        lu.logsumexp(x, axis=axis), special.logsumexp(x, axis=axis), rtol=1e-12
    )
    np.testing.assert_allclose(lu.softmax(x, axis=axis), special.softmax(x, axis=axis), rtol=1e-12)
    # A log-probability near 0 is log(1 + small terms): its absolute error is one ulp of 1
    # (in scipy too), and the summation order decides that last bit.
    np.testing.assert_allclose(
        lu.log_softmax(x, axis=axis), special.log_softmax(x, axis=axis), rtol=1e-12,
        atol=2 * np.finfo(np.float64).eps,
    )


def test_logsumexp_axis_none_tuple_and_keepdims(rng):
    x = rng.normal(size=(3, 4, 5))
    np.testing.assert_allclose(lu.logsumexp(x, axis=None), special.logsumexp(x), rtol=1e-12)
    np.testing.assert_allclose(
        lu.logsumexp(x, axis=(0, 2), keepdims=True),
        special.logsumexp(x, axis=(0, 2), keepdims=True),
        rtol=1e-12,
    )
    assert lu.logsumexp(x, keepdims=True).shape == (3, 4, 1)


def test_softmax_family_hand_values():
    # log(2 + 3) = log 5; softmax([0, log 3]) = [1, 3] / 4.
    np.testing.assert_allclose(lu.logsumexp([np.log(2.0), np.log(3.0)]), np.log(5.0), rtol=1e-15)
    np.testing.assert_allclose(lu.softmax([0.0, np.log(3.0)]), [0.25, 0.75], rtol=1e-15)
    np.testing.assert_allclose(
        lu.log_softmax([0.0, np.log(3.0)]), [np.log(0.25), np.log(0.75)], rtol=1e-15
    )


def test_softmax_fau_reference_values():
    # FAU exercise: softmax of four equally spaced inputs a + k d (k = 0..3). Each probability
    # is e^{a + k d} / sum_j e^{a + j d}, so consecutive ratios are p_{k+1} / p_k = e^d and
    # the offset a cancels. From the published values:
    fau = np.array([0.21732724, 0.23779387, 0.26018794, 0.28469095])
    d = np.log(fau[1:] / fau[:-1])
    np.testing.assert_allclose(d, 0.09, atol=1e-6)  # so d = 0.09: inputs [1, 2, 3, 4] * 0.09
    # Geometric series with r = e^0.09: p_k = r^k (r - 1) / (r^4 - 1).
    r = np.exp(0.09)
    closed_form = r ** np.arange(4) * (r - 1) / (r**4 - 1)
    np.testing.assert_allclose(closed_form, fau, atol=5e-9)  # published to 8 decimals
    for dtype, rtol in [(np.float64, 1e-14), (np.float32, 1e-6)]:
        out = lu.softmax(np.arange(1, 5, dtype=dtype) * dtype(0.09))
        assert out.dtype == dtype
        np.testing.assert_allclose(out, closed_form, rtol=rtol)
        np.testing.assert_allclose(out, fau, atol=5e-8)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("value", [1e4, -1e4])
def test_softmax_family_extreme_logits(dtype, value):
    x = np.full((2, 5), value, dtype=dtype)  # the FAU "all 10000" case and its mirror
    np.testing.assert_allclose(lu.softmax(x), 0.2, rtol=1e-6)
    np.testing.assert_allclose(lu.log_softmax(x), np.log(0.2), rtol=1e-3)  # ulp(1e4) in f32
    mixed = np.array([[value, -value, 0.0]], dtype=dtype)
    for out in (lu.softmax(mixed), lu.log_softmax(mixed), lu.logsumexp(mixed)):
        assert out.dtype == dtype
        assert np.all(np.isfinite(out))
    np.testing.assert_allclose(lu.logsumexp(mixed), abs(value), rtol=1e-6)


@pytest.mark.parametrize(
    "row",
    [
        [np.inf, 0.0],
        [-np.inf, -np.inf],
        [np.inf, 1e4],
        [np.inf, np.inf],
        [-np.inf, 0.0],
        [np.nan, 0.0],
    ],
)
def test_softmax_family_non_finite_rows_match_scipy(row):
    # scipy warns on some of these; lossutils returns the same values silently.
    x = np.array([row])
    with np.errstate(all="ignore"):
        expected = (
            special.logsumexp(x, axis=-1),
            special.softmax(x, axis=-1),
            special.log_softmax(x, axis=-1),
        )
    actual = (lu.logsumexp(x), lu.softmax(x), lu.log_softmax(x))
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_array_equal(a, e)


def test_logsumexp_empty_axis_is_minus_inf():
    np.testing.assert_array_equal(lu.logsumexp(np.zeros((2, 0))), [-np.inf, -np.inf])


def test_log_softmax_is_not_log_of_softmax():
    # softmax(0, 2000)[0] = e^-2000 underflows to 0; the exact log-probability is -2000.
    np.testing.assert_array_equal(lu.log_softmax([0.0, 2000.0]), [-2000.0, 0.0])


# ---------------------------------------------------------------------------------------------
# softmax family: properties
# ---------------------------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(x=small_arrays, shift=finite_floats)
def test_softmax_is_shift_invariant_and_normalised(x, shift):
    p = lu.softmax(x)
    np.testing.assert_allclose(lu.softmax(x + shift), p, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=1e-12)
    assert np.all((p >= 0) & (p <= 1))


@PROPERTY_SETTINGS
@given(x=small_arrays)
def test_log_softmax_equals_log_of_softmax_where_finite(x):
    x = x * 20.0  # spread up to 1000 apart so that some probabilities underflow
    p = lu.softmax(x)
    normal = p > np.finfo(np.float64).tiny  # subnormals carry too few bits to compare
    np.testing.assert_allclose(lu.log_softmax(x)[normal], np.log(p[normal]), rtol=1e-12, atol=1e-11)


@PROPERTY_SETTINGS
@given(x=hnp.arrays(np.float64, (3, 4, 5), elements=finite_floats), axis=st.integers(-3, 2))
def test_axis_k_equals_moveaxis(x, axis):
    for f in (lu.softmax, lu.log_softmax):
        moved = np.moveaxis(f(np.moveaxis(x, axis, -1)), -1, axis)
        np.testing.assert_allclose(f(x, axis=axis), moved, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(
        lu.logsumexp(x, axis=axis), lu.logsumexp(np.moveaxis(x, axis, -1)), rtol=1e-13
    )


# ---------------------------------------------------------------------------------------------
# sigmoid and log-sigmoid
# ---------------------------------------------------------------------------------------------


def test_sigmoid_family_matches_scipy(rng):
    x = np.concatenate([rng.normal(scale=30.0, size=200), [0.0, 40.0, -40.0, 700.0, -700.0]])
    np.testing.assert_allclose(lu.sigmoid(x), special.expit(x), rtol=1e-12)
    np.testing.assert_allclose(lu.log_sigmoid(x), special.log_expit(x), rtol=1e-12)


def test_sigmoid_family_hand_values():
    # sigma(log 3) = 3 / 4, sigma(-log 3) = 1 / 4.
    np.testing.assert_allclose(lu.sigmoid([np.log(3.0), -np.log(3.0)]), [0.75, 0.25], rtol=1e-15)
    np.testing.assert_allclose(lu.log_sigmoid(np.log(3.0)), np.log(0.75), rtol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_family_extremes(dtype):
    x = np.array([-1e4, 1e4], dtype=dtype)
    s, ls = lu.sigmoid(x), lu.log_sigmoid(x)
    assert s.dtype == dtype
    assert ls.dtype == dtype
    np.testing.assert_array_equal(s, [0.0, 1.0])
    np.testing.assert_array_equal(ls, [-1e4, 0.0])


# ---------------------------------------------------------------------------------------------
# cross-entropy and NLL
# ---------------------------------------------------------------------------------------------


def scipy_cross_entropy(logits, probs):
    """Per-sample -sum_c q_c log softmax(x)_c with scipy, for targets without exact zeros."""
    return -(probs * special.log_softmax(logits, axis=-1)).sum(axis=-1)


def test_cross_entropy_hand_value():
    # softmax([0, log 3]) = [1/4, 3/4]: the loss of label 1 is -log(3/4), of label 0 log 4.
    logits = np.array([[0.0, np.log(3.0)], [0.0, np.log(3.0)]])
    np.testing.assert_allclose(
        lu.cross_entropy(logits, [1, 0], reduction="none"), [-np.log(0.75), np.log(4.0)], rtol=1e-15
    )
    np.testing.assert_allclose(lu.cross_entropy(logits, [1, 0]), np.log(4.0 / 0.75) / 2, rtol=1e-15)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_matches_scipy(rng, reduction):
    logits, labels = random_logits(rng), rng.integers(0, 4, size=5)
    per_sample = -special.log_softmax(logits, axis=-1)[np.arange(5), labels]
    expected = {"mean": per_sample.mean(), "sum": per_sample.sum(), "none": per_sample}
    np.testing.assert_allclose(
        lu.cross_entropy(logits, labels, reduction=reduction), expected[reduction], rtol=1e-12
    )
    probs = random_probs(rng)
    per_sample = scipy_cross_entropy(logits, probs)
    expected = {"mean": per_sample.mean(), "sum": per_sample.sum(), "none": per_sample}
    np.testing.assert_allclose(
        lu.cross_entropy(logits, probs, reduction=reduction), expected[reduction], rtol=1e-12
    )


@pytest.mark.parametrize("eps", [0.1, 0.5, 1.0])
def test_label_smoothing_mixes_target_with_uniform(rng, eps):
    logits, labels = random_logits(rng), rng.integers(0, 4, size=5)
    smoothed = (1 - eps) * np.eye(4)[labels] + eps / 4
    expected = scipy_cross_entropy(logits, smoothed)
    np.testing.assert_allclose(
        lu.cross_entropy(logits, labels, reduction="none", label_smoothing=eps),
        expected,
        rtol=1e-12,
    )
    probs = random_probs(rng)
    np.testing.assert_allclose(
        lu.cross_entropy(logits, probs, reduction="none", label_smoothing=eps),
        scipy_cross_entropy(logits, (1 - eps) * probs + eps / 4),
        rtol=1e-12,
    )


def test_cross_entropy_infinite_logits():
    # A -inf logit on a class without target mass costs nothing; with mass on it, +inf.
    logits = np.array([[0.0, -np.inf, 0.0]])
    np.testing.assert_allclose(lu.cross_entropy(logits, [0]), np.log(2.0), rtol=1e-15)
    np.testing.assert_allclose(lu.cross_entropy(logits, [[0.5, 0.0, 0.5]]), np.log(2.0), rtol=1e-15)
    assert lu.cross_entropy(logits, [1]) == np.inf
    assert lu.cross_entropy(logits, [0], label_smoothing=0.1) == np.inf
    assert lu.cross_entropy(logits, [0], label_smoothing=1.0) == np.inf
    assert np.isnan(lu.cross_entropy([[-np.inf, -np.inf]], [0]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_extreme_logits_and_dtype(dtype):
    logits = np.array([[1e4, -1e4, 0.0], [1e4, 1e4, 1e4]], dtype=dtype)
    # Row 1: the target holds all the mass, loss e^-2e4-ish = 0; row 2: uniform, log 3.
    loss = lu.cross_entropy(logits, [0, 2], reduction="none")
    assert loss.dtype == dtype
    np.testing.assert_allclose(
        loss, [0.0, np.log(3.0)], atol=1e-3 if dtype == np.float32 else 1e-12
    )
    grad = lu.cross_entropy_grad(logits, [0, 2])
    assert grad.dtype == dtype
    assert np.all(np.isfinite(grad))
    assert lu.cross_entropy(logits, np.eye(3, dtype=int)[[0, 2]]).dtype == dtype  # int one-hot
    assert lu.cross_entropy(logits, np.eye(3, dtype=dtype)[[0, 2]]).dtype == dtype
    assert lu.cross_entropy(logits.tolist(), [0, 2]).dtype == np.float64  # lists are float64


@PROPERTY_SETTINGS
@given(logits=batches, data=st.data())
def test_cross_entropy_properties(logits, data):
    n, c = logits.shape
    labels = np.array(data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    mean = lu.cross_entropy(logits, labels)
    np.testing.assert_allclose(
        lu.cross_entropy(logits, labels, reduction="sum"), n * mean, rtol=1e-12
    )
    np.testing.assert_allclose(lu.cross_entropy(logits, np.eye(c)[labels]), mean, rtol=1e-12)
    np.testing.assert_allclose(lu.cross_entropy(logits, labels, label_smoothing=0.0), mean, rtol=0)
    np.testing.assert_allclose(
        lu.nll_loss(lu.log_softmax(logits), labels), mean, rtol=1e-12, atol=1e-14
    )
    np.testing.assert_allclose(
        lu.cross_entropy_grad(logits, np.eye(c)[labels]),
        lu.cross_entropy_grad(logits, labels),
        rtol=1e-12,
        atol=1e-15,
    )


def test_cross_entropy_grad_closed_form(rng):
    logits, labels = random_logits(rng), rng.integers(0, 4, size=5)
    expected = (special.softmax(logits, axis=-1) - np.eye(4)[labels]) / 5
    np.testing.assert_allclose(
        lu.cross_entropy_grad(logits, labels), expected, rtol=1e-12, atol=1e-16
    )


def test_nll_loss_hand_value():
    log_probs = np.log([[0.25, 0.75], [0.5, 0.5]])
    np.testing.assert_allclose(lu.nll_loss(log_probs, [1, 0]), -np.log(0.75 * 0.5) / 2, rtol=1e-15)
    np.testing.assert_array_equal(
        lu.nll_loss_grad(log_probs, [1, 0], reduction="sum"), [[0, -1], [-1, 0]]
    )


def test_empty_batch():
    logits, labels = np.zeros((0, 3)), np.zeros(0, dtype=int)
    assert lu.cross_entropy(logits, labels, reduction="sum") == 0.0
    assert lu.cross_entropy_grad(logits, labels, reduction="sum").shape == (0, 3)
    message = "reduction='mean' of an empty batch is undefined"
    with pytest.raises(ValueError, match=re.escape(message)):
        lu.cross_entropy(logits, labels)
    with pytest.raises(ValueError, match=re.escape(message)):
        lu.cross_entropy_grad(logits, labels)


# ---------------------------------------------------------------------------------------------
# binary cross-entropy
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_binary_cross_entropy_matches_scipy(rng, reduction):
    probs, target = rng.random((4, 3)), rng.random((4, 3))
    per_elem = -(special.xlogy(target, probs) + special.xlog1py(1 - target, -probs))
    expected = {"mean": per_elem.mean(), "sum": per_elem.sum(), "none": per_elem}
    np.testing.assert_allclose(
        lu.binary_cross_entropy(probs, target, reduction=reduction), expected[reduction], rtol=1e-12
    )
    logits = rng.normal(scale=20.0, size=(4, 3))
    per_elem = -(target * special.log_expit(logits) + (1 - target) * special.log_expit(-logits))
    expected = {"mean": per_elem.mean(), "sum": per_elem.sum(), "none": per_elem}
    np.testing.assert_allclose(
        lu.binary_cross_entropy_with_logits(logits, target, reduction=reduction),
        expected[reduction],
        rtol=1e-12,
    )


def test_binary_cross_entropy_zero_log_zero_and_infinity():
    # -(1 log 0.8 + 0 log 0.2) and -(0 log 0 + 1 log 1) = 0: 0 log 0 = 0.
    np.testing.assert_allclose(
        lu.binary_cross_entropy([0.8, 0.0, 1.0], [1.0, 0.0, 1.0], reduction="none"),
        [-np.log(0.8), 0.0, 0.0],
        rtol=1e-15,
    )
    # Target mass on a probability of exactly 0 (or 1 - p = 0): +inf, no clamp at 100 as torch.
    np.testing.assert_array_equal(
        lu.binary_cross_entropy([0.0, 1.0, 0.0], [1.0, 0.0, 0.5], reduction="none"), np.inf
    )
    np.testing.assert_array_equal(
        lu.binary_cross_entropy_grad([0.0, 1.0], [1.0, 0.0], reduction="sum"), [-np.inf, np.inf]
    )


def test_binary_cross_entropy_with_logits_precision_and_extremes():
    # For y = 1 the loss is log(1 + e^-x), about e^-40 at x = 40: a naive softplus(x) - x
    # would cancel to 0.
    np.testing.assert_allclose(
        lu.binary_cross_entropy_with_logits([40.0], [1.0], reduction="none"),
        [np.log1p(np.exp(-40.0))],
        rtol=1e-15,
    )
    for dtype in (np.float32, np.float64):
        x = np.array([1e4, -1e4, 1e4], dtype=dtype)
        loss = lu.binary_cross_entropy_with_logits(x, np.array([1, 0, 0]), reduction="none")
        assert loss.dtype == dtype
        np.testing.assert_array_equal(loss, [0.0, 0.0, 1e4])
        grad = lu.binary_cross_entropy_with_logits_grad(x, np.array([1, 0, 0]), reduction="sum")
        np.testing.assert_array_equal(grad, [0.0, 0.0, 1.0])


def test_bce_from_probabilities_equals_bce_from_logits(rng):
    logits, target = rng.normal(size=(6,)), rng.random(6)
    np.testing.assert_allclose(
        lu.binary_cross_entropy(lu.sigmoid(logits), target),
        lu.binary_cross_entropy_with_logits(logits, target),
        rtol=1e-12,
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_dtype_follows_prediction(dtype):
    probs = np.array([0.25, 0.5], dtype=dtype)
    for f in (
        lu.binary_cross_entropy,
        lu.binary_cross_entropy_grad,
        lu.binary_cross_entropy_with_logits,
        lu.binary_cross_entropy_with_logits_grad,
    ):
        assert f(probs, np.array([1, 0])).dtype == dtype  # integer targets do not promote
        assert f(probs, probs).dtype == dtype


def test_bce_accepts_scalars_and_lists():
    np.testing.assert_allclose(lu.binary_cross_entropy(0.25, 1, reduction="none"), np.log(4.0))
    np.testing.assert_allclose(lu.binary_cross_entropy_grad(0.25, 1), -4.0)
    np.testing.assert_allclose(lu.binary_cross_entropy_with_logits_grad([[0.0]], [[1]]), [[-0.5]])


# ---------------------------------------------------------------------------------------------
# gradients: central differences in float64
# ---------------------------------------------------------------------------------------------


def _gradient_cases(rng):
    """name -> (loss, loss_grad, first argument, target, keyword arguments)."""
    labels, probs = rng.integers(0, 4, size=5), random_probs(rng)
    bce_target = rng.random((3, 4))
    ce = (lu.cross_entropy, lu.cross_entropy_grad)
    return {
        "ce-labels": (*ce, random_logits(rng), labels, {}),
        "ce-probs": (*ce, random_logits(rng), probs, {}),
        "ce-labels-smoothed": (*ce, random_logits(rng), labels, {"label_smoothing": 0.2}),
        "ce-probs-smoothed": (*ce, random_logits(rng), probs, {"label_smoothing": 0.3}),
        # log-probabilities that do not sum to 1: nll_loss does not require it
        "nll": (
            lu.nll_loss,
            lu.nll_loss_grad,
            special.log_softmax(random_logits(rng), axis=-1) - 0.1,
            labels,
            {},
        ),
        "bce": (
            lu.binary_cross_entropy,
            lu.binary_cross_entropy_grad,
            0.05 + 0.9 * rng.random((3, 4)),
            bce_target,
            {},
        ),
        "bce-logits": (
            lu.binary_cross_entropy_with_logits,
            lu.binary_cross_entropy_with_logits_grad,
            rng.normal(scale=3.0, size=(3, 4)),
            bce_target,
            {},
        ),
    }


GRADIENT_CASES = list(_gradient_cases(np.random.default_rng(0)))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("case", GRADIENT_CASES)
def test_gradients_match_central_differences(rng, case, reduction):
    loss, loss_grad, x, target, kwargs = _gradient_cases(rng)[case]
    f = scalar_loss(loss, reduction, **kwargs)
    numeric = numerical_grad(lambda z: f(z, target), x)
    analytic = loss_grad(x, target, reduction=reduction, **kwargs)
    assert analytic.shape == x.shape
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)


# ---------------------------------------------------------------------------------------------
# validation: exact messages
# ---------------------------------------------------------------------------------------------

LOGITS = np.zeros((3, 2))


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize(
    ("logits", "target", "kwargs", "message"),
    [
        (
            np.zeros(3),
            [1],
            {},
            "logits must have shape (N, C) with the class axis last, got shape "
            "(3,); for a single sample pass logits[None, :]",
        ),
        (
            np.zeros((3, 2, 4)),
            [1, 0, 1],
            {},
            "torch accepts (N, C, d1, ...) with the class axis "
            "second, lossutils does not: move the class axis last and flatten",
        ),
        (
            LOGITS,
            [1, 0],
            {},
            "target must be integer class labels of shape (3,) to match 3 rows "
            "of scores, got shape (2,)",
        ),
        (
            LOGITS,
            [[1], [0], [1]],
            {},
            "target has shape (3, 1) but logits has shape (3, 2); "
            "pass class labels of shape (3,) or class probabilities of shape (3, 2). A column of "
            "class labels? Pass target.ravel().",
        ),
        (LOGITS, [0, 2, 1], {}, "target has labels outside [0, 2): [2]"),
        (LOGITS, [0, 1.5, 1], {}, "target must hold integer class indices, got non-integer values"),
        (
            LOGITS,
            [[0.5, 0.6]] * 3,
            {},
            "target must sum to 1 along the last (class) axis, found a row summing to 1.1",
        ),
        (
            LOGITS,
            [[1.5, -0.5]] * 3,
            {},
            "target must hold probabilities in [0, 1], found [1.5, -0.5",
        ),
        (
            LOGITS,
            [0, 1, 1],
            {"reduction": "avg"},
            "reduction must be one of 'mean', 'sum', 'none', got 'avg'.",
        ),
        (
            LOGITS,
            [0, 1, 1],
            {"label_smoothing": 1.5},
            "label_smoothing must be a number in [0, 1], got 1.5; 0 disables smoothing",
        ),
        (LOGITS, [0, 1, 1], {"label_smoothing": -0.1}, "got -0.1"),
        (LOGITS, [0, 1, 1], {"label_smoothing": "0.1"}, "got '0.1'"),
        (LOGITS, [0, 1, 1], {"label_smoothing": np.nan}, "got nan"),
    ],
)
def test_cross_entropy_errors(logits, target, kwargs, message, grad):
    f = lu.cross_entropy_grad if grad else lu.cross_entropy
    with pytest.raises(ValueError, match=re.escape(message)):
        f(logits, target, **kwargs)


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize(
    ("log_probs", "target", "message"),
    [
        # One-hot targets where labels are expected, with N = C so that the shapes alone look
        # plausible: refused with a hint instead of broadcast.
        (
            np.log(np.full((3, 3), 1 / 3)),
            np.eye(3),
            "It looks like one-hot or probability "
            "targets: pass class indices (e.g. target.argmax(-1))",
        ),
        (
            np.full((1, 2), 0.5),
            [1],
            "log_probs must be log-probabilities (<= 0), found "
            "[0.5, 0.5]; pass np.log(probs) or log_softmax(logits)",
        ),
        (np.zeros(2), [1], "log_probs must have shape (N, C)"),
    ],
)
def test_nll_loss_errors(log_probs, target, message, grad):
    f = lu.nll_loss_grad if grad else lu.nll_loss
    with pytest.raises(ValueError, match=re.escape(message)):
        f(log_probs, target)


@pytest.mark.parametrize(
    "f",
    [
        lu.binary_cross_entropy,
        lu.binary_cross_entropy_grad,
        lu.binary_cross_entropy_with_logits,
        lu.binary_cross_entropy_with_logits_grad,
    ],
)
@pytest.mark.parametrize(
    ("pred", "target", "kwargs", "message"),
    [
        (
            [0.5, 0.5],
            [[1.0, 0.0]],
            {},
            "has shape (2,) but target has shape (1, 2); they must have the same shape",
        ),
        ([0.5, 0.5], [1.0, 2.0], {}, "target must hold probabilities in [0, 1], found [2.0]"),
        ([0.5, 0.5], [1.0, 0.0], {"reduction": "total"}, "reduction must be one of"),
    ],
)
def test_bce_errors(f, pred, target, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        f(pred, target, **kwargs)


@pytest.mark.parametrize("f", [lu.binary_cross_entropy, lu.binary_cross_entropy_grad])
def test_bce_rejects_probabilities_outside_unit_interval(f):
    with pytest.raises(
        ValueError,
        match=re.escape(
            "probs must hold probabilities in [0, 1], found [1.2]; if these are scores or logits"
        ),
    ):
        f([0.5, 1.2], [1.0, 0.0])


# ---------------------------------------------------------------------------------------------
# dtypes: float32 in, float32 out; integers and lists become float64
# ---------------------------------------------------------------------------------------------

LOGITS_2X3 = [[0.5, -1.0, 2.0], [0.0, 0.25, -0.5]]
CALLS = [
    (lu.logsumexp, (LOGITS_2X3,)),
    (lu.softmax, (LOGITS_2X3,)),
    (lu.log_softmax, (LOGITS_2X3,)),
    (lu.sigmoid, (LOGITS_2X3,)),
    (lu.log_sigmoid, (LOGITS_2X3,)),
    (lu.cross_entropy, (LOGITS_2X3, [2, 0])),
    (lu.cross_entropy_grad, (LOGITS_2X3, [2, 0])),
    (lu.nll_loss, (np.negative(np.abs(LOGITS_2X3)), [2, 0])),
    (lu.nll_loss_grad, (np.negative(np.abs(LOGITS_2X3)), [2, 0])),
    (lu.binary_cross_entropy, ([[0.5, 0.25]], [[1, 0]])),
    (lu.binary_cross_entropy_grad, ([[0.5, 0.25]], [[1, 0]])),
    (lu.binary_cross_entropy_with_logits, (LOGITS_2X3, np.ones((2, 3), dtype=int))),
    (lu.binary_cross_entropy_with_logits_grad, (LOGITS_2X3, np.ones((2, 3), dtype=int))),
]


@pytest.mark.parametrize(("f", "args"), CALLS, ids=[f.__name__ for f, _ in CALLS])
def test_float32_in_float32_out_and_lists_give_float64(f, args):
    prediction, *rest = args
    assert f(np.asarray(prediction, dtype=np.float32), *rest).dtype == np.float32
    assert f(np.asarray(prediction, dtype=np.float64), *rest).dtype == np.float64
    assert f(prediction, *rest).dtype == np.float64  # a list
    as_int = np.asarray(prediction).round().astype(int)
    assert f(as_int, *rest).dtype == np.float64


def test_float64_probability_target_promotes_float32_logits():
    logits = np.zeros((1, 2), dtype=np.float32)
    assert lu.cross_entropy(logits, np.array([[0.5, 0.5]])).dtype == np.float64
    assert lu.cross_entropy(logits, np.float32([[0.5, 0.5]])).dtype == np.float32


# ---------------------------------------------------------------------------------------------
# inputs are never modified
# ---------------------------------------------------------------------------------------------


def test_inputs_are_not_modified(rng):
    logits, labels, probs = random_logits(rng), rng.integers(0, 4, size=5), random_probs(rng)
    bce_probs, bce_target = rng.random((3, 4)), rng.random((3, 4))
    calls = [
        (lu.logsumexp, (logits,), {}),
        (lu.softmax, (logits,), {}),
        (lu.log_softmax, (logits,), {}),
        (lu.sigmoid, (logits,), {}),
        (lu.log_sigmoid, (logits,), {}),
        (lu.one_hot, (labels, 4), {}),
        (lu.cross_entropy, (logits, labels), {"label_smoothing": 0.1}),
        (lu.cross_entropy_grad, (logits, labels), {"label_smoothing": 0.1}),
        (lu.cross_entropy, (logits, probs), {"label_smoothing": 0.1}),
        (lu.cross_entropy_grad, (logits, probs), {"label_smoothing": 0.1}),
        (lu.nll_loss, (-np.abs(logits), labels), {}),
        (lu.nll_loss_grad, (-np.abs(logits), labels), {}),
        (lu.binary_cross_entropy, (bce_probs, bce_target), {}),
        (lu.binary_cross_entropy_grad, (bce_probs, bce_target), {}),
        (lu.binary_cross_entropy_with_logits, (logits[:3], bce_target), {}),
        (lu.binary_cross_entropy_with_logits_grad, (logits[:3], bce_target), {}),
    ]
    for f, args, kwargs in calls:
        copies = [np.copy(a) for a in args]
        for reduction in ("mean", "none"):
            if "reduction" in f.__code__.co_varnames:
                f(*args, reduction=reduction, **kwargs)
            else:
                f(*args, **kwargs)
        for a, c in zip(args, copies, strict=True):
            np.testing.assert_array_equal(a, c, err_msg=f.__name__)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_many_rows_of_few_classes_take_the_blocked_path_and_agree_with_scipy(dtype):
    # 20,000 x 10 spans several blocks of rows, each copied class-major (lossutils._blocks);
    # a Fortran-ordered copy of the same values is read another way: both must agree with scipy.
    rng = np.random.default_rng(7)
    x = (rng.normal(size=(20_000, 10)) * 30).astype(dtype)
    x[5, 3], x[7], x[9, 2] = np.inf, -np.inf, np.nan
    labels = rng.integers(0, 10, 20_000)
    with np.errstate(invalid="ignore"):  # scipy warns on the non-finite rows
        expected = special.log_softmax(x.astype(np.float64), axis=-1)
        expected_probs = special.softmax(x.astype(np.float64), axis=-1)
    for arr in (x, np.asfortranarray(x)):
        got = lu.log_softmax(arr)
        # log-probabilities near 0 carry an absolute rounding error of one ulp of 1.
        atol = 2 * np.finfo(dtype).eps
        np.testing.assert_allclose(
            got, expected, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=atol
        )
        np.testing.assert_allclose(lu.softmax(arr), expected_probs, rtol=1e-5, atol=1e-30)
    rows = np.arange(10, 20_000)
    np.testing.assert_allclose(
        lu.cross_entropy(x[rows], labels[rows]),
        -expected[rows, labels[rows]].mean(),
        rtol=1e-5 if dtype == np.float32 else 1e-12,
    )
