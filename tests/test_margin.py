"""Tests of lossutils.margin against hand values, loop-based references and finite differences."""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lossutils import (
    gradient_check,
    hinge_loss,
    hinge_loss_grad,
    multiclass_hinge_loss,
    multiclass_hinge_loss_grad,
    perceptron_loss,
    perceptron_loss_grad,
    squared_hinge_loss,
    squared_hinge_loss_grad,
    zero_one_loss,
    zero_one_loss_grad,
)

BINARY = [
    (zero_one_loss, zero_one_loss_grad),
    (perceptron_loss, perceptron_loss_grad),
    (hinge_loss, hinge_loss_grad),
    (squared_hinge_loss, squared_hinge_loss_grad),
]
CONVEX_BINARY = BINARY[1:]
WITH_MARGIN = [(hinge_loss, hinge_loss_grad), (squared_hinge_loss, squared_hinge_loss_grad)]
KINDS = ["weston_watkins", "crammer_singer"]
ALL_FUNCTIONS = [f for pair in BINARY for f in pair] + [
    multiclass_hinge_loss,
    multiclass_hinge_loss_grad,
]


# --- loop-based references, written from the definitions --------------------------------


def naive_binary(name, scores, target, margin=1.0):
    out = []
    for s, y in zip(scores, target, strict=True):
        z = y * s
        if name == "zero_one_loss":
            out.append(1.0 if z <= 0 else 0.0)
        elif name == "perceptron_loss":
            out.append(-z if z < 0 else 0.0)
        elif name == "hinge_loss":
            out.append(margin - z if z < margin else 0.0)
        else:
            out.append((margin - z) ** 2 if z < margin else 0.0)
    return np.array(out)


def naive_multiclass(scores, labels, margin=1.0, kind="weston_watkins"):
    out = []
    for row, y in zip(scores, labels, strict=True):
        terms = [max(0.0, row[j] - row[y] + margin) for j in range(len(row)) if j != y]
        out.append(sum(terms) if kind == "weston_watkins" else max(terms))
    return np.array(out)


def naive_multiclass_grad(scores, labels, margin=1.0, kind="weston_watkins"):
    """Per-sample subgradient (reduction 'sum') with the documented kink choices."""
    grad = np.zeros((len(scores), len(scores[0])))
    for i, (row, y) in enumerate(zip(scores, labels, strict=True)):
        wrong = [j for j in range(len(row)) if j != y]
        if kind == "weston_watkins":
            for j in wrong:
                if row[j] - row[y] + margin > 0:
                    grad[i, j] += 1
                    grad[i, y] -= 1
        else:
            k = wrong[0]
            for j in wrong:
                if row[j] > row[k]:
                    k = j
            if row[k] - row[y] + margin > 0:
                grad[i, k], grad[i, y] = 1, -1
    return grad


def random_binary(rng, n, *, avoid=None):
    """Scores and +-1 labels; with ``avoid``, no margin y*s within 0.05 of those values."""
    target = rng.choice([-1.0, 1.0], size=n)
    scores = rng.normal(scale=2.0, size=n)
    if avoid is not None:
        for kink in avoid:
            near = np.abs(target * scores - kink) < 0.05
            scores[near] += 0.1 * target[near]
    return scores, target


def random_multiclass(rng, n, c, margin=1.0):
    """Scores well away from every kink: margins and wrong-class ties at least 1e-3 apart."""
    while True:
        scores = rng.normal(scale=2.0, size=(n, c))
        labels = rng.integers(0, c, size=n)
        diffs = scores - scores[np.arange(n), labels][:, None] + margin
        diffs[np.arange(n), labels] = np.inf
        gaps = np.diff(np.sort(scores, axis=1), axis=1)
        if np.abs(diffs).min() > 1e-3 and gaps.min() > 1e-3:
            return scores, labels


# --- hand values -------------------------------------------------------------------------


