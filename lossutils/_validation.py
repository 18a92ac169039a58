"""Input validation shared by every public function of :mod:`lossutils`.

Private module. Every check raises :class:`ValueError` with a message that names the argument,
what was found and how to fix it; nothing here broadcasts, clips or copies silently.
"""

from __future__ import annotations

import typing
from typing import Any, Literal, TypeAlias

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "REDUCTIONS",
    "ArrayLike",
    "FloatArray",
    "Loss",
    "Reduction",
    "as_float",
    "as_labels",
    "as_target",
    "check_hinge_target",
    "check_positive",
    "check_probs",
    "check_reduction",
    "check_same_shape",
    "float_dtype",
    "grad_scale",
    "reduce",
    "reduce_grad",
    "sum_tolerance",
]

# The types of the public signatures. A batch reduction ("mean", "sum") gives a numpy scalar of
# the input's precision, "none" an array; a gradient is always an array.
Reduction: TypeAlias = Literal["mean", "sum", "none"]
FloatArray: TypeAlias = NDArray[np.floating[Any]]
Loss: TypeAlias = FloatArray | np.floating[Any]

REDUCTIONS: tuple[str, ...] = typing.get_args(Reduction)


def as_float(x: ArrayLike, name: str) -> FloatArray:
    """Return ``x`` as a floating array without copying float32/float64 input.

    Lists, Python scalars, booleans and integer arrays become float64; float16 is promoted to
    float32 (numpy's float16 loses too much for a reference); float32 and float64 pass through.
    """
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:  # ragged lists and the like
        raise ValueError(
            f"{name} could not be converted to a numeric array ({exc}); pass a numpy array "
            "or a rectangular list of numbers."
        ) from None
    if arr.dtype == np.float32 or arr.dtype == np.float64:
        return arr
    if arr.dtype == np.float16:
        return arr.astype(np.float32)
    if arr.dtype.kind in "biu":
        return arr.astype(np.float64)
    if arr.dtype.kind == "f":  # longdouble: keep the reference in float64
        return arr.astype(np.float64)
    raise ValueError(
        f"{name} must hold real numbers, got an array of dtype {arr.dtype}; pass floats "
        "(float32 or float64) or integers."
    )


def as_target(target: ArrayLike, prediction: FloatArray, name: str = "target") -> FloatArray:
    """A floating target; integer and boolean targets take the prediction's dtype.

    Integer labels such as 0/1, -1/+1 or one-hot rows carry no precision of their own, so they
    must not promote a float32 prediction to float64 (``as_float`` alone would).
    """
    arr = np.asarray(target)
    if arr.dtype.kind in "biu":
        return arr.astype(prediction.dtype)
    return as_float(arr, name)


def float_dtype(*arrays: FloatArray) -> np.dtype[np.floating[Any]]:
    """The floating dtype of the result: float64 if any input is float64, else float32."""
    return np.result_type(*[a.dtype for a in arrays])


def as_labels(
    labels: ArrayLike, num_classes: int, name: str = "target", *, batch: int | None = None
) -> NDArray[np.integer[Any]]:
    """Validate integer class labels of shape ``(N,)`` with values in ``[0, num_classes)``."""
    arr = np.asarray(labels)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError(
                f"{name} must hold integer class indices, got non-integer values such as "
                f"{arr[arr != np.round(arr)][:3].tolist()}; pass labels as integers in "
                f"[0, {num_classes})."
            )
        arr = arr.astype(np.int64)
    elif arr.dtype.kind not in "iu":
        raise ValueError(
            f"{name} must hold integer class indices, got dtype {arr.dtype}; pass labels as "
            f"integers in [0, {num_classes})."
        )
    if batch is not None and arr.shape != (batch,):
        hint = ""
        if arr.ndim == 2 and arr.shape[0] == batch:
            hint = (
                " It looks like one-hot or probability targets: pass class indices "
                "(e.g. target.argmax(-1)) or use the probability-target form."
            )
        raise ValueError(
            f"{name} must be integer class labels of shape ({batch},) to match {batch} rows "
            f"of scores, got shape {arr.shape}.{hint}"
        )
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        bad = arr[(arr < 0) | (arr >= num_classes)]
        raise ValueError(
            f"{name} has labels outside [0, {num_classes}): {bad[:5].tolist()}; class labels "
            f"must index the last axis, which has {num_classes} classes."
        )
    return arr


