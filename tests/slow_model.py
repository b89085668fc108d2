"""A deliberately slow model for tests that kill a worker in the middle of a run.

Configure it as ``backend: custom`` with ``factory: tests.slow_model:slow_seasonal_naive``.
Each forecast sleeps ``OPENANOMALY_TEST_MODEL_SLEEP`` seconds (default 4, read at every
call) and then answers exactly what the built-in seasonal naive model answers with the
same settings, so its output is deterministic and can be checked against a clean run.
"""

from __future__ import annotations

import os
import time

from openanomaly.adapters.models.seasonal_naive import SeasonalNaiveBackend
from openanomaly.adapters.models.settings import CustomSettings, SeasonalNaiveSettings
from openanomaly.domain.forecast import ForecastRequest, QuantileForecast

SLEEP_ENV = "OPENANOMALY_TEST_MODEL_SLEEP"
DEFAULT_SLEEP_S = 4.0


class SlowSeasonalNaive:
    def __init__(self, name: str, settings: CustomSettings) -> None:
        self.name = name
        self.inner = SeasonalNaiveBackend(name, SeasonalNaiveSettings(
            season=settings.season, max_context=settings.max_context))

    def forecast(self, request: ForecastRequest) -> QuantileForecast:
        time.sleep(float(os.environ.get(SLEEP_ENV, DEFAULT_SLEEP_S)))
        return self.inner.forecast(request)


def slow_seasonal_naive(name: str, settings: CustomSettings) -> SlowSeasonalNaive:
    return SlowSeasonalNaive(name, settings)
