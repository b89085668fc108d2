"""A model made of other models: each member forecasts the same request and the members'
quantiles are combined level by level (median by default, or mean). The median of members
keeps one member's failure from dragging the band; a member that cannot forecast a series
(NaN) is left out of that series' combination."""

from __future__ import annotations

import warnings

import numpy as np

from openanomaly.adapters.models.registry import Forecaster
from openanomaly.adapters.models.settings import EnsembleSettings
from openanomaly.domain.forecast import ForecastRequest, QuantileForecast


class EnsembleBackend:
    def __init__(self, name: str, settings: EnsembleSettings, forecast: Forecaster) -> None:
        self.name = name
        self.settings = settings
        self._forecast = forecast

    def forecast(self, request: ForecastRequest) -> QuantileForecast:
        stacked = np.stack([self._forecast(member, request).values
                            for member in self.settings.members])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all members NaN: NaN, on purpose
            combined = (np.nanmedian(stacked, axis=0) if self.settings.combine == "median"
                        else np.nanmean(stacked, axis=0))
        # Combining level by level can cross quantiles only through NaN gaps; sort anyway.
        return QuantileForecast(tuple(request.quantiles), np.sort(combined, axis=-1))