def check_same_shape(a: NDArray[Any], b: NDArray[Any], name_a: str, name_b: str) -> None:
    """Refuse to broadcast: ``a`` and ``b`` must have exactly the same shape."""
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} has shape {a.shape} but {name_b} has shape {b.shape}; they must have "
            "the same shape (lossutils never broadcasts silently: reshape one of them, "
            "e.g. target.reshape(pred.shape), if that is what you mean)."
        )


def check_probs(
    p: FloatArray, name: str, *, normalised: bool = False, atol: float | None = None
) -> None:
    """Probabilities must lie in [0, 1]; ``normalised`` ones also sum to 1 on the last axis."""
    if p.size == 0:
        return
    if np.isnan(p).any() or p.min() < 0 or p.max() > 1:
        bad = p[~((p >= 0) & (p <= 1))]
        raise ValueError(
            f"{name} must hold probabilities in [0, 1], found {bad[:5].tolist()}; if these "
            "are scores or logits, use the *_with_logits / logits form instead."
        )
    if normalised:
        if p.ndim == 0:
            raise ValueError(f"{name} must be a distribution over the last axis, got a scalar.")
        if atol is None:
            atol = sum_tolerance(p.dtype)
        sums = p.sum(axis=-1)
        if not np.allclose(sums, 1.0, rtol=0, atol=atol):
            worst = sums.flat[np.argmax(np.abs(sums - 1.0))]
            raise ValueError(
                f"{name} must sum to 1 along the last (class) axis, found a row summing to "
                f"{float(worst):.6g}; normalise it (p / p.sum(-1, keepdims=True))."
            )


def sum_tolerance(dtype: np.dtype[Any]) -> float:
    """How far from 1 the sum of a distribution may be (``check_probs(normalised=True)``)."""
    return 1e-4 if dtype == np.float32 else 1e-6


def check_hinge_target(target: FloatArray, name: str = "target") -> None:
    """Binary margin targets must be exactly -1 or +1."""
    ok = (target == 1) | (target == -1)
    if not np.all(ok):
        bad = np.unique(target[~ok])[:5].tolist()
        raise ValueError(
            f"{name} must hold labels in {{-1, +1}}, found {bad}; map 0/1 labels with 2 * y - 1."
        )


def check_positive(x: FloatArray, name: str) -> None:
    """Strictly positive values (variances, scales, precisions)."""
    if x.size and not np.all(x > 0):
        bad = x[~(x > 0)]
        raise ValueError(
            f"{name} must be strictly positive, found {bad[:5].tolist()}; a variance or "
            "scale of zero or less has no density."
        )


def check_reduction(reduction: str) -> None:
    """Refuse a reduction other than "mean", "sum" and "none" (a str from an untyped caller)."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of 'mean', 'sum', 'none', got {reduction!r}.")


def reduce(loss: FloatArray, reduction: Reduction) -> Loss:
    """Apply a batch reduction to per-sample losses.

    ``"mean"`` and ``"sum"`` return a numpy scalar of the dtype of ``loss`` (numpy sums
    pairwise, so float32 stays float32 and accurate); ``"none"`` returns ``loss`` itself.
    """
    check_reduction(reduction)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return typing.cast("np.floating[Any]", loss.sum(dtype=loss.dtype))
    grad_scale(loss.size, reduction)  # refuses the mean of an empty batch
    return typing.cast("np.floating[Any]", loss.mean(dtype=loss.dtype))


def grad_scale(shape_n: int, reduction: Reduction) -> float:
    """Factor by which a per-sample gradient is multiplied under ``reduction``."""
    check_reduction(reduction)
    if reduction != "mean":
        return 1.0
    if shape_n == 0:
        raise ValueError(
            "reduction='mean' of an empty batch is undefined; pass at least one sample."
        )
    return 1.0 / shape_n


def reduce_grad(grad: FloatArray, reduction: Reduction) -> FloatArray:
    """Scale an elementwise gradient by the derivative of the reduction over all elements."""
    return grad * grad_scale(grad.size, reduction)
