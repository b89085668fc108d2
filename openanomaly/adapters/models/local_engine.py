"""Models loaded in this process, each once, shared by every pipeline that names it."""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

from openanomaly.adapters.models.settings import ModelSettings
from openanomaly.domain.errors import UnknownModel
from openanomaly.domain.forecast import ForecastRequest, QuantileForecast

log = logging.getLogger(__name__)


class Backend(Protocol):
    def forecast(self, request: ForecastRequest) -> QuantileForecast: ...


def _build(name: str, settings: ModelSettings) -> Backend:
    # Imported here so a backend's heavy dependencies load only when it is used.
    if settings.backend == "fracast":
        from openanomaly.adapters.models.fracast_backend import FracastBackend

        return FracastBackend(name, settings)
    if settings.backend == "remote":
        from openanomaly.adapters.models.remote_engine import RemoteBackend

        return RemoteBackend(name, settings)
    from openanomaly.adapters.models.seasonal_naive import SeasonalNaiveBackend

    return SeasonalNaiveBackend(name, settings)


class LocalModelEngine:
    def __init__(self, models: dict[str, ModelSettings]) -> None:
        self.models = dict(models)
        self._loaded: dict[str, Backend] = {}
        self._lock = threading.Lock()

    def forecast(self, model: str, request: ForecastRequest) -> QuantileForecast:
        return self.get(model).forecast(request)

    def get(self, model: str) -> Backend:
        backend = self._loaded.get(model)
        if backend is not None:
            return backend
        settings = self.models.get(model)
        if settings is None:
            known = ", ".join(sorted(self.models)) or "none"
            raise UnknownModel(f"unknown model {model!r}; configured models: {known}")
        with self._lock:
            if model not in self._loaded:
                started = time.perf_counter()
                self._loaded[model] = _build(model, settings)
                log.info("model loaded", extra={"model": model, "backend": settings.backend,
                                                "seconds": round(time.perf_counter() - started, 3)})
            return self._loaded[model]
