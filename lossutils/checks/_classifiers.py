"""Exercises of notebook 07-linear-classifiers: losses with their weight gradients, a gradient
check, and a training loop graded by the accuracy it reaches on held-out digits.

``softmax_loss_*`` and ``svm_loss_*`` return ``(loss, dW)``; the judge checks both parts and
accepts any valid subgradient of the hinge at exact kinks. ``numerical_gradient`` and ``train``
take functions as arguments: the checker gives them functions that travel as plain data
(:mod:`._given`), so the grader can run the student's code in its sandbox.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import numpy as np

from ._calling import Outcome
from ._common import DTYPES, n_random
from ._core import (
    Case,
    Exercise,
    FunctionExercise,
    Mistake,
    Uses,
    Verdict,
    close,
    compare,
    dtype_advice,
    float_value,
    quiet,
    register,
)
from ._given import GivenFunction
from ._plain import describe_returned, expected_got, fmt

NOTEBOOK = "07-linear-classifiers"

__all__ = ["LossGradExercise", "TrainExercise", "digits", "held_out_accuracy"]


# --------------------------------------------------------------------------- loss and gradient


def _data_part(kind, s, y):
    """(per-sample losses, dL/ds) of the data term for scores s (N, C), in float64."""
    n = len(y)
    rows = np.arange(n)
    if kind == "softmax":
        shifted = s - s.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        ds = np.exp(log_p)
        ds[rows, y] -= 1
        return -log_p[rows, y], ds
    margins = s - s[rows, y][:, None] + 1
    margins[rows, y] = 0
    active = (margins > 0).astype(np.float64)
    active[rows, y] = -active.sum(axis=1)
    return np.maximum(margins, 0).sum(axis=1), active


def _loss_grad(kind, W, X, y, reg):
    """The reference: (mean data loss + reg sum W^2, its gradient), in the dtype of W."""
    W64, X64 = np.asarray(W, np.float64), np.asarray(X, np.float64)
    losses, ds = _data_part(kind, X64 @ W64, np.asarray(y))
    n = len(y)
    loss = losses.mean() + reg * np.sum(W64 * W64)
    grad = X64.T @ ds / n + 2 * reg * W64
    dtype = np.asarray(W).dtype
    return dtype.type(loss), grad.astype(dtype)


def _softmax_reference(W, X, y, reg):
    return _loss_grad("softmax", W, X, y, reg)


def _svm_reference(W, X, y, reg):
    return _loss_grad("svm", W, X, y, reg)


def _model(kind, *, data=None, loss_reg=1.0, grad_reg=2.0, loss_scale="mean",
           grad_scale="mean", grad_sign=1.0, reg_rows="all"):
    """A loss-and-gradient with one mistake switched on (models of the catalogue).

    ``data(s, y) -> (losses, ds)`` replaces the data term; the regularisation is
    ``loss_reg * reg * sum W^2`` in the loss and ``grad_reg * reg * W`` in the gradient
    (over every row of W, or with ``reg_rows="no-last"`` without its last row, the bias's
    in the notebook); ``*_scale`` is "mean" or "sum" over the batch, or "classes" (the loss
    divided by N (C - 1)).
    """

    def model(W, X, y, reg):
        W64, X64 = np.asarray(W, np.float64), np.asarray(X, np.float64)
        s = X64 @ W64
        losses, ds = (data or functools.partial(_data_part, kind))(s, np.asarray(y))
        n, c = len(y), W64.shape[1]
        scale = {"mean": n, "sum": 1, "classes": n * (c - 1)}
        loss = losses.sum() / scale[loss_scale]
        grad = grad_sign * (X64.T @ ds) / scale[grad_scale]
        penalised = W64.copy()
        if reg_rows == "no-last":
            penalised[-1] = 0
        return (loss + loss_reg * reg * np.sum(penalised * penalised),
                grad + grad_reg * reg * penalised)

    return model


def _softmax_naive_overflow(s, y):
    e = np.exp(s)
    p = e / e.sum(axis=1, keepdims=True)
    rows = np.arange(len(y))
    ds = p.copy()
    ds[rows, y] -= 1
    return -np.log(p[rows, y]), ds


def _softmax_log_of_p(s, y):
    _, ds = _data_part("softmax", s, y)
    shifted = s - s.max(axis=1, keepdims=True)
    p = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    return -np.log(p[np.arange(len(y)), y]), ds


def _softmax_over_samples(s, y):
    shifted = s - s.max(axis=0, keepdims=True)
    p = np.exp(shifted) / np.exp(shifted).sum(axis=0, keepdims=True)
    rows = np.arange(len(y))
    ds = p.copy()
    ds[rows, y] -= 1
    return -np.log(p[rows, y]), ds


def _softmax_no_one_hot(s, y):
    losses, ds = _data_part("softmax", s, y)
    ds[np.arange(len(y)), y] += 1
    return losses, ds


def _svm_variant(*, margin=1.0, sign=1.0, true_class=False, true_grad=True,
                 self_counted=False):
    """The hinge's data term with one mistake; ``self_counted``: with ``true_class``, the
    true class's own (always active) term also counts in its column of the gradient."""

    def data(s, y):
        rows = np.arange(len(y))
        margins = sign * (s - s[rows, y][:, None]) + margin
        if not true_class:
            margins[rows, y] = 0
        active = (margins > 0).astype(np.float64) * sign
        if true_class and not self_counted:
            active[rows, y] = 0  # d/ds_y of (s_y - s_y + 1) is 0
        if true_grad:
            active[rows, y] = -active.sum(axis=1)
        return np.maximum(margins, 0).sum(axis=1), active

    return data


