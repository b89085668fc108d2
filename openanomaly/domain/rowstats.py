"""Medians and quantiles of each row, ignoring NaN, for thousands of rows at once.

numpy's nanmedian and nanquantile handle an array with a NaN anywhere one row at a time
in Python; one series with a gap then costs a whole batch that path. These give the same
values (numpy's linear method) from one sort of the batch.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from openanomaly.domain.series import FloatArray


def nanquantile_rows(x: FloatArray, levels: npt.ArrayLike) -> FloatArray:
    """``np.nanquantile(x, levels, axis=1)``: (len(levels), rows), or (rows,) for one
    level; NaN for a row without a value."""
    single = np.ndim(levels) == 0
    wanted = np.atleast_1d(np.asarray(levels, dtype=float))
    x = np.asarray(x, dtype=float)
    missing = np.isnan(x)
    if not missing.any():
        if not x.shape[1]:
            return np.full(x.shape[0] if single else (wanted.size, x.shape[0]), np.nan)
        with np.errstate(invalid="ignore"):
            out = np.quantile(x, wanted, axis=1)
        return np.asarray(out[0] if single else out)
    ordered = np.sort(x, axis=1)  # NaN sort last
    count = x.shape[1] - missing.sum(axis=1)
    rows = np.arange(x.shape[0])
    out = np.full((wanted.size, x.shape[0]), np.nan)
    has = count > 0
    last = np.maximum(count - 1, 0)
    for i, level in enumerate(wanted):
        position = level * last
        below = np.floor(position).astype(np.int64)
        above = np.minimum(below + 1, last)
        t = position - below
        a, b = ordered[rows, below], ordered[rows, above]
        with np.errstate(invalid="ignore"):
            diff = b - a
            # numpy's interpolation, for the same last bits.
            value = np.where(t >= 0.5, b - diff * (1 - t), a + diff * t)
        out[i] = np.where(has, value, np.nan)
    return out[0] if single else out


def nanmedian_rows(x: FloatArray) -> FloatArray:
    """``np.nanmedian(x, axis=1)``; NaN for a row without a value."""
    x = np.asarray(x, dtype=float)
    missing = np.isnan(x)
    if not missing.any():
        if not x.shape[1]:
            return np.full(x.shape[0], np.nan)
        with np.errstate(invalid="ignore"):
            return np.asarray(np.median(x, axis=1))
    ordered = np.sort(x, axis=1)
    count = x.shape[1] - missing.sum(axis=1)
    rows = np.arange(x.shape[0])
    low = np.maximum((count - 1) // 2, 0)
    high = np.maximum(count // 2, 0)
    a, b = ordered[rows, low], ordered[rows, high]
    with np.errstate(invalid="ignore", over="ignore"):
        # np.median's middle value, or the mean of the two middle ones
        value = np.where(low == high, a, (a + b) / 2)
    return np.where(count > 0, value, np.nan)
