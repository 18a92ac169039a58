"""Tests for the block-by-block evaluation of the row-wise losses (lossutils._blocks).

Large inputs are processed a cache-sized block of rows at a time, and blocks of few classes
are copied class-major. Neither may change a value or let bad input through: each function is
run with blocks of a few rows (many blocks, the last one short) and with one block holding
everything, and the results must be identical bit for bit; class-major and row-major blocks
must agree to rounding; a bad value in a late block must still raise the usual error.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy import special

import lossutils as lu
from lossutils import _blocks

ROW_WISE = [
    pytest.param(lambda x, y, p, q: lu.logsumexp(x), id="logsumexp"),
    pytest.param(lambda x, y, p, q: lu.logsumexp(x.T, axis=0), id="logsumexp-axis0"),
    pytest.param(lambda x, y, p, q: lu.softmax(x), id="softmax"),
    pytest.param(lambda x, y, p, q: lu.log_softmax(x), id="log_softmax"),
    pytest.param(lambda x, y, p, q: lu.cross_entropy(x, y, reduction="none"), id="ce"),
    pytest.param(
        lambda x, y, p, q: lu.cross_entropy(x, y, reduction="none", label_smoothing=0.1),
        id="ce-smoothed",
    ),
    pytest.param(lambda x, y, p, q: lu.cross_entropy(x, p, reduction="none"), id="ce-probs"),
    pytest.param(lambda x, y, p, q: lu.cross_entropy_grad(x, y), id="ce_grad"),
    pytest.param(lambda x, y, p, q: lu.cross_entropy_grad(x, p), id="ce_grad-probs"),
    pytest.param(lambda x, y, p, q: lu.entropy(p), id="entropy"),
    pytest.param(lambda x, y, p, q: lu.distribution_cross_entropy(p, q), id="dist_ce"),
    pytest.param(lambda x, y, p, q: lu.kl_divergence(p, q), id="kl"),
    # The hinge documents nothing for infinite scores (inf - inf warns): finite scores only.
    pytest.param(
        lambda x, y, p, q: lu.multiclass_hinge_loss(finite(x), y, reduction="none"),
        id="ww_hinge",
    ),
    pytest.param(
        lambda x, y, p, q: lu.multiclass_hinge_loss(
            finite(x), y, kind="crammer_singer", reduction="none"
        ),
        id="cs_hinge",
    ),
    pytest.param(
        lambda x, y, p, q: lu.multiclass_hinge_loss_grad(finite(x), y), id="ww_hinge_grad"
    ),
    pytest.param(
        lambda x, y, p, q: lu.multiclass_hinge_loss_grad(finite(x), y, kind="crammer_singer"),
        id="cs_hinge_grad",
    ),
]


def finite(x):
    return np.where(np.isfinite(x), x, x.dtype.type(7))


def inputs(n, c, dtype, seed=3):
    """Logits with ties, extremes and non-finite rows; labels; distributions with zeros."""
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(n, c)) * 20).astype(dtype)
    x[1] = 3.0  # ties everywhere
    x[2, 0], x[3] = 1e4, -1e4
    x[-2, 1] = np.inf  # non-finite rows in the last blocks
    x[-1, :] = -np.inf
    y = rng.integers(0, c, n)
    p = rng.random((n, c)).astype(dtype)
    p[p < 0.2] = 0  # 0 log 0 = 0 terms
    p[:, -1] += dtype(0.1)
    p[0] = 0
    p[0, 0] = 1
    p /= p.sum(axis=1, keepdims=True)
    q = rng.random((n, c)).astype(dtype) + dtype(0.01)
    q /= q.sum(axis=1, keepdims=True)
    return x, y, p, q


def run(f, args, monkeypatch, *, block_bytes, few_classes=_blocks.FEW_CLASSES):
    monkeypatch.setattr(_blocks, "BLOCK_BYTES", block_bytes)
    monkeypatch.setattr(_blocks, "FEW_CLASSES", few_classes)
    return f(*args)


@pytest.mark.parametrize("f", ROW_WISE)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("c", [3, 10, 40])  # class-major (<= FEW_CLASSES) and row-major
def test_block_size_changes_no_value(f, dtype, c, monkeypatch):
    x, y, p, q = inputs(101, c, dtype)
    args = (x, y, p, q)
    # 3 rows per block (the last block short) against a single block of all rows.
    small = run(f, args, monkeypatch, block_bytes=3 * c * np.dtype(dtype).itemsize)
    whole = run(f, args, monkeypatch, block_bytes=1 << 40)
    assert np.asarray(small).dtype == dtype
    np.testing.assert_array_equal(small, whole)


@pytest.mark.parametrize("f", ROW_WISE)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_class_major_and_row_major_blocks_agree(f, dtype, monkeypatch):
    x, y, p, q = inputs(101, 10, dtype)
    args = (x, y, p, q)
    class_major = run(f, args, monkeypatch, block_bytes=400, few_classes=1000)
    row_major = run(f, args, monkeypatch, block_bytes=400, few_classes=0)
    eps = np.finfo(dtype).eps
    # Only the order of a row's additions differs: a few roundings of the largest term.
    np.testing.assert_allclose(class_major, row_major, rtol=8 * eps, atol=8 * eps)


def test_non_contiguous_inputs_match_contiguous_ones(monkeypatch):
    monkeypatch.setattr(_blocks, "BLOCK_BYTES", 256)
    x, y, p, q = inputs(60, 10, np.float64)
    wide = np.zeros((x.shape[0], 2 * x.shape[1]))
    wide[:, ::2] = x
    for f in ROW_WISE:
        f = f.values[0]
        expected = f(x, y, p, q)
        fortran = f(np.asfortranarray(x), y, np.asfortranarray(p), np.asfortranarray(q))
        # numpy's own mean (label smoothing) may add a Fortran-ordered row in another order.
        np.testing.assert_allclose(fortran, expected, rtol=2 * np.finfo(float).eps, atol=0)
        np.testing.assert_array_equal(f(wide[:, ::2], y, p, q), expected)


@pytest.mark.parametrize("c", [10, 40])
def test_many_blocks_agree_with_scipy_and_gather_the_right_rows(c, monkeypatch):
    monkeypatch.setattr(_blocks, "BLOCK_BYTES", 5 * c * 8)  # 5 rows per block
    rng = np.random.default_rng(11)
    x = rng.normal(scale=5.0, size=(203, c))
    y = rng.integers(0, c, 203)
    log_p = special.log_softmax(x, axis=-1)
    np.testing.assert_allclose(lu.log_softmax(x), log_p, rtol=1e-12, atol=4e-16)
    # A loss near 0 is log(1 + small terms): an absolute error of one ulp of 1 (in scipy too).
    np.testing.assert_allclose(
        lu.cross_entropy(x, y, reduction="none"), -log_p[np.arange(203), y], rtol=1e-12,
        atol=4e-16,
    )
    onehot = np.eye(c)[y]
    np.testing.assert_allclose(
        lu.cross_entropy_grad(x, y, reduction="sum"), np.exp(log_p) - onehot, atol=1e-15
    )
    margins = np.maximum(x - x[np.arange(203), y][:, None] + 1.0, 0) * (1 - onehot)
    np.testing.assert_allclose(
        lu.multiclass_hinge_loss(x, y, reduction="none"), margins.sum(axis=1), rtol=1e-13
    )


@pytest.mark.parametrize("few_classes", [0, 3])
def test_blocks_cover_every_row_once_and_write_results_back(few_classes, monkeypatch):
    monkeypatch.setattr(_blocks, "BLOCK_BYTES", 2 * 3 * 8)  # 2 rows per block, 4 blocks
    monkeypatch.setattr(_blocks, "FEW_CLASSES", few_classes)
    x = np.arange(7 * 3, dtype=np.float64).reshape(7, 3)
    out = np.full_like(x, np.nan)
    seen = []
    for block in _blocks.blocks(x, out):
        seen.extend(range(block.rows.start, block.rows.stop))
        rows = x[block.rows]
        np.testing.assert_array_equal(block.scores, rows.T if block.axis == 0 else rows)
        assert block.axis == (0 if few_classes else 1)
        np.negative(block.scores, out=block.result)
    assert seen == list(range(7))
    np.testing.assert_array_equal(out, -x)


@pytest.mark.parametrize("c", [10, 40])
@pytest.mark.parametrize("bad", ["nan", "negative", "unnormalised"])
@pytest.mark.parametrize("which", ["p", "q"])
def test_a_bad_value_in_the_last_block_is_still_rejected(c, bad, which, monkeypatch):
    monkeypatch.setattr(_blocks, "BLOCK_BYTES", 4 * c * 8)
    _, _, p, q = inputs(50, c, np.float64)
    p[-1], q[-1] = 1.0 / c, 1.0 / c  # the last row is the only one made bad
    arrays = {"p": p, "q": q}
    row = arrays[which][-1]
    if bad == "nan":
        row[3] = np.nan
        message = rf"{which} must hold probabilities in \[0, 1\], found \[nan\]"
    elif bad == "negative":
        row[3] = -0.25
        row[4] += 0.25
        message = rf"{which} must hold probabilities in \[0, 1\], found \[-0.25\]"
    else:
        row *= 1.01
        message = re.escape(f"{which} must sum to 1 along the last (class) axis")
    calls = [lambda: lu.kl_divergence(p, q), lambda: lu.distribution_cross_entropy(p, q)]
    if which == "p":
        calls.append(lambda: lu.entropy(p))
    for call in calls:
        with pytest.raises(ValueError, match=message):
            call()


def test_kl_with_a_subnormal_q_is_finite():
    for dtype in (np.float32, np.float64):
        tiny = np.finfo(dtype).smallest_subnormal
        p = np.array([1.0, 0.0], dtype)
        q = np.array([tiny, 1.0], dtype)  # p / q overflows; log p - log q does not
        kl = lu.kl_divergence(p, q)
        assert kl.dtype == dtype
        np.testing.assert_allclose(kl, -np.log(tiny.astype(np.float64)), rtol=1e-6)


def test_non_finite_rows_in_late_blocks_stay_in_their_rows(monkeypatch):
    monkeypatch.setattr(_blocks, "BLOCK_BYTES", 2 * 10 * 8)
    x, y, _, _ = inputs(31, 10, np.float64)  # rows 29 (+inf) and 30 (only -inf)
    y[29], y[30] = 0, 0
    loss = lu.cross_entropy(x, y, reduction="none")
    assert np.isfinite(loss[:29]).all()
    assert loss[29] == np.inf  # finite target logit, +inf elsewhere in the row
    assert np.isnan(loss[30])
    lse = lu.logsumexp(x)
    np.testing.assert_array_equal(lse[29:], [np.inf, -np.inf])
    assert np.isfinite(lse[:29]).all()
    probs = lu.softmax(x)
    assert np.isnan(probs[29:]).all()
    assert np.isfinite(probs[:29]).all()