def _svm_true_class_once(s, y):
    """The true class's column gets -1 per sample with any active margin, not minus their
    number."""
    losses, active = _data_part("svm", s, y)
    rows = np.arange(len(y))
    active[rows, y] = -(active[rows, y] < 0).astype(np.float64)
    return losses, active


def _svm_true_class_sign(s, y):
    """The true class's column gets plus the number of active margins."""
    losses, active = _data_part("svm", s, y)
    rows = np.arange(len(y))
    active[rows, y] = -active[rows, y]
    return losses, active


def _svm_counts_itself(s, y):
    """The true class's column counts its own always-active term (margin 1) too."""
    losses, active = _data_part("svm", s, y)
    active[np.arange(len(y)), y] -= 1
    return losses, active


def _overflow_detect(case, got, expected, warnings):
    return (not np.all(np.isfinite(got))) and any("overflow" in w for w in warnings)


def _reg_mistakes(kind):
    return (
        Mistake(
            "reg_grad_missing",
            "the regularisation is missing from dW: the penalty depends on W, so its "
            "derivative is part of the gradient too.",
            models=(_model(kind, grad_reg=0.0),),
        ),
        Mistake(
            "reg_grad_not_doubled",
            "the penalty's part of dW is half of its derivative: the penalty here is "
            "reg * sum(W**2), with no 1/2 in front to cancel anything.",
            models=(_model(kind, grad_reg=1.0), _model(kind, grad_reg=1.0, loss_reg=0.5)),
        ),
        Mistake(
            "reg_loss_missing",
            "the loss is missing its penalty term, reg * sum(W**2).",
            models=(_model(kind, loss_reg=0.0), _model(kind, loss_reg=0.0, grad_reg=0.0)),
        ),
        Mistake(
            "reg_counted_twice",
            "the regularisation is counted twice: the penalty enters the loss once, and its "
            "derivative enters dW once, after the loop over the samples, not in it.",
            models=(_model(kind, loss_reg=2.0, grad_reg=4.0), _model(kind, grad_reg=4.0),
                    _model(kind, loss_reg=2.0)),
        ),
        Mistake(
            "reg_loss_halved",
            "the penalty in the loss is reg * sum(W**2), with no 1/2 in front.",
            models=(_model(kind, loss_reg=0.5),),
        ),
        Mistake(
            "reg_skips_a_row",
            "the penalty leaves out the last row of W (the bias's): reg * sum(W**2) sums "
            "over every entry of W, and so does its derivative.",
            models=(_model(kind, reg_rows="no-last"),),
        ),
    )


def _mean_mistakes(kind):
    return (
        Mistake(
            "sum_instead_of_mean",
            "the data loss and its gradient are means over the batch: divide both by the "
            "number of samples N (the regularisation term is not divided).",
            models=(_model(kind, loss_scale="sum", grad_scale="sum"),),
        ),
        Mistake(
            "grad_not_averaged",
            "the loss is averaged over the batch but dW is not: divide the data part of dW "
            "by N too.",
            models=(_model(kind, grad_scale="sum"),),
        ),
        Mistake(
            "loss_not_averaged",
            "dW is averaged over the batch but the loss is not: divide the data loss by N "
            "too.",
            models=(_model(kind, loss_scale="sum"),),
        ),
        Mistake(
            "grad_sign",
            "the data part of dW has the wrong sign: dW points uphill, the direction in "
            "which the loss grows.",
            models=(_model(kind, grad_sign=-1.0),),
        ),
    )


_SOFTMAX_MISTAKES = (
    Mistake(
        "not_stabilised",
        "exp overflowed for large scores (inf / inf = nan): subtract each row's maximum "
        "score before exp; it does not change the probabilities.",
        models=(_model("softmax", data=_softmax_naive_overflow),),
        detect=_overflow_detect,
    ),
    Mistake(
        "log_of_underflowed_p",
        "p_y underflowed to 0 for a very wrong class, and log(0) = -inf: compute log p_y "
        "from the shifted scores with the log-sum-exp (notebook 03), not as the log of p.",
        models=(_model("softmax", data=_softmax_log_of_p),),
    ),
    Mistake(
        "wrong_axis",
        "you normalised over the samples: the probabilities of one sample sum to 1 over its "
        "classes (the row of scores, axis=1).",
        models=(_model("softmax", data=_softmax_over_samples),),
    ),
    Mistake(
        "one_hot_not_subtracted",
        "dW lacks the label's part: the true class's score enters -log p_y twice, through "
        "the normaliser like every score and once on its own, and your gradient has only "
        "the normaliser's share.",
        models=(_model("softmax", data=_softmax_no_one_hot),),
    ),
    *_reg_mistakes("softmax"),
    *_mean_mistakes("softmax"),
)

