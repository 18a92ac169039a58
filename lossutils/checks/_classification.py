"""Exercises of notebook 03-cross-entropy: one-hot, softmax, log-softmax, cross-entropy."""

from __future__ import annotations

import numpy as np

import lossutils

from ._common import DTYPES, case, n_random, sum_instead_of_mean
from ._core import Case, FunctionExercise, Mistake, close, register

NOTEBOOK = "03-cross-entropy"


# --------------------------------------------------------------------------- models

def _stable_softmax(x, axis=-1):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def _stable_log_softmax(x, axis=-1):
    s = x - np.max(x, axis=axis, keepdims=True)
    return s - np.log(np.sum(np.exp(s), axis=axis, keepdims=True))


def _naive_softmax(x):
    e = np.exp(x)
    return e / np.sum(e, axis=-1, keepdims=True)


def _pick(logp, labels):
    return logp[np.arange(len(labels)), labels]


def _one_hot(labels, c, dtype):
    return np.eye(c, dtype=dtype)[labels]


# --------------------------------------------------------------------------- cases

def _logit_cases(rng, hidden):
    cases = [
        case("FAU exercise: a row of four equally spaced logits",
             np.array([[0.0, 0.09, 0.18, 0.27]])),
        case("FAU exercise: all logits 10000", np.full((2, 4), 1e4)),
        case("extreme logits +-1e4", np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]])),
        case("extreme logits +-1e4, float32",
             np.array([[1e4, -1e4, 0.0], [0.0, -1e4, 1e4]], np.float32)),
        case("rows 2e4 apart", np.array([[1e4, 1e4 - 1, 1e4 - 2], [-1e4, -1e4 + 1, -1e4 + 2]])),
        case("square input with distinct rows",
             np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 4.0], [2.0, 2.0, -3.0]])),
        case("batch of one", np.array([[0.5, -1.0, 2.0, 0.0, 1.0]])),
        case("a single vector (1-D)", np.array([1.0, 0.0, -1.0])),
        case("3-D input (2, 3, 4)", np.arange(24.0).reshape(2, 3, 4) % 5 - 2.0),
    ]
    for dtype in DTYPES:
        for _ in range(n_random(hidden)):
            shape = (int(rng.integers(2, 7)), int(rng.integers(2, 6)))
            logits = (rng.normal(size=shape) * 3).astype(dtype)
            cases.append(case(f"random {np.dtype(dtype).name}, shape {shape}", logits))
    return cases


def _ce_cases(rng, hidden):
    cases = [
        case("hand-made: 2 samples, 3 classes", np.array([[2.0, 1.0, 0.1], [0.5, 2.5, 0.3]]),
             np.array([0, 1])),
        case("square: N = C = 3", np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 4.0], [2.0, 2.0, -3.0]]),
             np.array([2, 0, 1])),
        case("extreme logits +-1e4", np.array([[1e4, -1e4], [-1e4, 1e4], [1e4, 0.0]]),
             np.array([1, 1, 0])),
        case("extreme logits +-1e4, float32",
             np.array([[1e4, -1e4, 0.0], [0.0, 1e4, -1e4]], np.float32), np.array([2, 1])),
        case("batch of one", np.array([[0.2, -0.4, 1.0, 3.0]]), np.array([3])),
        case("float32, N = C = 2", np.array([[1.0, -1.0], [0.5, 0.25]], np.float32),
             np.array([1, 0])),
    ]
    for dtype in DTYPES:
        for _ in range(n_random(hidden)):
            n, c = int(rng.integers(2, 8)), int(rng.integers(2, 6))
            if rng.random() < 0.3:
                c = n
            logits = (rng.normal(size=(n, c)) * 3).astype(dtype)
            labels = rng.integers(0, c, size=n)
            cases.append(case(f"random {np.dtype(dtype).name}, N = {n}, C = {c}", logits,
                              labels))
    return cases


def _out_of_range(label: str, labels: np.ndarray, c: int, bad: int) -> Case:
    why = f"a label of {bad} is outside [0, {c})"
    if bad < 0:
        why += " (numpy indexing would silently pick a class from the end)"
    return Case(label, (labels, c), raises=("ValueError", why))


def _label_cases(rng, hidden):
    cases = [
        case("hand-made", np.array([0, 2, 1]), 3),
        case("the last class does not occur", np.array([0, 1, 0]), 4),
        case("batch of one", np.array([2]), 3),
        case("square: N = C", np.array([1, 0, 3, 3]), 4),
        _out_of_range("a label of -1", np.array([0, -1, 2]), 3, -1),
        _out_of_range("a label equal to num_classes", np.array([1, 3]), 3, 3),
    ]
    for _ in range(2 * n_random(hidden)):
        c = int(rng.integers(2, 8))
        n = int(rng.integers(1, 9))
        cases.append(case(f"random, N = {n}, C = {c}", rng.integers(0, c, size=n), c))
    if hidden:
        c = int(rng.integers(2, 8))
        labels = rng.integers(0, c, size=4)
        labels[int(rng.integers(0, 4))] = bad = int(rng.choice([-c, -1, c, c + 2]))
        cases.append(_out_of_range(f"random, a label of {bad} with C = {c}", labels, c, bad))
    return cases


