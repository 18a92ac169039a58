"""Tests for lossutils.information: known values, scipy references, gradients, properties."""

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import special, stats

from lossutils import information as info

FUNCTIONS = [
    pytest.param(lambda p, q: info.entropy(p), lambda p, q: info.entropy_grad(p), id="entropy"),
    pytest.param(
        info.distribution_cross_entropy, info.distribution_cross_entropy_grad, id="cross_entropy"
    ),
    pytest.param(info.kl_divergence, info.kl_divergence_grad, id="kl"),
]
TWO_ARGUMENTS = FUNCTIONS[1:]
# Independent references for the same quantities, elementwise terms summed over the last axis.
SCIPY = {
    "entropy": lambda p, q: special.entr(p).sum(-1),
    "cross_entropy": lambda p, q: -special.xlogy(p, q).sum(-1),
    "kl": lambda p, q: special.rel_entr(p, q).sum(-1),
}


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


def torch_kl_div(input, target, reduction):
    """torch.nn.functional.kl_div written out: input = log q, target = p."""
    pointwise = special.xlogy(target, target) - target * input
    if reduction == "batchmean":
        return pointwise.sum() / input.shape[0]
    return pointwise.mean() if reduction == "mean" else pointwise.sum()


# --- known values ---------------------------------------------------------------------------


def test_curriculum_kl_values():
    forward = info.kl_divergence([0.9, 0.1], [0.5, 0.5])
    backward = info.kl_divergence([0.5, 0.5], [0.9, 0.1])
    np.testing.assert_allclose(forward, 0.9 * math.log(1.8) + 0.1 * math.log(0.2), rtol=1e-14)
    np.testing.assert_allclose(backward, math.log(5 / 3), rtol=1e-14)
    assert f"{forward:.3f}" == "0.368"
    assert f"{backward:.3f}" == "0.511"


def test_entropy_hand_values():
    np.testing.assert_allclose(info.entropy([0.5, 0.5]), math.log(2), rtol=1e-15)
    np.testing.assert_allclose(info.entropy(np.full(8, 1 / 8)), math.log(8), rtol=1e-15)
    np.testing.assert_allclose(
        info.entropy([0.25, 0.75]), -(0.25 * math.log(0.25) + 0.75 * math.log(0.75)), rtol=1e-15
    )


def test_cross_entropy_of_one_hot_is_minus_log_of_the_true_class():
    np.testing.assert_allclose(
        info.distribution_cross_entropy([[0.0, 1.0, 0.0]], [[0.2, 0.3, 0.5]]), [-math.log(0.3)]
    )


def test_matches_scipy_stats_entropy():
    rng = np.random.default_rng(0)
    p, q = rng.dirichlet(np.ones(5), size=4), rng.dirichlet(np.ones(5), size=4)
    np.testing.assert_allclose(info.entropy(p), stats.entropy(p, axis=-1), rtol=1e-13)
    np.testing.assert_allclose(info.kl_divergence(p, q), stats.entropy(p, q, axis=-1), rtol=1e-13)


@pytest.mark.parametrize(("f", "grad"), FUNCTIONS)
def test_matches_scipy_special_with_zeros(f, grad, request):
    name = request.node.callspec.id
    p = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.2, 0.3, 0.5], [0.0, 0.0, 1.0]])
    q = np.array([[0.5, 0.0, 0.5], [1.0, 0.0, 0.0], [0.1, 0.1, 0.8], [0.3, 0.7, 0.0]])
    with np.errstate(divide="raise", invalid="raise", over="raise"):
        out = f(p, q)
    np.testing.assert_allclose(out, SCIPY[name](p, q), rtol=1e-14)


def test_zero_conventions():
    # 0 log 0 = 0: a certain outcome has no entropy (and not -0.0)
    h = info.entropy([[1.0, 0.0], [0.0, 1.0]])
    np.testing.assert_array_equal(h, [0.0, 0.0])
    assert not np.signbit(h).any()
    # q = 0 where p = 0 costs nothing; q = 0 where p > 0 is infinitely surprising
    assert info.kl_divergence([1.0, 0.0], [1.0, 0.0]) == 0.0
    assert info.kl_divergence([0.5, 0.5], [1.0, 0.0]) == np.inf
    assert info.distribution_cross_entropy([0.5, 0.5], [1.0, 0.0]) == np.inf
    assert info.distribution_cross_entropy([1.0, 0.0], [1.0, 0.0]) == 0.0


def test_torch_kl_div_takes_log_q_then_p():
    rng = np.random.default_rng(1)
    p, q = rng.dirichlet(np.ones(4), size=3), rng.dirichlet(np.ones(4), size=3)
    ours = info.kl_divergence(p, q)
    np.testing.assert_allclose(torch_kl_div(np.log(q), p, "sum"), ours.sum(), rtol=1e-13)
    np.testing.assert_allclose(torch_kl_div(np.log(q), p, "batchmean"), ours.mean(), rtol=1e-13)
    # torch's "mean" also divides by the number of classes
    np.testing.assert_allclose(torch_kl_div(np.log(q), p, "mean"), ours.mean() / 4, rtol=1e-13)


