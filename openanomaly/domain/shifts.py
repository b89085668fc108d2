"""Re-anchoring a context after a confirmed level shift.

After a level shift most of the context still shows the old level, and a model keeps
pulling its forecast back toward it: the new, stable level then alarms point after point
for hours. When the newest points (at least ``confirm`` of them) all sit on one side of
the level just before them, by more than ``k`` noise levels, the shift is confirmed and
everything before it is moved by the jump, so the model forecasts from the new level.
Shifts older than ``scan`` points are left alone: by then the model has seen enough of
the new level.
"""

from __future__ import annotations

import warnings

import numpy as np

from openanomaly.domain.scoring import noise_level
from openanomaly.domain.series import FloatArray


def reanchor(contexts: FloatArray, confirm: int = 12, k: float = 6.0,
             scan: int = 48) -> FloatArray:
    """``contexts`` (n, c) with the part before a confirmed shift moved to the new level."""
    n, c = contexts.shape
    out = contexts.copy()
    if c < confirm * 2 + 2:
        return out
    noise = np.nan_to_num(noise_level(contexts), nan=0.0)
    margin = k * noise
    split = np.zeros(n, dtype=np.int64)
    jump = np.zeros(n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows: no shift
        for age in range(confirm, min(scan, c - confirm) + 1):
            after = contexts[:, c - age:]
            before_level = np.nanmedian(contexts[:, c - age - confirm:c - age], axis=1)
            step = np.nanmedian(after, axis=1) - before_level
            above = np.nanmin(after, axis=1) > before_level + margin
            below = np.nanmax(after, axis=1) < before_level - margin
            found = (above | below) & (noise > 0) & np.isfinite(step)
            # The oldest confirming split is where the level changed.
            split = np.where(found, c - age, split)
            jump = np.where(found, step, jump)
    for row in np.flatnonzero(split):
        out[row, :split[row]] += jump[row]
    return out