# --------------------------------------------------------------------------- mistakes

def _overflow_detect(case_, got, expected, warnings):
    return (not np.all(np.isfinite(got))) and any("overflow" in w for w in warnings)


def _overflow(*models):
    return Mistake(
        "overflow",
        "exp overflowed for large logits (inf / inf = nan): shift each row by its maximum "
        "before exponentiating; the softmax does not change under such a shift.",
        models=models,
        detect=_overflow_detect,
    )


def _wrong_axis(*models):
    return Mistake(
        "wrong_axis",
        "you normalised along the wrong axis: the classes are on the last axis, whatever the "
        "number of leading axes, so normalise over the class axis (each row must sum to 1).",
        models=models,
    )



def _no_keepdims_softmax(x):
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1)


def _no_keepdims_softmax2(x):
    e = np.exp(x - np.max(x, axis=-1))
    return e / np.sum(e, axis=-1)


def _no_keepdims_log_softmax(x):
    s = x - np.max(x, axis=-1, keepdims=True)
    return s - np.log(np.sum(np.exp(s), axis=-1))


def _no_keepdims(*models):
    return Mistake(
        "no_keepdims",
        "the row sums lost their axis and broadcast across columns: keep the reduced axis, "
        "so that each row is divided by its own sum.",
        models=models,
    )


def _global_max(model):
    return Mistake(
        "global_max",
        "you subtracted the maximum of the whole array; a row far below it underflows to "
        "0/0: shift each row by its own maximum.",
        models=(model,),
    )


def _log_of_softmax(model):
    return Mistake(
        "log_of_softmax",
        "log(softmax(x)) gives log(0) = -inf once a probability underflows: stay in log "
        "space and compute the log-probabilities from the logits with the shifted "
        "log-sum-exp.",
        models=(model,),
    )


# The epsilons students add inside a log (or clip a probability to): powers of ten and the
# float types' eps and tiny. A fixed set, not a fitted value: one free parameter would
# "explain" any loss that is too small.
_EPSILONS = (*(10.0**-k for k in range(3, 46)),
             *(float(f(t)) for t in (np.float32, np.float64)
               for f in (lambda t: np.finfo(t).eps, lambda t: np.finfo(t).tiny)))


def _epsilon_in_log(log_probs_of):
    """A probe: the output equals ``log_probs_of(logits, labels, guard)`` for some epsilon.

    ``guard(p)`` is ``p + eps`` or ``max(p, eps)``, applied to the softmax probabilities.
    """

    def detect(case_, got, expected, warnings):
        p = _stable_softmax(np.asarray(case_.args[0], dtype=np.float64))
        dtype = np.asarray(case_.args[0]).dtype
        for eps in _EPSILONS:
            for guarded in (p + eps, np.maximum(p, eps)):
                model = log_probs_of(np.log(guarded), *case_.args[1:])
                if close(got, model, dtype) and not close(model, expected, dtype):
                    return True
        return False

    return Mistake(
        "epsilon_in_log",
        "adding a small epsilon inside the log (or clipping the probability) caps -log p at "
        "-log(eps), while for logits of +-1e4 the true value is in the thousands: compute "
        "the log-probabilities from the logits with the shifted log-sum-exp, no epsilon.",
        detect=detect,
    )


def _labels_as_one_hot(*models):
    return Mistake(
        "labels_as_one_hot",
        "you used the labels as if they were one-hot rows; they are class indices of shape "
        "(N,): take from each row the entry in the column of that row's label (or one-hot "
        "encode them first).",
        models=models,
    )

register(
    FunctionExercise(
        "one_hot",
        notebook=NOTEBOOK,
        signature="one_hot(labels, num_classes)",
        arg_names=("labels", "num_classes"),
        reference=lossutils.one_hot,
        cases=_label_cases,
        any_float=True,
        mistakes=(
            Mistake(
                "transposed",
                "your result is transposed: one row per sample, one column per class, shape "
                "(N, num_classes).",
                models=(lambda y, c: np.eye(c)[y].T,),
            ),
            Mistake(
                "num_classes_from_data",
                "you took the number of classes from the labels (max + 1); a batch need not "
                "contain the last class: use the num_classes argument.",
                models=(lambda y, c: np.eye(np.max(y) + 1)[y],
                        lambda y, c: np.eye(len(np.unique(y)))[y]),
            ),
        ),
    )
)