def test_binary_hand_values():
    s, y = [2.0, 0.5, 0.0, -1.0], [1, 1, -1, 1]
    # margins y*s: 2, 0.5, 0 (tie), -1
    np.testing.assert_array_equal(zero_one_loss(s, y, reduction="none"), [0, 0, 1, 1])
    np.testing.assert_array_equal(perceptron_loss(s, y, reduction="none"), [0, 0, 0, 1])
    np.testing.assert_array_equal(hinge_loss(s, y, reduction="none"), [0, 0.5, 1, 2])
    np.testing.assert_array_equal(squared_hinge_loss(s, y, reduction="none"), [0, 0.25, 1, 4])
    np.testing.assert_array_equal(
        hinge_loss(s, y, margin=2.0, reduction="none"), [0, 1.5, 2, 3]
    )
    assert zero_one_loss(s, y) == 0.5
    assert zero_one_loss(s, y, reduction="sum") == 2.0
    assert hinge_loss(s, y) == 3.5 / 4


def test_binary_grad_hand_values():
    s, y = [2.0, 0.5, 0.0, -1.0, 1.0], [1, 1, -1, -1, 1]
    # margins y*s: 2, 0.5, 0, 1, 1 (the last two exactly on the hinge kink)
    np.testing.assert_array_equal(
        perceptron_loss_grad(s, y, reduction="sum"), [0, 0, 1, 0, 0]
    )
    np.testing.assert_array_equal(hinge_loss_grad(s, y, reduction="sum"), [0, -1, 1, 0, 0])
    np.testing.assert_array_equal(
        squared_hinge_loss_grad(s, y, reduction="sum"), [0, -1, 2, 0, 0]
    )
    np.testing.assert_array_equal(zero_one_loss_grad(s, y, reduction="sum"), np.zeros(5))
    np.testing.assert_array_equal(hinge_loss_grad(s, y), np.array([0, -1, 1, 0, 0]) / 5)


def test_multiclass_hand_values():
    scores = [[3.0, 1.0, 2.5], [0.0, 2.0, 1.0], [1.0, 1.0, 1.0], [2.0, 1.0, 0.0]]
    labels = [0, 2, 1, 0]
    # row 0: true 3; wrong 1 -> max(0, -1) = 0, 2.5 -> 0.5
    # row 1: true 1; wrong 0 -> 0, 2 -> 2
    # row 2: all equal: each wrong class adds the margin 1
    # row 3: class 1 exactly on the margin (1 - 2 + 1 = 0): loss 0, gradient 0 by convention
    np.testing.assert_array_equal(
        multiclass_hinge_loss(scores, labels, reduction="none"), [0.5, 2.0, 2.0, 0.0]
    )
    np.testing.assert_array_equal(
        multiclass_hinge_loss(scores, labels, kind="crammer_singer", reduction="none"),
        [0.5, 2.0, 1.0, 0.0],
    )
    assert multiclass_hinge_loss(scores, labels, reduction="sum") == 4.5
    np.testing.assert_array_equal(
        multiclass_hinge_loss_grad(scores, labels, reduction="sum"),
        [[-1, 0, 1], [0, 1, -1], [1, -2, 1], [0, 0, 0]],
    )
    # Crammer-Singer tie between classes 0 and 2 in row 2: the lowest index is used.
    np.testing.assert_array_equal(
        multiclass_hinge_loss_grad(scores, labels, kind="crammer_singer", reduction="sum"),
        [[-1, 0, 1], [0, 1, -1], [1, -1, 0], [0, 0, 0]],
    )


def test_separated_data_costs_nothing():
    # The "hinge counts the true class" mistake gives margin per sample here, not 0.
    scores = np.array([[5.0, 0.0, 0.0], [0.0, 0.0, 5.0]])
    for kind in KINDS:
        assert multiclass_hinge_loss(scores, [0, 2], kind=kind) == 0.0
        assert not multiclass_hinge_loss_grad(scores, [0, 2], kind=kind).any()


def test_two_classes_reduce_to_binary_hinge():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(20, 2))
    labels = rng.integers(0, 2, size=20)
    binary = hinge_loss(scores[:, 1] - scores[:, 0], 2.0 * labels - 1, reduction="none")
    for kind in KINDS:
        np.testing.assert_allclose(
            multiclass_hinge_loss(scores, labels, kind=kind, reduction="none"), binary
        )


