"""Batched quantile forecasts: what a model is asked and what it answers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from openanomaly.domain.errors import ModelError
from openanomaly.domain.series import FloatArray


@dataclass(frozen=True)
class ForecastRequest:
    """Contexts of a batch of series, oldest step first, all ending at the forecast origin.

    ``context`` is (n_series, n_steps) with NaN in gaps and left padding: NaN is the mask,
    and each backend turns it into what its model takes. ``step_seconds`` lets statistical
    models find calendar seasons.
    """

    context: FloatArray
    horizon: int
    quantiles: tuple[float, ...]
    step_seconds: float

    def __post_init__(self) -> None:
        if self.context.ndim != 2:
            raise ValueError(f"context must be 2-D (series, steps), got {self.context.shape}")
        if self.horizon < 1:
            raise ValueError(f"horizon must be at least 1 step, got {self.horizon}")
        if not self.quantiles or list(self.quantiles) != sorted(set(self.quantiles)):
            raise ValueError(f"quantiles must be ascending and distinct: {self.quantiles}")


@dataclass(frozen=True)
class QuantileForecast:
    """values[i, h, q]: series i, h+1 steps after the origin, quantile ``quantiles[q]``."""

    quantiles: tuple[float, ...]
    values: FloatArray

    def at(self, quantile: float) -> FloatArray:
        """The (n_series, horizon) forecast of one quantile, which must be present."""
        for index, level in enumerate(self.quantiles):
            if abs(level - quantile) < 1e-9:
                return self.values[:, :, index]
        raise KeyError(f"quantile {quantile} not in forecast {self.quantiles}")


def interpolate_quantiles(
    native_levels: Sequence[float], native: FloatArray, wanted: Sequence[float], model: str
) -> QuantileForecast:
    """Map a model's native quantile levels to the requested ones by linear interpolation.

    Levels outside the model's range are refused rather than invented.
    """
    levels = np.asarray(native_levels, dtype=np.float64)
    low, high = float(levels[0]), float(levels[-1])
    outside = [q for q in wanted if q < low - 1e-9 or q > high + 1e-9]
    if outside:
        raise ModelError(
            f"model {model!r} forecasts quantiles {low:g}..{high:g}; the pipeline asks for "
            f"{outside}. Choose band quantiles inside that range."
        )
    # Sort along the quantile axis so crossing quantiles from a model never reach users.
    ordered = np.sort(native, axis=-1)
    out = np.empty((*native.shape[:-1], len(wanted)), dtype=np.float64)
    for index, quantile in enumerate(wanted):
        upper = int(np.clip(np.searchsorted(levels, quantile), 1, levels.size - 1))
        lower = upper - 1
        weight = (quantile - levels[lower]) / (levels[upper] - levels[lower])
        weight = float(np.clip(weight, 0.0, 1.0))
        out[..., index] = (1 - weight) * ordered[..., lower] + weight * ordered[..., upper]
    return QuantileForecast(tuple(float(q) for q in wanted), out)
