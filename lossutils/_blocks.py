"""Row blocks: the 2-D arrays of the row-wise losses, processed a cache-sized block at a time.

Private module. A loss such as the cross-entropy makes several passes over each row (max,
shift, exp, sum, log). Made over the whole array, each pass streams it from memory; made over
one block of rows at a time, all but the first find the block in cache, and full-size
temporaries shrink to block-sized scratch buffers. Each row is computed the same way whatever
the block size, so blocking changes no value.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["BLOCK_BYTES", "FEW_CLASSES", "Block", "blocks"]

# About 512 KiB of rows per block. Smaller blocks fit a core's L2 cache but pay the Python
# overhead of a dozen numpy calls per block too often; larger ones spill out of the L3 cache.
# The size was chosen by measurement: docs/performance.md, the reference library.
BLOCK_BYTES = 1 << 19

# numpy reduces a short row one row at a time, which dominates softmax and cross-entropy for
# few classes (10 classes: the row maximum and sum cost more than the exp), and broadcasting a
# shift along a short row is slow too. Blocks with at most this many classes are copied
# class-major (transposed), where the same steps run elementwise along long contiguous rows.
FEW_CLASSES = 32


class Block(typing.NamedTuple):
    """A block of rows of a 2-D array of scores, as :func:`blocks` yields it."""

    rows: slice  # which rows of the array
    scores: NDArray[Any]  # their scores, classes along ``axis`` (0 if class-major, else 1)
    axis: int
    result: NDArray[Any]  # where a result of the scores' shape and layout goes
    spare: NDArray[Any]  # scratch space of the same shape

    def max(self, values: NDArray[Any] | None = None) -> NDArray[Any]:
        """Row maxima of ``values`` (default: the scores), the class axis kept; -inf if empty."""
        values = self.scores if values is None else values
        # The ufunc's own reduce: np.max's Python wrapper costs more than a small block.
        return np.maximum.reduce(values, axis=self.axis, keepdims=True, initial=-np.inf)

    def sum(self, values: NDArray[Any]) -> NDArray[Any]:
        """Row sums of ``values`` (laid out as ``scores``), the class axis kept."""
        return np.add.reduce(values, axis=self.axis, keepdims=True)

    def per_row(self, values: NDArray[Any]) -> NDArray[Any]:
        """One value per row of the block, shape (rows,), shaped to broadcast against scores."""
        return values[None, :] if self.axis == 0 else values[:, None]

    def flat_index(self, classes: NDArray[np.integer[Any]]) -> NDArray[np.integer[Any]]:
        """Flat indices of ``[n, classes[n]]`` (one class per row of the block) into ``scores``
        or ``result``.

        Both are C-contiguous, and one flat index is several times faster than two.
        """
        n_rows: int
        n_classes: int
        if self.axis == 0:  # class-major: the block's row n is column n
            n_rows = self.scores.shape[1]
            return classes * n_rows + np.arange(n_rows)
        n_rows, n_classes = self.scores.shape
        return np.arange(0, n_rows * n_classes, n_classes) + classes


def blocks(x: NDArray[Any], out: NDArray[Any] | None = None) -> Iterator[Block]:
    """Yield the 2-D ``x`` as blocks of rows of about BLOCK_BYTES each (see :class:`Block`).

    With many classes, ``scores`` is the view ``x[rows]`` and ``result`` is ``out[rows]``. With
    few classes (see FEW_CLASSES), ``scores`` is a class-major copy of the rows in a buffer
    reused from block to block, ``result`` is that same buffer (the caller may overwrite the
    copy), and it is copied into ``out[rows]`` when the caller moves on to the next block.
    Without ``out``, ``result`` is scratch space. ``out`` must be C-contiguous.
    """
    n_rows, n_classes = x.shape
    step = max(1, BLOCK_BYTES // max(1, n_classes * x.itemsize))
    class_major = n_classes <= FEW_CLASSES
    scratch, spare = (np.empty(min(step, n_rows) * n_classes, x.dtype) for _ in range(2))
    for start in range(0, n_rows, step):
        rows = slice(start, min(start + step, n_rows))
        size = rows.stop - start
        shape = (n_classes, size) if class_major else (size, n_classes)
        work, extra = (buf[: size * n_classes].reshape(shape) for buf in (scratch, spare))
        if class_major:
            np.copyto(work, x[rows].T)
            yield Block(rows, work, 0, work, extra)
            if out is not None:
                np.copyto(out[rows], work.T)
        else:
            yield Block(rows, x[rows], 1, work if out is None else out[rows], extra)