def test_torch_multi_margin_loss_is_weston_watkins_over_c():
    # torch.nn.functional.multi_margin_loss(x, y) = sum_{j != y} max(0, 1 - x_y + x_j) / C,
    # written out here from torch's documentation for one sample.
    x, y, c = np.array([0.1, 0.2, 0.4, 0.8]), 3, 4
    torch_value = sum(max(0.0, 1 - x[y] + x[j]) for j in range(c) if j != y) / c
    assert torch_value == pytest.approx(0.325)
    assert multiclass_hinge_loss(x[None], [y]) == pytest.approx(c * torch_value)


# --- independent references ------------------------------------------------------------


@pytest.mark.parametrize(("loss", "grad"), BINARY)
@pytest.mark.parametrize("margin", [1.0, 0.5, 3.0])
def test_binary_matches_loop_reference(loss, grad, margin):
    rng = np.random.default_rng(1)
    scores, target = random_binary(rng, 50)
    kwargs = {} if loss in (zero_one_loss, perceptron_loss) else {"margin": margin}
    expected = naive_binary(loss.__name__, scores, target, **kwargs)
    np.testing.assert_allclose(loss(scores, target, reduction="none", **kwargs), expected)
    np.testing.assert_allclose(loss(scores, target, reduction="sum", **kwargs), expected.sum())
    np.testing.assert_allclose(loss(scores, target, **kwargs), expected.mean())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("margin", [1.0, 0.3])
def test_multiclass_matches_loop_reference(kind, margin):
    rng = np.random.default_rng(2)
    scores = rng.normal(size=(40, 5))
    # Integer scores create exact ties and exact kinks, where the documented choices apply.
    scores[:10] = rng.integers(-2, 3, size=(10, 5))
    labels = rng.integers(0, 5, size=40)
    kw = {"margin": margin, "kind": kind}
    np.testing.assert_allclose(
        multiclass_hinge_loss(scores, labels, reduction="none", **kw),
        naive_multiclass(scores, labels, **kw),
    )
    np.testing.assert_allclose(
        multiclass_hinge_loss_grad(scores, labels, reduction="sum", **kw),
        naive_multiclass_grad(scores, labels, **kw),
    )
    np.testing.assert_allclose(
        multiclass_hinge_loss_grad(scores, labels, **kw),
        naive_multiclass_grad(scores, labels, **kw) / 40,
    )


# --- gradients: finite differences away from kinks, subgradient inequality at them --------


@pytest.mark.parametrize(("loss", "grad"), CONVEX_BINARY)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_binary_grad_finite_differences(loss, grad, reduction):
    rng = np.random.default_rng(3)
    for _ in range(5):
        scores, target = random_binary(rng, 12, avoid=(0.0, 1.0))
        err = gradient_check(
            lambda s, t=target: loss(s, t, reduction=reduction),
            lambda s, t=target: grad(s, t, reduction=reduction),
            scores,
        )
        assert err <= 1e-7


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_multiclass_grad_finite_differences(kind, reduction):
    rng = np.random.default_rng(4)
    for margin in (1.0, 0.5):
        scores, labels = random_multiclass(rng, 6, 4, margin)
        kw = {"margin": margin, "kind": kind, "reduction": reduction}
        err = gradient_check(
            lambda s, y=labels, kw=kw: multiclass_hinge_loss(s, y, **kw),
            lambda s, y=labels, kw=kw: multiclass_hinge_loss_grad(s, y, **kw),
            scores,
        )
        assert err <= 1e-7


