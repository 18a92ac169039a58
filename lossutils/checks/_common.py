"""Helpers shared by the exercise modules: case builders and recurring mistakes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ._core import Case, Mistake

__all__ = [
    "DTYPES",
    "case",
    "log_base",
    "mean_instead_of_sum",
    "n_random",
    "sum_instead_of_mean",
]

DTYPES = (np.float64, np.float32)


def n_random(hidden: bool) -> int:
    """How many random cases per dtype: hidden batteries draw more."""
    return 4 if hidden else 2


def case(label: str, *args: Any, **kwargs: Any) -> Case:
    return Case(label, tuple(args), dict(kwargs))


def sum_instead_of_mean(*models: Callable, what: str = "the loss") -> Mistake:
    return Mistake(
        "sum_instead_of_mean",
        f"you summed over the batch, but {what} is the mean over the batch (first axis): "
        "divide by the number of samples, or use np.mean.",
        models=models,
    )


def mean_instead_of_sum(*models: Callable, what: str = "this quantity") -> Mistake:
    return Mistake(
        "mean_instead_of_sum",
        f"you averaged, but {what} is a sum over the samples (as derived in the lecture): "
        "use np.sum, not np.mean.",
        models=models,
    )


def log_base(*models: Callable) -> Mistake:
    return Mistake(
        "log_base",
        "you used a logarithm in another base (log2 or log10); losses here are in nats: "
        "use the natural logarithm np.log.",
        models=models,
    )
