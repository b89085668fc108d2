"""Seasonal naive: the value one season ago, with quantiles from past seasonal changes."""

from __future__ import annotations

import numpy as np

from openanomaly.adapters.models.settings import SeasonalNaiveSettings
from openanomaly.domain.forecast import ForecastRequest, QuantileForecast
from openanomaly.domain.rowstats import nanmedian_rows, nanquantile_rows
from openanomaly.domain.series import FloatArray


def forward_fill(values: FloatArray) -> FloatArray:
    """Fill each gap with the last observed value of its row; leading gaps stay NaN."""
    observed = np.isfinite(values)
    index = np.where(observed, np.arange(values.shape[1]), 0)
    np.maximum.accumulate(index, axis=1, out=index)
    filled = np.take_along_axis(values, index, axis=1)
    leading = ~np.logical_or.accumulate(observed, axis=1)
    return np.where(leading, np.nan, filled)


class SeasonalNaiveBackend:
    def __init__(self, name: str, settings: SeasonalNaiveSettings) -> None:
        self.name = name
        self.settings = settings

    def forecast(self, request: ForecastRequest) -> QuantileForecast:
        context = request.context
        if self.settings.max_context:
            context = context[:, -self.settings.max_context:]
        filled = forward_fill(context)
        season = max(round(self.settings.season / request.step_seconds), 1)
        # Each row's own history decides, never the batch's padded width: without two full
        # seasons there is nothing seasonal to learn, so that row falls back to naive.
        observed = np.isfinite(context)
        history = np.where(observed.any(axis=1),
                           context.shape[1] - np.argmax(observed, axis=1), 0)
        values = self._predict(filled, 1, request)
        seasonal = (history >= 2 * season) & (season > 1)
        if seasonal.any():
            rows = np.flatnonzero(seasonal)
            values[rows] = self._predict(filled[rows], season, request)
        return QuantileForecast(tuple(request.quantiles), values)

    @staticmethod
    def _predict(filled: FloatArray, season: int, request: ForecastRequest) -> FloatArray:
        steps = filled.shape[1]
        horizon = np.arange(request.horizon)
        median = filled[:, steps - season + horizon % season]
        changes = filled[:, season:] - filled[:, :-season]
        levels = np.asarray(request.quantiles)
        # All-NaN rows give NaN, on purpose.
        spread = nanquantile_rows(changes, levels).T  # (series, quantiles)
        spread = spread - nanmedian_rows(changes)[:, None]
        # Uncertainty grows with the number of seasons the forecast reaches across.
        reach = np.sqrt(horizon // season + 1.0)
        return np.asarray(median[:, :, None] + reach[None, :, None] * spread[:, None, :])