def test_kl_docstring_states_the_conventions():
    doc = info.kl_divergence.__doc__
    for phrase in ("KL(p || q)", "torch.nn.functional.kl_div", "rel_entr", "scipy.stats.entropy"):
        assert phrase in doc


# --- shapes, dtypes, inputs -----------------------------------------------------------------


@pytest.mark.parametrize(("f", "grad"), FUNCTIONS)
def test_reduces_only_the_last_axis(f, grad):
    rng = np.random.default_rng(2)
    p, q = rng.dirichlet(np.ones(4), size=(2, 3)), rng.dirichlet(np.ones(4), size=(2, 3))
    out = f(p, q)
    assert out.shape == (2, 3)
    np.testing.assert_allclose(out[1, 2], f(p[1, 2], q[1, 2]), rtol=1e-15)
    assert grad(p, q).shape == (2, 3, 4)
    assert isinstance(f(p[0, 0], q[0, 0]), np.floating)


@pytest.mark.parametrize(("f", "grad"), FUNCTIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_preserved(f, grad, dtype):
    p = np.array([[0.25, 0.75], [1.0, 0.0]], dtype=dtype)
    q = np.array([[0.5, 0.5], [0.75, 0.25]], dtype=dtype)
    assert f(p, q).dtype == dtype
    assert grad(p, q).dtype == dtype
    assert f(p[0], q[0]).dtype == dtype


@pytest.mark.parametrize(("f", "grad"), FUNCTIONS)
def test_lists_give_float64(f, grad):
    assert f([1, 0], [1, 0]).dtype == np.float64
    assert grad([1, 0], [1, 0]).dtype == np.float64


@pytest.mark.parametrize(("f", "grad"), TWO_ARGUMENTS)
def test_mixed_precision_gives_float64(f, grad):
    p32 = np.array([0.5, 0.5], dtype=np.float32)
    assert f(p32, np.array([0.25, 0.75])).dtype == np.float64
    assert grad(p32, np.array([0.25, 0.75])).dtype == np.float64


@pytest.mark.parametrize(("f", "grad"), FUNCTIONS)
def test_float32_agrees_with_float64(f, grad):
    rng = np.random.default_rng(3)
    p, q = rng.dirichlet(np.ones(6), size=5), rng.dirichlet(np.ones(6), size=5)
    p32, q32 = p.astype(np.float32), q.astype(np.float32)
    np.testing.assert_allclose(f(p32, q32), f(p, q), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(grad(p32, q32), grad(p, q), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("f", "grad"), FUNCTIONS)
def test_inputs_are_not_modified(f, grad):
    p = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    q = np.array([[0.5, 0.0, 0.5], [0.1, 0.1, 0.8]])
    p_copy, q_copy = p.copy(), q.copy()
    f(p, q)
    g = grad(p, q)
    assert not np.shares_memory(g, p)
    assert not np.shares_memory(g, q)
    np.testing.assert_array_equal(p, p_copy)
    np.testing.assert_array_equal(q, q_copy)


# --- gradients ------------------------------------------------------------------------------


@pytest.mark.parametrize(("f", "grad"), FUNCTIONS)
def test_gradient_is_the_free_partial_derivative(f, grad, request):
    # The reference formula (scipy) accepts unnormalised p, so central differences can move
    # one entry at a time: the partial derivatives with p's entries treated as free.
    reference = SCIPY[request.node.callspec.id]
    rng = np.random.default_rng(4)
    p, q = rng.dirichlet(np.full(4, 3.0), size=3), rng.dirichlet(np.full(4, 3.0), size=3)
    numeric = central_difference(lambda x: reference(x, q).sum(), p)
    np.testing.assert_allclose(grad(p, q), numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(("f", "grad"), FUNCTIONS)
def test_gradient_predicts_the_change_along_the_simplex(f, grad):
    # Moving mass from class j to class i keeps p a distribution, so the function under
    # test itself can be differenced: the slope is grad_i - grad_j.
    rng = np.random.default_rng(5)
    p, q = rng.dirichlet(np.full(5, 3.0)), rng.dirichlet(np.full(5, 3.0))
    g = grad(p, q)
    h = 1e-6
    for i, j in [(0, 1), (2, 4), (3, 0)]:
        step = np.zeros(5)
        step[i], step[j] = h, -h
        slope = (f(p + step, q) - f(p - step, q)) / (2 * h)
        np.testing.assert_allclose(slope, g[i] - g[j], rtol=1e-6, atol=1e-9)


def test_infinite_derivatives_only_at_zero_probabilities():
    p = np.array([0.5, 0.5, 0.0, 0.0])
    q = np.array([0.5, 0.0, 0.5, 0.0])
    with np.errstate(divide="raise", invalid="raise", over="raise"):
        g_entropy = info.entropy_grad(p)
        g_cross = info.distribution_cross_entropy_grad(p, q)
        g_kl = info.kl_divergence_grad(p, q)
    np.testing.assert_allclose(g_entropy, [math.log(2) - 1, math.log(2) - 1, np.inf, np.inf])
    np.testing.assert_allclose(g_cross, [math.log(2), np.inf, math.log(2), np.inf])
    np.testing.assert_allclose(g_kl, [1.0, np.inf, -np.inf, np.inf])


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("f", "grad"), FUNCTIONS)
def test_unnormalised_p(f, grad):
    message = exact(
        "p must sum to 1 along the last (class) axis, found a row summing to 0.9; normalise it "
        "(p / p.sum(-1, keepdims=True))."
    )
    for g in (f, grad):
        with pytest.raises(ValueError, match=message):
            g([[0.5, 0.5], [0.4, 0.5]], [[0.5, 0.5], [0.5, 0.5]])


@pytest.mark.parametrize(("f", "grad"), TWO_ARGUMENTS)
def test_bad_q(f, grad):
    out_of_range = exact(
        "q must hold probabilities in [0, 1], found [-0.5, 1.5]; if these are scores or "
        "logits, use the *_with_logits / logits form instead."
    )
    unnormalised = re.escape("q must sum to 1 along the last (class) axis")
    for g in (f, grad):
        with pytest.raises(ValueError, match=out_of_range):
            g([0.5, 0.5], [-0.5, 1.5])
        with pytest.raises(ValueError, match=unnormalised):
            g([0.5, 0.5], [0.5, 0.6])
        with pytest.raises(
            ValueError,
            match=exact(
                "p has shape (2,) but q has shape (3,); they must have the same shape (lossutils "
                "never broadcasts silently: reshape one of them, e.g. target.reshape(pred.shape), "
                "if that is what you mean)."
            ),
        ):
            g([0.5, 0.5], [0.2, 0.3, 0.5])


@pytest.mark.parametrize(("f", "grad"), FUNCTIONS)
def test_not_a_distribution(f, grad):
    for g in (f, grad):
        with pytest.raises(
            ValueError, match=exact("p must be a distribution over the last axis, got a scalar.")
        ):
            g(1.0, 1.0)
        with pytest.raises(
            ValueError,
            match=exact(
                "p has an empty last axis (shape (2, 0)); a distribution needs at least one "
                "outcome."
            ),
        ):
            g(np.zeros((2, 0)), np.zeros((2, 0)))
        with pytest.raises(ValueError, match=re.escape("p must hold probabilities in [0, 1]")):
            g([1.5, -0.5], [0.5, 0.5])


def test_an_empty_batch_is_fine():
    assert info.kl_divergence(np.zeros((0, 3)), np.zeros((0, 3))).shape == (0,)


# --- properties -----------------------------------------------------------------------------


@st.composite
def distribution_pairs(draw):
    """Two batches of distributions of the same shape, often with exact zeros."""
    shape = draw(st.tuples(st.integers(1, 3), st.integers(1, 6)))
    weights = st.one_of(st.just(0.0), st.floats(1e-6, 1.0))
    pair = []
    for _ in range(2):
        x = draw(hnp.arrays(np.float64, shape, elements=weights))
        x[:, 0] += x.sum(-1) == 0  # every row needs some mass
        pair.append(x / x.sum(-1, keepdims=True))
    return pair


@settings(max_examples=40, deadline=None)
@given(pq=distribution_pairs())
def test_gibbs_inequality_and_pinsker(pq):
    p, q = pq
    kl = info.kl_divergence(p, q)
    # KL >= 1/2 ||p - q||_1^2 >= 0 (Pinsker), so KL = 0 only for p == q
    l1 = np.abs(p - q).sum(-1)
    assert np.all(kl >= 0.5 * l1**2 - 1e-12)
    np.testing.assert_array_equal(info.kl_divergence(p, p), np.zeros(p.shape[0]))


@settings(max_examples=40, deadline=None)
@given(pq=distribution_pairs())
def test_cross_entropy_is_entropy_plus_kl(pq):
    p, q = pq
    np.testing.assert_allclose(
        info.distribution_cross_entropy(p, q),
        info.entropy(p) + info.kl_divergence(p, q),
        rtol=1e-9,
        atol=1e-12,
    )


@settings(max_examples=40, deadline=None)
@given(pq=distribution_pairs())
def test_entropy_is_between_zero_and_log_c(pq):
    p, _ = pq
    h = info.entropy(p)
    assert np.all(h >= 0)
    assert np.all(h <= math.log(p.shape[-1]) + 1e-12)


@settings(max_examples=40, deadline=None)
@given(pq=distribution_pairs())
def test_agrees_with_scipy_everywhere(pq):
    p, q = pq
    np.testing.assert_allclose(info.entropy(p), SCIPY["entropy"](p, q), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(info.kl_divergence(p, q), SCIPY["kl"](p, q), rtol=1e-9, atol=1e-12)
