"""The forecast shared by the backends that run a model on batches of series.

Rows with too few observed points get NaN (the model would refuse or invent them), the
others go to the model in calls of ``batch_size`` rows, and the model's quantile levels
are interpolated to the requested ones.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from openanomaly.domain.forecast import ForecastRequest, QuantileForecast, interpolate_quantiles
from openanomaly.domain.series import FloatArray


class BatchedQuantileBackend(ABC):
    # Fewest finite points in a row's context for the model to forecast it.
    MIN_OBSERVED: ClassVar[int]

    # Set by each backend once its model is loaded.
    max_context: int
    # None: the model forecasts whichever levels it is asked for (a sampling model).
    native_quantiles: tuple[float, ...] | None

    def __init__(self, name: str, batch_size: int) -> None:
        self.name = name
        self.batch_size = batch_size

    def forecast(self, request: ForecastRequest) -> QuantileForecast:
        context = request.context[:, -self.max_context:]
        levels = self.native_quantiles or tuple(request.quantiles)
        out = np.full((context.shape[0], request.horizon, len(levels)), np.nan)
        usable = np.flatnonzero(np.isfinite(context).sum(axis=1) >= self.MIN_OBSERVED)
        size = max(self._rows_per_call(usable.size), 1)
        for first in range(0, usable.size, size):
            rows = usable[first:first + size]
            out[rows] = self._predict(context[rows], request.horizon, levels)
        return interpolate_quantiles(levels, out, request.quantiles, self.name)

    def _rows_per_call(self, usable: int) -> int:
        return self.batch_size

    @abstractmethod
    def _predict(self, context: FloatArray, horizon: int,
                 levels: tuple[float, ...]) -> np.ndarray:
        """Quantiles of shape (rows, horizon, levels) for rows that all have enough points."""