def assert_subgradient(f, x0, g, rng, trials=500):
    """f(x) >= f(x0) + g . (x - x0) at random x near and far from x0."""
    f0 = f(x0)
    for scale in (1e-3, 1e-1, 3.0):
        for _ in range(trials // 3):
            x = x0 + rng.normal(scale=scale, size=x0.shape)
            assert f(x) >= f0 + np.sum(g * (x - x0)) - 1e-12


@pytest.mark.parametrize(("loss", "grad"), CONVEX_BINARY)
def test_binary_kinks_return_a_subgradient(loss, grad):
    rng = np.random.default_rng(5)
    # Margins y*s exactly on the kinks (0 for the perceptron, 1 for the hinges) and around.
    target = np.array([1.0, -1.0, 1.0, -1.0, 1.0, -1.0])
    scores = np.array([1.0, -1.0, 0.0, 0.0, 2.0, 0.5])
    for reduction in ("mean", "sum"):
        g = grad(scores, target, reduction=reduction)
        assert_subgradient(
            lambda s, r=reduction: loss(s, target, reduction=r), scores, g, rng
        )


@pytest.mark.parametrize("kind", KINDS)
def test_multiclass_kinks_return_a_subgradient(kind):
    rng = np.random.default_rng(6)
    # Exact kinks: a wrong class exactly margin below the true class, ties among wrong
    # classes, all scores equal.
    scores = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 3.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.0]])
    labels = np.array([0, 0, 2, 1])
    for reduction in ("mean", "sum"):
        kw = {"kind": kind, "reduction": reduction}
        g = multiclass_hinge_loss_grad(scores, labels, **kw)
        assert_subgradient(lambda s, kw=kw: multiclass_hinge_loss(s, labels, **kw), scores, g, rng)


def test_zero_one_grad_is_zero_and_carries_no_information():
    rng = np.random.default_rng(7)
    scores, target = random_binary(rng, 30)
    assert zero_one_loss(scores, target) > 0
    g = zero_one_loss_grad(scores, target)
    assert g.shape == scores.shape
    assert not g.any()


# --- conventions: dtypes, lists, no mutation, shapes --------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binary_dtype_preserved(dtype):
    scores = np.array([0.3, -1.2, 2.0], dtype=dtype)
    target = [1, 1, -1]  # integer labels must not promote float32 scores
    for loss, grad in BINARY:
        for reduction in ("mean", "sum", "none"):
            assert loss(scores, target, reduction=reduction).dtype == dtype
            assert grad(scores, target, reduction=reduction).dtype == dtype
    for loss, grad in WITH_MARGIN:
        assert loss(scores, target, margin=np.float64(2.0)).dtype == dtype
        assert grad(scores, target, margin=np.float64(2.0)).dtype == dtype


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", KINDS)
def test_multiclass_dtype_preserved(dtype, kind):
    scores = np.array([[0.3, -1.2, 2.0], [1.0, 0.0, 0.5]], dtype=dtype)
    for reduction in ("mean", "sum", "none"):
        out = multiclass_hinge_loss(scores, [0, 1], kind=kind, reduction=reduction)
        assert out.dtype == dtype
        grad = multiclass_hinge_loss_grad(scores, [0, 1], kind=kind, reduction=reduction)
        assert grad.dtype == dtype
        assert grad.shape == (2, 3)
    assert multiclass_hinge_loss(scores, [0, 1], kind=kind, reduction="none").shape == (2,)


def test_float32_values_close_to_float64():
    rng = np.random.default_rng(8)
    scores, target = random_binary(rng, 100)
    for loss, _ in BINARY:
        np.testing.assert_allclose(
            loss(scores.astype(np.float32), target), loss(scores, target), rtol=1e-5
        )


def test_lists_and_integers_accepted():
    assert hinge_loss([2, 0, -1], [1, 1, 1]).dtype == np.float64
    assert hinge_loss([2, 0, -1], [1, 1, 1]) == 1.0  # (0 + 1 + 2) / 3
    np.testing.assert_array_equal(
        multiclass_hinge_loss_grad([[1, 2], [3, 0]], [0, 0], reduction="sum"),
        [[-1, 1], [0, 0]],
    )
    # Integer-valued float labels are accepted as class indices.
    assert multiclass_hinge_loss([[1.0, 2.0]], np.array([0.0])) == 2.0


