"""A model whose forecasts wait until the test lets them through: a slow model on demand,
for the model server's time limit.

Configure it as ``backend: custom`` with ``factory: tests.gated_model:gated``. A forecast
records the number of series it got in ``CALLS[name]``, sets ``ENTERED[name]``, waits for
``GATES[name]`` and then answers the last observed value of each series at every step and
quantile.
"""

from __future__ import annotations

import threading

import numpy as np

from openanomaly.adapters.models.settings import CustomSettings
from openanomaly.domain.forecast import ForecastRequest, QuantileForecast

GATES: dict[str, threading.Event] = {}
ENTERED: dict[str, threading.Event] = {}
CALLS: dict[str, list[int]] = {}
# Longest a forecast waits for its gate, so that a failed test cannot hang a thread.
MAX_WAIT_S = 60.0


class GatedModel:
    def __init__(self, name: str) -> None:
        self.name = name

    def forecast(self, request: ForecastRequest) -> QuantileForecast:
        CALLS[self.name].append(int(request.context.shape[0]))
        ENTERED[self.name].set()
        if not GATES[self.name].wait(MAX_WAIT_S):
            raise RuntimeError(f"the gate of {self.name!r} stayed closed for {MAX_WAIT_S} s")
        last = np.array([row[np.isfinite(row)][-1] for row in request.context])
        values = np.broadcast_to(last[:, None, None],
                                 (len(last), request.horizon, len(request.quantiles)))
        return QuantileForecast(request.quantiles, values.copy())


def gated(name: str, settings: CustomSettings) -> GatedModel:
    GATES.setdefault(name, threading.Event())
    ENTERED.setdefault(name, threading.Event())
    CALLS.setdefault(name, [])
    return GatedModel(name)
