"""Statistical references through ``statsforecast``: AutoETS, and MSTL (a seasonal
decomposition with an ETS trend) for long seasons such as a day of 1-minute steps."""

from __future__ import annotations

import numpy as np

from openanomaly.adapters.models.seasonal_naive import forward_fill
from openanomaly.adapters.models.settings import StatsForecastSettings
from openanomaly.domain.forecast import ForecastRequest, QuantileForecast

# ETS estimates one parameter per seasonal step; beyond this, seasonality goes to MSTL.
MAX_ETS_SEASON = 24


class StatsForecastBackend:
    # Rows with fewer points since their first observation are left NaN.
    MIN_OBSERVED = 8

    def __init__(self, name: str, settings: StatsForecastSettings) -> None:
        from statsforecast import models  # here: loaded with the first model that uses it

        self.name = name
        self.settings = settings
        self.models = models

    def _model(self, season: int) -> object:
        models = self.models
        if self.settings.backend == "autoets":
            return models.AutoETS(season_length=season if 1 < season <= MAX_ETS_SEASON else 1)
        if season < 2:
            return models.AutoETS(season_length=1)
        return models.MSTL(season_length=season, trend_forecaster=models.AutoETS(model="ZZN"))

    def forecast(self, request: ForecastRequest) -> QuantileForecast:
        context = request.context
        if self.settings.max_context:
            context = context[:, -self.settings.max_context:]
        filled = forward_fill(context)
        season = max(round(self.settings.season / request.step_seconds), 1)
        level_of = {q: _level(q) for q in request.quantiles}
        levels = sorted({level for level in level_of.values() if level})
        out = np.full((context.shape[0], request.horizon, len(request.quantiles)), np.nan)
        for row, series in enumerate(filled):
            history = series[np.isfinite(series)]
            if history.size < self.MIN_OBSERVED:
                continue
            usable_season = season if history.size >= 2 * season else 1
            result = self._model(usable_season).forecast(  # type: ignore[attr-defined]
                y=history, h=request.horizon, level=levels or None)
            for index, quantile in enumerate(request.quantiles):
                level = level_of[quantile]
                if not level:
                    out[row, :, index] = result["mean"]
                else:
                    side = "lo" if quantile < 0.5 else "hi"
                    out[row, :, index] = result[f"{side}-{level}"]
        return QuantileForecast(tuple(request.quantiles), out)


def _level(quantile: float) -> int | float:
    """The central interval (in %) whose edge is this quantile, named as statsforecast
    names its columns: 0.1 and 0.9 are the edges of the 80% interval."""
    level = round(abs(2 * quantile - 1) * 100, 6)
    return int(level) if level == int(level) else level