def test_inputs_not_modified():
    rng = np.random.default_rng(9)
    scores, target = random_binary(rng, 10)
    s0, t0 = scores.copy(), target.copy()
    for f in [f for pair in BINARY for f in pair]:
        f(scores, target)
    mscores, labels = rng.normal(size=(5, 3)), rng.integers(0, 3, size=5)
    m0, l0 = mscores.copy(), labels.copy()
    for kind in KINDS:
        multiclass_hinge_loss(mscores, labels, kind=kind)
        multiclass_hinge_loss_grad(mscores, labels, kind=kind)
    np.testing.assert_array_equal(scores, s0)
    np.testing.assert_array_equal(target, t0)
    np.testing.assert_array_equal(mscores, m0)
    np.testing.assert_array_equal(labels, l0)


def test_any_shape_for_binary_losses():
    scores = np.array([[2.0, -1.0], [0.5, 0.0]])
    target = np.array([[1, 1], [-1, 1]])
    assert hinge_loss(scores, target, reduction="none").shape == (2, 2)
    assert hinge_loss(scores, target) == hinge_loss(scores.ravel(), target.ravel())
    assert hinge_loss_grad(scores, target).shape == (2, 2)


def test_empty_batch():
    assert hinge_loss([], [], reduction="sum") == 0.0
    assert hinge_loss_grad([], [], reduction="sum").shape == (0,)
    msg = "reduction='mean' of an empty batch is undefined; pass at least one sample."
    for loss, grad in BINARY:
        with pytest.raises(ValueError, match=re.escape(msg)):
            loss([], [])
        with pytest.raises(ValueError, match=re.escape(msg)):
            grad([], [])
    with pytest.raises(ValueError, match=re.escape(msg)):
        multiclass_hinge_loss_grad(np.zeros((0, 3)), np.zeros(0, dtype=int))


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("f", [f for pair in BINARY for f in pair])
def test_binary_errors(f):
    with pytest.raises(
        ValueError, match=re.escape("scores has shape (3,) but target has shape (2,);")
    ):
        f([1.0, 2.0, 3.0], [1, -1])
    with pytest.raises(
        ValueError,
        match=re.escape(
            "target must hold labels in {-1, +1}, found [0.0]; map 0/1 labels with 2 * y - 1."
        ),
    ):
        f([1.0, 2.0], [0, 1])
    with pytest.raises(
        ValueError,
        match=re.escape("reduction must be one of 'mean', 'sum', 'none', got 'avg'."),
    ):
        f([1.0, 2.0], [1, -1], reduction="avg")


@pytest.mark.parametrize("f", [hinge_loss, hinge_loss_grad, squared_hinge_loss,
                               squared_hinge_loss_grad, multiclass_hinge_loss,
                               multiclass_hinge_loss_grad])
@pytest.mark.parametrize("margin", [0.0, -1.0, np.inf, np.nan, True, "1", [1.0]])
def test_bad_margin(f, margin):
    scores, target = ([[1.0, 2.0]], [0]) if f.__name__.startswith("multi") else ([1.0], [1])
    with pytest.raises(
        ValueError, match=re.escape(f"margin must be a positive finite number, got {margin!r}.")
    ):
        f(scores, target, margin=margin)


@pytest.mark.parametrize("f", [multiclass_hinge_loss, multiclass_hinge_loss_grad])
def test_multiclass_errors(f):
    with pytest.raises(
        ValueError,
        match=re.escape(
            "scores must have shape (N, C) (one row of class scores per sample), got shape "
            "(3,); for a single sample use scores[None, :]."
        ),
    ):
        f([1.0, 2.0, 3.0], [0])
    with pytest.raises(
        ValueError,
        match=re.escape("scores must have at least 2 classes on the last axis, got shape (2, 1)"),
    ):
        f([[1.0], [2.0]], [0, 0])
    with pytest.raises(
        ValueError,
        match=re.escape("kind must be 'weston_watkins' or 'crammer_singer', got 'ovr'."),
    ):
        f([[1.0, 2.0]], [0], kind="ovr")
    with pytest.raises(
        ValueError,
        match=re.escape("target has labels outside [0, 2): [2]; class labels must index"),
    ):
        f([[1.0, 2.0]], [2])
    # One-hot targets are refused with a hint, never broadcast.
    with pytest.raises(ValueError, match=re.escape("It looks like one-hot or probability")):
        f([[1.0, 2.0], [0.0, 1.0]], [[1, 0], [0, 1]])
    with pytest.raises(
        ValueError,
        match=re.escape("reduction must be one of 'mean', 'sum', 'none', got 'total'."),
    ):
        f([[1.0, 2.0]], [0], reduction="total")