_SVM_MISTAKES = (
    Mistake(
        "counts_true_class",
        "you included j = y in the sum, which adds max(0, 1) = 1 per sample: skip the true "
        "class.",
        models=(_model("svm", data=_svm_variant(true_class=True)),
                _model("svm", data=_svm_variant(true_class=True, self_counted=True))),
    ),
    Mistake(
        "margin_sign",
        "the margin has the wrong sign: a wrong class j costs max(0, s_j - s_y + 1), which "
        "is positive when s_j comes within 1 of the true score.",
        models=(_model("svm", data=_svm_variant(sign=-1.0)),),
    ),
    Mistake(
        "margin_missing",
        "the margin of 1 is missing: max(0, s_j - s_y + 1), so that the true class must win "
        "by at least 1.",
        models=(_model("svm", data=_svm_variant(margin=0.0)),),
    ),
    Mistake(
        "true_class_gradient_missing",
        "the true class's column of dW gets nothing from the hinge terms, yet the true "
        "score s_y is in every one of them (with a minus sign).",
        models=(_model("svm", data=_svm_variant(true_grad=False)),),
    ),
    Mistake(
        "true_class_gradient_sign",
        "the true class's column of dW has the wrong sign: s_y enters each active hinge "
        "term with a minus sign.",
        models=(_model("svm", data=_svm_true_class_sign),),
    ),
    Mistake(
        "true_class_once_per_sample",
        "the true class's column of dW gets one term per sample, however many wrong classes "
        "are within the margin: s_y is in every active hinge term, so count each of them.",
        models=(_model("svm", data=_svm_true_class_once),),
    ),
    Mistake(
        "averaged_over_classes",
        "the loss is divided by the number of wrong classes too: the hinge terms of a sample "
        "are summed over j, and only the batch is averaged.",
        models=(_model("svm", loss_scale="classes", grad_scale="classes"),
                _model("svm", loss_scale="classes")),
    ),
    Mistake(
        "true_class_counts_itself",
        "the true class's column counts one term too many per sample: the sum skips j = y_i, "
        "so that term (whose margin would always be 1) contributes nothing to dW either.",
        models=(_model("svm", data=_svm_counts_itself),),
    ),
    *_reg_mistakes("svm"),
    *_mean_mistakes("svm"),
)


def _svm_kinks(case) -> list[np.ndarray]:
    """The directions dW may move in at exact kinks: one (D, C) array per (i, j) on the margin.

    Where s_j - s_y + 1 == 0 (to the input's precision) the hinge's subgradient is any
    a in [0, 1] times (x_i e_j - x_i e_y) / N; the reference takes a = 0.
    """
    W, X, y, _ = case.args
    X64, W64 = np.asarray(X, np.float64), np.asarray(W, np.float64)
    s = X64 @ W64
    n = len(y)
    rows = np.arange(n)
    margins = s - s[rows, y][:, None] + 1
    tol = 1e-9 if np.asarray(W).dtype == np.float64 else 1e-4
    scale = np.maximum(1.0, np.abs(s).max(axis=1, keepdims=True))
    at_kink = np.abs(margins) <= tol * scale
    at_kink[rows, y] = False
    out = []
    for i, j in zip(*np.nonzero(at_kink), strict=True):
        direction = np.zeros_like(W64)
        direction[:, j] += X64[i] / n
        direction[:, y[i]] -= X64[i] / n
        out.append(direction)
    return out


@dataclass(frozen=True)
class _Parts:
    """The validated parts of a (loss, dW) answer, as float64 (None where invalid)."""

    loss: np.ndarray | None
    grad: np.ndarray | None


class LossGradExercise(Exercise):
    """An exercise whose answer is ``(loss, dW)``: a scalar and an array shaped like ``W``.

    Parameters
    ----------
    reference : callable
        ``reference(W, X, y, reg) -> (loss, dW)``.
    cases : callable
        ``cases(rng, hidden) -> list[Case]``.
    kinks : callable, optional
        ``kinks(case) -> list of arrays``: directions in which dW may differ from the
        reference's at kinks of the loss (any valid subgradient is accepted).
    """

    def __init__(self, id, *, reference, cases, kinks=None, **kw):
        super().__init__(id, **kw)
        self.reference = reference
        self._cases = cases
        self.kinks = kinks

    def make_cases(self, rng, hidden):
        return self._cases(rng, hidden)

    def describe_input(self, case):
        W, X, y, reg = case.args
        return "\n".join(f"{k} = {fmt(v, prefix=f'{k} = ')}"
                         for k, v in (("W", W), ("X", X), ("y", y), ("reg", reg)))

    def _subgradient(self, case, got, expected):
        """The reference dW moved along the kinks as far as the student's dW is."""
        if self.kinks is None or got.shape != expected.shape:
            return expected
        directions = self.kinks(case)
        if not directions:
            return expected
        basis = np.stack([d.ravel() for d in directions], axis=1)
        residual = (got - np.asarray(expected, np.float64)).ravel()
        alpha = np.clip(np.linalg.lstsq(basis, residual, rcond=None)[0], 0.0, 1.0)
        moved = np.asarray(expected, np.float64) + (basis @ alpha).reshape(expected.shape)
        return moved.astype(expected.dtype)

    def judge(self, case, output, warnings=()):
        ref_loss, ref_grad = self.reference(*case.args)
        if type(output) is not tuple or len(output) != 2:
            message = f"returned {describe_returned(output)}; expected a tuple (loss, dW)."
            return self.verdict(message, "type", (),
                                "return both results as one tuple: return loss, dW.")
        loss, grad = output
        got_loss, loss_failure = float_value(loss, ref_loss)
        got_grad, grad_failure = float_value(grad, ref_grad)
        if got_grad is not None and grad_failure is None:
            ref_grad = self._subgradient(case, got_grad, ref_grad)
        dtype = np.asarray(ref_grad).dtype
        for what, got, failure, ref, shown in (("loss", got_loss, loss_failure, ref_loss, loss),
                                               ("dW", got_grad, grad_failure, ref_grad, grad)):
            if failure is None:
                failure = compare(got, ref, dtype)
            if failure is None:
                continue
            stage, message = failure
            message = f"{what} {message}\n{expected_got(ref, shown)}"
            explained = ()
            if stage != "dtype":
                parts = _Parts(got_loss if loss_failure is None else None,
                               got_grad if grad_failure is None else None)
                explained = self.explain(case, parts, (ref_loss, ref_grad), warnings)
            advice = dtype_advice(shown, dtype) if stage == "dtype" else None
            return self.verdict(message, stage, explained, advice)
        return Verdict(True)

    def explain(self, case, parts, expected, warn):
        dtype = np.asarray(expected[1]).dtype
        found = []
        for mistake in self.mistakes:
            if mistake.detect is not None:
                got = [p for p in (parts.loss, parts.grad) if p is not None]
                try:
                    hit = any(quiet(mistake.detect, case, np.asarray(g), expected, tuple(warn))
                              for g in got)
                except Exception:  # a probe that does not apply to this case
                    hit = False
                if hit:
                    found.append(mistake)
                    continue
            for model in mistake.models:
                try:
                    m_loss, m_grad = quiet(model, *case.args)
                except Exception:  # the buggy model raises here: it cannot explain the output
                    continue
                pairs = [(parts.loss, m_loss, expected[0]), (parts.grad, m_grad, expected[1])]
                pairs = [(g, m, e) for g, m, e in pairs if g is not None]
                if pairs and all(close(g, m, dtype) for g, m, _ in pairs) \
                        and not all(close(m, e, dtype) for _, m, e in pairs):
                    found.append(mistake)
                    break
        return tuple(found)


