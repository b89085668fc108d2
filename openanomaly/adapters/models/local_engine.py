"""Models loaded in this process, each once, shared by every pipeline that names it.

Loaded models are kept in a least-recently-used cache bounded by memory: loading one that
does not fit unloads the models used longest ago.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections import OrderedDict
from typing import Any, Protocol, cast

from openanomaly.adapters.models.settings import ModelSettings
from openanomaly.domain.errors import FactoryError, ModelError, UnknownModel
from openanomaly.domain.forecast import ForecastRequest, QuantileForecast

log = logging.getLogger(__name__)


class Backend(Protocol):
    def forecast(self, request: ForecastRequest) -> QuantileForecast: ...


def _build(name: str, settings: ModelSettings, engine: LocalModelEngine) -> Backend:
    # Imported here so a backend's heavy dependencies load only when it is used.
    if settings.backend == "fracast":
        from openanomaly.adapters.models.fracast_backend import FracastBackend

        return FracastBackend(name, settings)
    if settings.backend == "chronos":
        from openanomaly.adapters.models.chronos_backend import ChronosBackend

        return ChronosBackend(name, settings)
    if settings.backend == "timesfm":
        from openanomaly.adapters.models.timesfm_backend import TimesFMBackend

        return TimesFMBackend(name, settings)
    if settings.backend == "tirex":
        from openanomaly.adapters.models.tirex_backend import TiRexBackend

        return TiRexBackend(name, settings)
    if settings.backend in ("autoets", "seasonal"):
        from openanomaly.adapters.models.statsforecast_backend import StatsForecastBackend

        return StatsForecastBackend(name, settings)
    if settings.backend == "ensemble":
        from openanomaly.adapters.models.ensemble import EnsembleBackend

        return EnsembleBackend(name, settings, engine.forecast)
    if settings.backend == "remote":
        from openanomaly.adapters.models.remote_engine import RemoteBackend

        return RemoteBackend(name, settings)
    if settings.backend == "custom":
        return _build_custom(name, settings)
    from openanomaly.adapters.models.seasonal_naive import SeasonalNaiveBackend

    return SeasonalNaiveBackend(name, settings)


def _build_custom(name: str, settings: ModelSettings) -> Backend:
    """Call the user's ``module.path:callable`` as ``callable(name, settings)``."""
    factory = settings.factory or ""
    where = f"model {name!r}: factory {factory!r}"
    module_name, _, attribute = factory.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise FactoryError(
            f"{where}: cannot import module {module_name!r} ({exc}); check the module path "
            f"and that it is installed or on PYTHONPATH"
        ) from exc
    except Exception as exc:
        raise FactoryError(
            f"{where}: importing module {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    build: Any = module
    for part in attribute.split("."):
        try:
            build = getattr(build, part)
        except AttributeError:
            raise FactoryError(
                f"{where}: module {module_name!r} has no attribute {attribute!r}"
            ) from None
    if not callable(build):
        raise FactoryError(f"{where}: {attribute!r} is a {type(build).__name__}, not callable")
    try:
        backend = build(name, settings)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(
            f"{where}: building the model failed: {type(exc).__name__}: {exc}"
        ) from exc
    if not callable(getattr(backend, "forecast", None)):
        raise FactoryError(
            f"{where}: returned a {type(backend).__name__} without a forecast(request) method"
        )
    return cast(Backend, backend)


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
    def __init__(self, models: dict[str, ModelSettings], cache_mb: float = 4096.0) -> None:
        self.models = dict(models)
        self.cache_bytes = int(cache_mb * 1024 * 1024)
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
                backend = _build(model, settings, self)
                size = parameter_bytes(backend)
                self._make_room(size)
                self._loaded[model] = (backend, size)
                log.info("model loaded", extra={
                    "model": model, "backend": settings.backend, "mb": round(size / 2**20, 1),
                    "seconds": round(time.perf_counter() - started, 3)})
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