# --- properties -------------------------------------------------------------------------

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_subnormal=False)


@st.composite
def binary_batches(draw, min_size=1):
    n = draw(st.integers(min_size, 20))
    scores = draw(hnp.arrays(np.float64, n, elements=finite))
    target = draw(hnp.arrays(np.float64, n, elements=st.sampled_from([-1.0, 1.0])))
    return scores, target


@st.composite
def multiclass_batches(draw):
    n, c = draw(st.integers(1, 8)), draw(st.integers(2, 6))
    scores = draw(hnp.arrays(np.float64, (n, c), elements=finite))
    labels = draw(hnp.arrays(np.int64, n, elements=st.integers(0, c - 1)))
    return scores, labels


@settings(max_examples=40, deadline=None)
@given(binary_batches(), st.floats(1.0, 10.0))
def test_hinge_bounds_zero_one(batch, margin):
    scores, target = batch
    zero_one = zero_one_loss(scores, target, reduction="none")
    assert np.all(hinge_loss(scores, target, margin=margin, reduction="none") >= zero_one)
    assert np.all(hinge_loss(scores, target, reduction="none") >= perceptron_loss(
        scores, target, reduction="none"))


@settings(max_examples=40, deadline=None)
@given(binary_batches(), hnp.arrays(np.float64, 20, elements=finite), st.floats(0.0, 1.0))
def test_binary_convex_along_lines(batch, other, lam):
    scores, target = batch
    other = other[: scores.size]
    for loss in (perceptron_loss, hinge_loss, squared_hinge_loss):
        mix = loss(lam * scores + (1 - lam) * other, target)
        bound = lam * loss(scores, target) + (1 - lam) * loss(other, target)
        assert mix <= bound + 1e-9 * (1 + abs(bound))


@settings(max_examples=40, deadline=None)
@given(multiclass_batches(), st.data(), st.floats(0.0, 1.0))
def test_multiclass_convex_along_lines(batch, data, lam):
    scores, labels = batch
    other = data.draw(hnp.arrays(np.float64, scores.shape, elements=finite))
    for kind in KINDS:
        mix = multiclass_hinge_loss(lam * scores + (1 - lam) * other, labels, kind=kind)
        bound = lam * multiclass_hinge_loss(scores, labels, kind=kind) + (
            1 - lam
        ) * multiclass_hinge_loss(other, labels, kind=kind)
        assert mix <= bound + 1e-9 * (1 + abs(bound))


@settings(max_examples=40, deadline=None)
@given(binary_batches(), multiclass_batches())
def test_sum_is_n_times_mean(batch, mbatch):
    scores, target = batch
    for loss, grad in BINARY:
        np.testing.assert_allclose(
            loss(scores, target, reduction="sum"),
            scores.size * loss(scores, target),
            rtol=1e-12,
            atol=1e-9,
        )
        np.testing.assert_allclose(
            grad(scores, target, reduction="sum"), scores.size * grad(scores, target),
            rtol=1e-12,
        )
    mscores, labels = mbatch
    for kind in KINDS:
        np.testing.assert_allclose(
            multiclass_hinge_loss(mscores, labels, kind=kind, reduction="sum"),
            len(labels) * multiclass_hinge_loss(mscores, labels, kind=kind),
            rtol=1e-12,
            atol=1e-9,
        )


@settings(max_examples=40, deadline=None)
@given(multiclass_batches(), st.floats(0.1, 5.0))
def test_crammer_singer_between_ww_bounds(batch, margin):
    scores, labels = batch
    ww = multiclass_hinge_loss(scores, labels, margin=margin, reduction="none")
    cs = multiclass_hinge_loss(
        scores, labels, margin=margin, kind="crammer_singer", reduction="none"
    )
    c = scores.shape[1]
    assert np.all(cs <= ww)
    assert np.all(ww <= (c - 1) * cs * (1 + 1e-12))
