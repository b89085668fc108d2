"""Concurrent clients against an engine: every client starts together and counts."""

import threading
import time

import numpy as np

from openanomaly.domain.forecast import ForecastRequest, QuantileForecast
from openanomaly.services.model_speed import measure_clients


class SlowEngine:
    """Takes 10 ms a request and remembers which threads called it."""

    def __init__(self):
        self.callers = set()
        self.lock = threading.Lock()

    def forecast(self, model: str, request: ForecastRequest) -> QuantileForecast:
        with self.lock:
            self.callers.add(threading.get_ident())
        time.sleep(0.01)
        n = request.context.shape[0]
        return QuantileForecast(request.quantiles,
                                np.zeros((n, request.horizon, len(request.quantiles))))


def test_every_client_sends_until_the_deadline_and_the_rate_counts_series():
    engine = SlowEngine()
    row = measure_clients(engine, "m", clients=3, series_per_request=5, context=16,
                          horizon=4, seconds=0.3)
    assert len(engine.callers) == 3
    # Three clients at about 10 ms a request for 0.3 s: far more than one request each.
    assert row.requests >= 3 * 10
    assert abs(row.series_per_s - row.requests * 5 / row.seconds) < 1e-9
    assert 0.3 <= row.seconds < 1.0 and row.latency_s >= 0.01