def _labels(rng, n, c):
    """n labels in [0, c) that use every class when n >= c (each class then matters)."""
    y = rng.integers(0, c, size=n)
    if n >= c:
        y[rng.permutation(n)[:c]] = np.arange(c)
    return y


def _loss_cases(rng, hidden, *, kind):
    cases = [
        Case("hand-made: N = 2, D = 3, C = 3, reg = 0",
             (np.array([[0.2, -0.5, 0.1], [1.5, 1.3, 2.1], [0.0, 0.25, 0.2]]),
              np.array([[1.0, 0.5, -1.0], [0.5, 2.0, 1.0]]), np.array([0, 2]), 0.0)),
        Case("N = 4 samples, D = 3, C = 5 (all different), reg = 0.1",
             (np.linspace(-1, 1, 15).reshape(3, 5), np.array(
                 [[1.0, 0.0, 2.0], [-1.0, 1.0, 0.5], [0.5, -2.0, 1.0], [0.0, 1.0, -1.0]]),
              np.array([4, 0, 2, 2]), 0.1)),
        Case("batch of one, reg = 0.5", (np.array([[0.3, -0.2], [0.1, 0.4]]),
                                          np.array([[2.0, -1.0]]), np.array([1]), 0.5)),
        Case("float32, reg = 0.01",
             (np.array([[0.5, -0.5, 0.2], [0.1, 0.3, -0.4]], np.float32),
              np.array([[1.0, 2.0], [-1.0, 0.5], [0.0, -1.5]], np.float32),
              np.array([2, 0, 1]), 0.01)),
        Case("large scores (up to about 3000)",
             (np.array([[300.0, -200.0, 50.0], [-100.0, 250.0, 10.0]]),
              np.array([[10.0, 2.0], [-5.0, 8.0], [3.0, -7.0]]), np.array([1, 0, 2]), 0.0)),
    ]
    if kind == "svm":
        # Integer scores: sample 0 has class 2 exactly on the margin (s_2 - s_0 + 1 = 0).
        cases.append(Case("a wrong class exactly on the margin (a kink), reg = 0.05",
                          (np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]),
                           np.array([[2.0, 1.0], [0.0, 3.0], [1.0, -1.0]]),
                           np.array([0, 1, 2]), 0.05)))
    for dtype in DTYPES:
        for _ in range(n_random(hidden)):
            n, d, c = (int(rng.integers(2, 9)), int(rng.integers(2, 7)), int(rng.integers(2, 6)))
            reg = float(rng.choice([0.0, 0.01, 0.5]))
            cases.append(Case(f"random {np.dtype(dtype).name}, N = {n}, D = {d}, C = {c}, "
                              f"reg = {reg}",
                              (rng.normal(size=(d, c)).astype(dtype),
                               (rng.normal(size=(n, d)) * 1.5).astype(dtype),
                               _labels(rng, n, c), reg)))
    return cases


def _register_losses():
    """The naive and the vectorised exercise of each loss share cases, reference, catalogue."""
    for kind, reference, mistakes, kinks in (
            ("softmax", _softmax_reference, _SOFTMAX_MISTAKES, None),
            ("svm", _svm_reference, _SVM_MISTAKES, _svm_kinks)):
        for style in ("naive", "vectorized"):
            name = f"{kind}_loss_{style}"
            register(
                LossGradExercise(
                    name,
                    notebook=NOTEBOOK,
                    signature=f"{name}(W, X, y, reg)",
                    arg_names=("W", "X", "y", "reg"),
                    reference=reference,
                    cases=functools.partial(_loss_cases, kind=kind),
                    kinks=kinks,
                    mistakes=mistakes,
                )
            )


_register_losses()


# --------------------------------------------------------------------------- numerical gradient


def _smooth(rng, shape, *, scale=1.0):
    n = int(np.prod(shape))
    quad = rng.normal(size=(n, n))
    return GivenFunction("smooth_scalar", cubic=rng.normal(size=shape) * scale,
                         freq=rng.uniform(0.5, 2.0, size=shape),
                         quad=(quad + quad.T) / 2, lin=rng.normal(size=n))


def _numgrad_reference(f, x, h=1e-5):
    from lossutils import numerical_gradient

    return numerical_gradient(f, x, eps=h).astype(np.asarray(x).dtype)


