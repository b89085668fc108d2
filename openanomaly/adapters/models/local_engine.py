"""Models loaded in this process, each once, shared by every pipeline that names it.

Loaded models are kept in a least-recently-used cache bounded by memory: loading one that
does not fit unloads the models used longest ago.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Any

from openanomaly.adapters.models.registry import Backend, build_backend
from openanomaly.adapters.models.settings import ModelSettings
from openanomaly.domain.errors import UnknownModel
from openanomaly.domain.forecast import ForecastRequest, QuantileForecast
from openanomaly.ports import ModelTelemetry

log = logging.getLogger(__name__)


def parameter_bytes(backend: object) -> int:
    """Bytes held by the torch parameters a backend owns (0 for non-torch models)."""
    seen: set[int] = set()
    total = 0
    # getattr: a custom backend may have no __dict__ (__slots__, a module).
    for value in getattr(backend, "__dict__", {}).values():
        for module in _modules(value):
            for tensor in [*module.parameters(), *module.buffers()]:
                if id(tensor) not in seen:
                    seen.add(id(tensor))
                    total += tensor.numel() * tensor.element_size()
    return total


def _modules(value: Any) -> list[Any]:
    found = []
    for candidate in (value, getattr(value, "model", None), getattr(value, "core", None),
                      getattr(value, "head", None)):
        if candidate is not None and hasattr(candidate, "parameters") and hasattr(
                candidate, "buffers"):
            found.append(candidate)
    return found


class LocalModelEngine:
    def __init__(self, models: dict[str, ModelSettings], cache_mb: float = 4096.0,
                 telemetry: ModelTelemetry | None = None) -> None:
        self.models = dict(models)
        self.cache_bytes = int(cache_mb * 1024 * 1024)
        self.telemetry = telemetry
        """Told each model's load time and the cache's contents (self-monitoring)."""
        self._loaded: OrderedDict[str, tuple[Backend, int]] = OrderedDict()
        self._lock = threading.Lock()

    def forecast(self, model: str, request: ForecastRequest) -> QuantileForecast:
        return self.get(model).forecast(request)

    def loaded(self) -> list[str]:
        return list(self._loaded)

    def get(self, model: str) -> Backend:
        with self._lock:
            entry = self._loaded.get(model)
            if entry is not None:
                self._loaded.move_to_end(model)
                return entry[0]
        settings = self.models.get(model)
        if settings is None:
            known = ", ".join(sorted(self.models)) or "none"
            raise UnknownModel(f"unknown model {model!r}; configured models: {known}")
        with self._lock:
            # Loading under the lock: two threads asking for a new model load it once.
            if model not in self._loaded:
                started = time.perf_counter()
                backend = build_backend(model, settings, self.forecast)
                size = parameter_bytes(backend)
                self._make_room(size)
                self._loaded[model] = (backend, size)
                seconds = time.perf_counter() - started
                log.info("model loaded", extra={
                    "model": model, "backend": settings.backend, "mb": round(size / 2**20, 1),
                    "seconds": round(seconds, 3)})
                if self.telemetry is not None:
                    self.telemetry.observe_model_load(model, seconds)
                    self._report_cache()
            self._loaded.move_to_end(model)
            return self._loaded[model][0]

    def _make_room(self, incoming: int) -> None:
        used = sum(size for _, size in self._loaded.values())
        while self._loaded and used + incoming > self.cache_bytes:
            name, (_, size) = self._loaded.popitem(last=False)
            used -= size
            log.info("model unloaded to stay within the cache", extra={
                "model": name, "mb": round(size / 2**20, 1),
                "cache_mb": round(self.cache_bytes / 2**20)})

    def _report_cache(self) -> None:
        if self.telemetry is not None:
            self.telemetry.observe_model_cache(
                len(self._loaded), sum(size for _, size in self._loaded.values()))

    def close(self) -> None:
        """Unload every model; backends holding connections (remote) close them."""
        with self._lock:
            while self._loaded:
                _close(self._loaded.popitem()[1][0])
            self._report_cache()


def _close(backend: object) -> None:
    close = getattr(backend, "close", None)
    if callable(close):
        close()