register(
    FunctionExercise(
        "softmax",
        notebook=NOTEBOOK,
        signature="softmax(logits)",
        arg_names=("logits",),
        reference=lossutils.softmax,
        cases=_logit_cases,
        mistakes=(
            _overflow(_naive_softmax),
            _global_max(lambda x: np.exp(x - x.max())
                        / np.sum(np.exp(x - x.max()), axis=-1, keepdims=True)),
            _wrong_axis(lambda x: _stable_softmax(x, axis=0),
                        lambda x: _stable_softmax(x, axis=1),
                        lambda x: np.exp(x - x.max()) / np.exp(x - x.max()).sum()),
            _no_keepdims(_no_keepdims_softmax, _no_keepdims_softmax2),
        ),
    )
)

register(
    FunctionExercise(
        "log_softmax",
        notebook=NOTEBOOK,
        signature="log_softmax(logits)",
        arg_names=("logits",),
        reference=lossutils.log_softmax,
        cases=_logit_cases,
        mistakes=(
            _overflow(lambda x: np.log(_naive_softmax(x))),
            _log_of_softmax(lambda x: np.log(_stable_softmax(x))),
            _epsilon_in_log(lambda logp: logp),
            _global_max(lambda x: x - x.max()
                        - np.log(np.sum(np.exp(x - x.max()), axis=-1, keepdims=True))),
            Mistake(
                "shift_not_undone",
                "you subtracted the maximum inside exp but not outside, so every entry is off "
                "by its row's maximum: the shift must apply to both terms.",
                models=(lambda x: x - np.log(np.sum(np.exp(x - x.max(-1, keepdims=True)), -1,
                                                    keepdims=True)),),
            ),
            _wrong_axis(lambda x: _stable_log_softmax(x, axis=0),
                        lambda x: _stable_log_softmax(x, axis=1),
                        lambda x: x - x.max() - np.log(np.exp(x - x.max()).sum())),
            _no_keepdims(_no_keepdims_log_softmax),
        ),
    )
)

register(
    FunctionExercise(
        "cross_entropy",
        notebook=NOTEBOOK,
        signature="cross_entropy(logits, labels)",
        arg_names=("logits", "labels"),
        reference=lossutils.cross_entropy,
        cases=_ce_cases,
        mistakes=(
            _overflow(lambda x, y: -np.mean(_pick(np.log(_naive_softmax(x)), y))),
            _log_of_softmax(lambda x, y: -np.mean(_pick(np.log(_stable_softmax(x)), y))),
            _epsilon_in_log(lambda logp, y: -np.mean(_pick(logp, y))),
            sum_instead_of_mean(lambda x, y: -np.sum(_pick(_stable_log_softmax(x), y)),
                                what="the cross-entropy loss"),
            Mistake(
                "all_pairs_indexed",
                "indexing the columns with the labels alone picks every label for every row "
                "(an N x N block): pair each row with its own label, one entry per row.",
                models=(lambda x, y: -np.mean(_stable_log_softmax(x)[:, y]),),
            ),
            _labels_as_one_hot(lambda x, y: -np.mean(np.sum(_stable_log_softmax(x) * y, -1)),
                               lambda x, y: -np.sum(_stable_log_softmax(x) * y) / len(y)),
            Mistake(
                "sign_flipped",
                "the sign is flipped: the loss is the mean of -log softmax(logits)[m, label], "
                "which is >= 0.",
                models=(lambda x, y: np.mean(_pick(_stable_log_softmax(x), y)),),
            ),
        ),
    )
)

register(
    FunctionExercise(
        "cross_entropy_grad",
        notebook=NOTEBOOK,
        signature="cross_entropy_grad(logits, labels)",
        arg_names=("logits", "labels"),
        reference=lossutils.cross_entropy_grad,
        cases=_ce_cases,
        mistakes=(
            _overflow(lambda x, y: (_naive_softmax(x) - _one_hot(y, x.shape[1], x.dtype))
                      / len(y)),
            Mistake(
                "missing_mean",
                "your gradient is N times too large: the loss is a mean over the batch, so "
                "every entry of its gradient carries the 1/N of the mean.",
                models=(lambda x, y: _stable_softmax(x) - _one_hot(y, x.shape[1], x.dtype),),
            ),
            Mistake(
                "sign_flipped",
                "the sign is flipped: raising the true class's logit lowers the loss, so that "
                "entry of the gradient must be negative.",
                models=(lambda x, y: (_one_hot(y, x.shape[1], x.dtype) - _stable_softmax(x))
                        / len(y),),
            ),
            _labels_as_one_hot(lambda x, y: (_stable_softmax(x) - y) / len(y)),
        ),
    )
)