def _central(f, x, h, *, step=lambda h: 2 * h, plus=1.0, minus=-1.0):
    """(f(x + plus h e_i) - f(x + minus h e_i)) / step(h) for every element, on a copy."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        a, b = x.copy(), x.copy()
        a[i] += plus * h
        b[i] += minus * h
        grad[i] = (f(a) - f(b)) / step(h)
    return grad


def _not_restored(f, x, h=1e-5):
    x = np.array(x, dtype=np.float64)  # a copy: the model must not touch the case
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        f_plus = f(x)
        x[i] = old - h
        grad[i] = (f_plus - f(x)) / (2 * h)
    return grad


def _rows(f, x, h=1e-5):
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for i in range(x.shape[0]):
        a, b = x.copy(), x.copy()
        a[i] += h
        b[i] -= h
        grad[i] = (f(a) - f(b)) / (2 * h)
    return grad


def _fixed_step(step):
    return lambda f, x, h=1e-5: _central(f, x, step)


def _numgrad_cases(rng, hidden):
    cubes = GivenFunction("smooth_scalar", cubic=np.ones(2), freq=np.zeros(2),
                          quad=np.zeros((2, 2)), lin=np.zeros(2))
    cases = [
        Case("f(x) = sum(x^3) at x = [1, -2] (gradient [3, 12])", (cubes, np.array([1.0, -2.0]))),
        Case("a 2-D x of shape (3, 2)", (_smooth(rng, (3, 2)), rng.normal(size=(3, 2)))),
        Case("h = 0.1 given", (_smooth(rng, (4,), scale=3.0), rng.normal(size=4)), {"h": 0.1}),
        Case("float32 x with h = 0.01", (_smooth(rng, (3,)), rng.normal(size=3)
                                         .astype(np.float32)), {"h": 0.01}),
    ]
    for dtype in DTYPES:
        for _ in range(n_random(hidden)):
            shape = (int(rng.integers(1, 6)),)
            if rng.random() < 0.5:
                shape += (int(rng.integers(2, 4)),)
            x = rng.normal(size=shape).astype(dtype)
            # float32 carries 7 digits: x + 1e-5 would lose most of the step.
            kwargs = {"h": 0.01} if dtype == np.float32 else {}
            cases.append(Case(f"random {np.dtype(dtype).name}, shape {shape}",
                              (_smooth(rng, shape), x), kwargs))
    return cases


register(
    FunctionExercise(
        "numerical_gradient",
        notebook=NOTEBOOK,
        signature="numerical_gradient(f, x, h=1e-5)",
        arg_names=("f", "x", "h"),
        reference=_numgrad_reference,
        cases=_numgrad_cases,
        modified_advice="x must be unchanged afterwards: restore x[k] from its saved value "
        "(x[k] + h - h is not always x[k] in floating point), or perturb a copy.",
        mistakes=(
            Mistake(
                "one_sided",
                "you used a one-sided difference (f(x + h) - f(x)) / h, whose error shrinks "
                "only like h; the central difference (f(x + h) - f(x - h)) / (2h) is "
                "accurate to h^2.",
                models=(lambda f, x, h=1e-5: _central(f, x, h, step=lambda h: h, minus=0.0),
                        lambda f, x, h=1e-5: _central(f, x, h, step=lambda h: h, plus=0.0)),
            ),
            Mistake(
                "not_halved",
                "the two points x + h and x - h are 2h apart: divide by 2 * h, not h.",
                models=(lambda f, x, h=1e-5: _central(f, x, h, step=lambda h: h),),
            ),
            Mistake(
                "sign_flipped",
                "the difference is f(x + h) - f(x - h), in that order.",
                models=(lambda f, x, h=1e-5: -_central(f, x, h),),
            ),
            Mistake(
                "not_restored",
                "x[i] was left at x[i] - h when you moved on to the next element, so the "
                "later differences were taken around a shifted point: restore x[i] to its "
                "saved value after each pair of evaluations (or perturb a copy).",
                models=(_not_restored,),
            ),
            Mistake(
                "rows_not_elements",
                "you perturbed a whole row x[i] at once; perturb one element at a time, "
                "whatever the number of axes of x.",
                models=(_rows,),
            ),
            Mistake(
                "ignores_h",
                "you used a step of your own instead of the h you were given: use h.",
                models=tuple(_fixed_step(s) for s in (1e-5, 1e-4, 1e-3, 1e-2, 0.1, 0.5, 1.0)),
            ),
        ),
    )
)


# --------------------------------------------------------------------------- training


@functools.lru_cache(maxsize=1)
def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8 x 8 digits as the notebook uses them: (X, y).

    ``X`` (1797, 65): the 64 pixels scaled to [0, 1] and a constant 1 (the bias);
    ``y`` (1797,): the digit. The data ship inside scikit-learn; nothing is downloaded.
    """
    from sklearn.datasets import load_digits

    pixels, labels = load_digits(return_X_y=True)
    X = np.hstack([pixels / 16.0, np.ones((len(pixels), 1))])
    X.setflags(write=False)
    labels = labels.astype(np.int64)
    labels.setflags(write=False)
    return X, labels


#: Hyperparameters of the graded training run, and the test accuracy it must reach.
TRAINING = {"lr": 0.01, "reg": 1e-4, "epochs": 10, "batch_size": 32}
ACCURACY_THRESHOLD = 0.9
N_TEST = 400


def held_out_accuracy(W, X_test, y_test) -> float:
    """Fraction of the test digits whose highest score is the true class."""
    return float(np.mean(np.argmax(np.asarray(X_test) @ np.asarray(W), axis=1) == y_test))


@dataclass(frozen=True)
class TrainCase(Case):
    """A training case; ``test`` is the held-out split (X, y), never shown to the student."""

    test: tuple = ()


def _probe_case(label, n, batch_size, epochs, dtype, rng, *, lr=0.3, reg=0.25):
    # lr = 0.3: a weight moved by a whole number of gradients shows that lr was not used.
    steps = epochs * -(-n // batch_size)
    labels = rng.integers(0, 5, size=n)
    while len(np.unique(labels)) < 2:
        labels = rng.integers(0, 5, size=n)
    loss_fn = GivenFunction("probe_loss", labels=labels)
    step_fn = GivenFunction("probe_step")
    W0 = np.zeros((n, steps + 1), dtype)  # one column per step, one for any extra steps
    X = np.eye(n, dtype=dtype)
    seed = int(rng.integers(0, 2**31))
    return TrainCase(label, (loss_fn, W0, X, labels.copy(), step_fn, {"t": 0}),
                     {"lr": lr, "reg": reg, "epochs": epochs, "batch_size": batch_size,
                      "seed": seed})


def _accuracy_case(rng, label):
    X, y = digits()
    order = rng.permutation(len(y))
    test, train = order[:N_TEST], order[N_TEST:]
    W0 = np.zeros((X.shape[1], 10))
    state = {"t": 0, "r": np.zeros_like(W0)}
    return TrainCase(label, (Uses("loss_fn"), W0, X[train], y[train], Uses("step_fn"), state),
                     dict(TRAINING, seed=int(rng.integers(0, 2**31))),
                     test=(X[test], y[test]))


def _train_cases(rng, hidden):
    cases = [
        _probe_case("probe: N = 10 samples, batches of 4 (the last has 2), 3 epochs", 10, 4,
                    3, np.float64, rng),
        _probe_case("probe: N = 12, batches of 4, 2 epochs", 12, 4, 2, np.float64, rng),
        _probe_case("probe in float32: N = 9, batches of 3, 2 epochs", 9, 3, 2, np.float32,
                    rng),
    ]
    for dtype in DTYPES:
        for _ in range(n_random(hidden) - 1):
            n, b, e = int(rng.integers(8, 15)), int(rng.integers(2, 6)), int(rng.integers(2, 4))
            cases.append(_probe_case(f"random probe {np.dtype(dtype).name}: N = {n}, batches "
                                     f"of {b}, {e} epochs", n, b, e, dtype, rng))
    cases.append(_accuracy_case(rng, "digits: your loss_fn and step_fn on a random split"))
    return cases


def _steps_per_epoch(n, b):
    return -(-n // b)


def _other_seed(seed):
    """The seed of a probe's third run, which must visit the samples in another order."""
    return (seed + 1) % 2**31


def _same_weights(a, b) -> bool:
    """Whether two runs returned the same weights (the probe's weights record the batches)."""
    return all(type(r) is tuple and len(r) == 2 and type(r[0]) is np.ndarray for r in (a, b)) \
        and a[0].shape == b[0].shape and np.array_equal(a[0], b[0])


class TrainExercise(Exercise):
    """The training loop: probes that reveal its mini-batches, then the accuracy it reaches.

    A probe case hands ``train`` a data set of one-hot rows (sample i is e_i) and two
    checker-made functions (:mod:`._given`): a loss whose gradient marks the samples of
    the batch (1 if given with its own label, 100 if with another's), and a step that writes
    that mark into column t of the weights. The returned weights therefore record which
    samples every step used, and the judge checks the mini-batches, the shuffling, the
    labels, the state and the history against the contract, and that the seed decides the
    batches (:meth:`call` runs a probe three times). The accuracy case runs
    ``train`` with the student's own loss and step functions on a digits split drawn from
    the seed and measures the test accuracy of the returned weights.
    """

    def __init__(self, id, *, cases, **kw):
        super().__init__(id, **kw)
        self._cases = cases
        self._by_id = {m.id: m for m in self.mistakes}

    def make_cases(self, rng, hidden):
        return self._cases(rng, hidden)

    def call(self, fn, case, uses=None):
        """The accuracy case runs ``train`` once. A probe case runs it three times, with the
        case's seed, again with the same seed (a seeded run repeats itself) and with another
        seed (which must change the order); the judge gets the list of the three outputs."""
        first = super().call(fn, case, uses)
        if case.test or first.error is not None:
            return first
        other = replace(case, kwargs={**case.kwargs, "seed": _other_seed(case.kwargs["seed"])})
        runs = (first, super().call(fn, case, uses), super().call(fn, other, uses))
        return Outcome([r.output for r in runs],
                       next((r.error for r in runs if r.error is not None), None),
                       tuple(w for r in runs for w in r.warnings),
                       "".join(r.stdout for r in runs),
                       tuple(dict.fromkeys(m for r in runs for m in r.modified)))

    def describe_input(self, case):
        loss_fn, W0, X, y, step_fn, state = case.args
        hyper = ", ".join(f"{k}={v!r}" for k, v in case.kwargs.items())
        if type(loss_fn) is Uses:
            return (f"loss_fn = your {loss_fn.role} (the function the test cell passes as "
                    f"loss_fn=...), step_fn = your {step_fn.role}\n"
                    f"W0 = zeros {W0.shape}, X: {X.shape[0]} training digits ({X.shape} "
                    f"{X.dtype}), y: their labels\n"
                    f"state = {{'t': 0, 'r': zeros {W0.shape}}}\nhyperparameters: {hyper}")
        return (f"loss_fn = {fmt(loss_fn)}\nW0 = zeros {W0.shape} {W0.dtype}\n"
                f"X = np.eye({X.shape[0]}) (sample i is the row e_i), y = {fmt(y, 'y = ')}\n"
                f"step_fn = {fmt(step_fn)}\nstate = {fmt(state)}\nhyperparameters: {hyper}")

    def _fail(self, message, stage="values", mistake=None, advice=None):
        explained = (self._by_id[mistake],) if mistake else ()
        return self.verdict(message, stage, explained, advice)

    def judge(self, case, output, warnings=()):
        W0 = case.args[1]
        runs = None
        if not case.test:
            if type(output) is not list or len(output) != 3:  # only call() builds this list
                return Verdict(False, f"no runs were recorded ({describe_returned(output)}).")
            runs, output = output, output[0]
        if type(output) is not tuple or len(output) != 2:
            return self._fail(f"returned {describe_returned(output)}; expected a tuple "
                              "(W, history).", "type",
                              advice="return both results as one tuple: return W, history.")
        W, history = output
        if type(W) is not np.ndarray or W.shape != W0.shape or W.dtype != W0.dtype:
            return self._fail(f"W: returned {describe_returned(W)}; expected the trained "
                              f"weights, an array of shape {W0.shape} and dtype {W0.dtype}.",
                              "type" if type(W) is not np.ndarray else "shape")
        if type(history) is not np.ndarray or history.ndim != 1 \
                or history.dtype.kind != "f":
            return self._fail(f"history: returned {describe_returned(history)}; expected a "
                              "1-D float array, the loss of every step (np.array(losses)).",
                              "type")
        if not np.all(np.isfinite(W)) or not np.all(np.isfinite(history)):
            return self._fail("W or history holds nan or inf.", "finite")
        if np.array_equal(W, W0):
            return self._fail("W is W0: the weights never changed.",
                              mistake="weights_not_updated")
        if case.test:
            return self._judge_accuracy(case, W, history)
        verdict = self._judge_probe(case, W, history)
        if not verdict.ok:
            return verdict
        _, again, other = runs
        if not _same_weights(output, again) or not (
                type(again[1]) is np.ndarray and np.array_equal(again[1], history)):
            return self._fail("called again with the same seed, train trained on other "
                              "batches: the run is not reproducible.",
                              mistake="not_reproducible")
        if _same_weights(output, other):
            return self._fail(f"called with seed={_other_seed(case.kwargs['seed'])} instead, "
                              "train used the same batches: the shuffling ignores the seed.",
                              mistake="seed_ignored")
        return verdict

    def _judge_accuracy(self, case, W, history):
        n = len(case.args[3])
        steps = case.kwargs["epochs"] * _steps_per_epoch(n, case.kwargs["batch_size"])
        if history.shape != (steps,):
            return self._fail(f"history has {history.shape[0]} entries; expected one per "
                              f"step, {steps}.", mistake=self._history_mistake(case, history))
        X_test, y_test = case.test
        accuracy = held_out_accuracy(W, X_test, y_test)
        if accuracy >= ACCURACY_THRESHOLD:
            return Verdict(True)
        return self._fail(
            f"the trained weights classify {accuracy:.1%} of {len(y_test)} held-out digits "
            f"correctly; a correct loss, optimizer step and training loop reach at least "
            f"{ACCURACY_THRESHOLD:.0%} with these hyperparameters.", mistake="low_accuracy")

    def _history_mistake(self, case, history):
        return "history_per_epoch" if history.shape == (case.kwargs["epochs"],) else None

    def _judge_probe(self, case, W, history):
        _, W0, _, y, _, _ = case.args
        hyper = case.kwargs
        n, b, epochs, lr = len(y), hyper["batch_size"], hyper["epochs"], hyper["lr"]
        k = _steps_per_epoch(n, b)
        steps = epochs * k
        moved = np.asarray(W0, np.float64) - np.asarray(W, np.float64)
        marks = moved / lr
        if not np.allclose(marks, np.round(marks), atol=1e-3):
            if np.allclose(moved, np.round(moved), atol=1e-3):
                return self._fail("the weights moved by whole multiples of the step's "
                                  "gradient: the learning rate was not passed to step_fn.",
                                  mistake="lr_not_passed")
            return self._fail("the weights are not what step_fn returned: W must be the "
                              "weights returned by the last call of step_fn.")
        marks = np.round(marks).astype(np.int64)
        if (marks < 0).any():
            return self._fail("the weights moved the wrong way: W must be what step_fn "
                              "returned.")
        if (marks >= 100).any():
            return self._fail("some samples reached loss_fn with another sample's label: X "
                              "and y were not indexed with the same permutation.",
                              mistake="labels_misaligned")
        # uses[i, s]: how often sample i was in the batch of step s
        uses = marks
        sizes = uses.sum(axis=0)
        if steps > 1 and not uses[:, 1:].any():
            return self._fail("every step wrote into the first column: step_fn was given the "
                              "initial state every time.", mistake="state_not_carried")
        if b < n and (sizes[sizes > 0] == n).all():
            return self._fail(f"every step used all {n} samples: use mini-batches of "
                              f"batch_size = {b}.", mistake="full_batch")
        counts = uses.sum(axis=1)
        if (counts == counts[0]).all() and 0 < counts[0] < epochs:
            return self._fail(f"every sample was used {counts[0]} times in what should be "
                              f"{epochs} epochs: train for the number of epochs you are given.",
                              mistake="epochs_missing")
        if (counts < epochs).any() and (counts <= epochs).all():
            return self._fail(
                f"some samples were used fewer than {epochs} times in {epochs} epochs "
                f"(times per sample: {counts.tolist()}): each epoch visits all {n} samples, "
                f"the last batch holding the remaining {n - (k - 1) * b}.",
                mistake="samples_skipped")
        if (counts != epochs).any():
            return self._fail(f"over {epochs} epochs the samples were used "
                              f"{counts.tolist()} times: each epoch uses each sample once.",
                              mistake="with_replacement")
        want_sizes = [b] * (k - 1) + [n - (k - 1) * b]
        if uses[:, steps:].any() or sizes[:steps].tolist() != want_sizes * epochs:
            return self._fail(f"the batches had the sizes {sizes[sizes > 0].tolist()}; "
                              f"expected {epochs} epochs of {want_sizes}.")
        blocks = [uses[:, e * k:(e + 1) * k] for e in range(epochs)]
        for e, block in enumerate(blocks):
            if not (block.sum(axis=1) == 1).all():
                return self._fail(f"epoch {e + 1} used the samples "
                                  f"{block.sum(axis=1).tolist()} times (by index): an epoch "
                                  "visits every sample exactly once.",
                                  mistake="with_replacement")
        batches = [[tuple(np.nonzero(block[:, j])[0]) for j in range(k)] for block in blocks]
        in_order = [tuple(range(j * b, min((j + 1) * b, n))) for j in range(k)]
        if all(batch == in_order for batch in batches):
            return self._fail("the batches were taken in order, 0 to N - 1, in every epoch: "
                              "shuffle the samples at the start of each epoch.",
                              mistake="no_shuffle")
        if epochs > 1 and all(batch == batches[0] for batch in batches):
            return self._fail("every epoch visited the samples in the same order: draw a new "
                              "permutation in each epoch from one generator made once, "
                              "before the loop.", mistake="same_order_every_epoch")
        if history.shape != (steps,):
            return self._fail(f"history has {history.shape[0]} entries; expected one per "
                              f"step, {steps}.", mistake=self._history_mistake(case, history))
        # the probe loss adds 1000 per step the weights record already: 1000 s before step s
        want = uses[:, :steps].T @ np.arange(1, n + 1) + hyper["reg"] + 1000.0 * np.arange(steps)
        if close(history, want + 1000.0, np.float64):
            return self._fail("history[s] holds the loss at the weights after step s: record "
                              "the loss that loss_fn returned for the step's batch, before "
                              "step_fn moved the weights (one loss_fn call per step).",
                              mistake="history_after_step")
        if not close(history, want, np.float64):
            return self._fail("history[s] must be the loss that loss_fn returned at step s "
                              f"(with reg = {hyper['reg']}).\n{expected_got(want, history)}",
                              mistake="history_values")
        return Verdict(True)


register(
    TrainExercise(
        "train",
        notebook=NOTEBOOK,
        signature="train(loss_fn, W0, X, y, step_fn, state, lr, reg, epochs, batch_size, "
                  "seed)",
        arg_names=("loss_fn", "W0", "X", "y", "step_fn", "state"),
        uses=("loss_fn", "step_fn"),
        cases=_train_cases,
        mistakes=(
            Mistake("weights_not_updated",
                    "step_fn returns the new weights rather than changing W: the next step, "
                    "and the W you return, must use the weights it returned."),
            Mistake("state_not_carried",
                    "step_fn returns a new state and leaves the one given untouched: the next "
                    "call needs the state the last call returned, not the initial one."),
            Mistake("labels_misaligned",
                    "the labels of a batch must be those of its samples: take X's rows and y's "
                    "entries with the same indices."),
            Mistake("no_shuffle",
                    "draw a permutation of the samples at the start of every epoch, "
                    "rng.permutation(N), and take the batches from it."),
            Mistake("same_order_every_epoch",
                    "make the generator once, rng = np.random.default_rng(seed), before the "
                    "epochs, and draw a fresh permutation from it in each epoch."),
            Mistake("not_reproducible",
                    "draw every permutation from one generator made from the seed argument, "
                    "np.random.default_rng(seed): a generator made without a seed, or "
                    "np.random's global functions, shuffle differently in every run."),
            Mistake("seed_ignored",
                    "make the generator from the seed argument, np.random.default_rng(seed), "
                    "not from a number of your own: another seed must give other batches."),
            Mistake("samples_skipped",
                    "every sample is used once per epoch: keep the last batch even when fewer "
                    "than batch_size samples are left for it."),
            Mistake("with_replacement",
                    "sample without replacement: a permutation of the N samples, cut into "
                    "batches, not rng.integers or rng.choice with replacement."),
            Mistake("full_batch",
                    "each step uses one mini-batch of batch_size samples, not the whole "
                    "training set."),
            Mistake("lr_not_passed",
                    "pass the learning rate to step_fn: step_fn(W, dW, state, lr)."),
            Mistake("history_per_epoch",
                    "record the loss of every step (one entry per mini-batch), not one per "
                    "epoch."),
            Mistake("history_values",
                    "append the loss that loss_fn returned for the batch of that step."),
            Mistake("history_after_step",
                    "record the loss loss_fn returned before the step, not a second evaluation "
                    "after it."),
            Mistake("epochs_missing",
                    "loop over all the epochs you are given: for epoch in range(epochs)."),
            Mistake("low_accuracy",
                    "train ran with your loss_fn and step_fn: check that their own checks pass "
                    "(the gradient's sign and scale) and that W follows the steps."),
        ),
    )
)
