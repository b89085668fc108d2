"""Every backend by name: its settings class, the optional packages it needs, and how to
build it.

A builder imports its backend's module only when a model of that backend is first built,
so heavy packages (torch, chronos, ...) load only in the processes that use them. Whether
those packages are installed can be checked without importing them (``check_available``).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from openanomaly.adapters.models.settings import (
    ChronosSettings,
    CustomSettings,
    EnsembleSettings,
    FracastSettings,
    ModelSettings,
    RemoteSettings,
    SeasonalNaiveSettings,
    StatsForecastSettings,
    TimesFMSettings,
    TiRexSettings,
)
from openanomaly.domain.errors import MissingExtra
from openanomaly.domain.forecast import ForecastRequest, QuantileForecast


class Backend(Protocol):
    def forecast(self, request: ForecastRequest) -> QuantileForecast: ...


# How a backend asks another configured model for a forecast (an ensemble, its members).
Forecaster = Callable[[str, ForecastRequest], QuantileForecast]
Builder = Callable[[str, Any, Forecaster], Backend]
B = TypeVar("B", bound=Builder)


@dataclass(frozen=True)
class BackendEntry:
    name: str
    settings: type[BaseModel]
    build: Builder
    extra: str | None  # the openanomaly extra that installs ``packages``
    packages: tuple[str, ...]  # imported before the builder runs

    @property
    def requirement(self) -> str:
        if self.extra:
            return f"the {self.extra} extra"
        return f"the {', '.join(self.packages)} package"

    @property
    def install(self) -> str:
        if self.extra:
            return f"pip install 'openanomaly[{self.extra}]'"
        return "pip install " + " ".join(_top_level(p) for p in self.packages)


BACKENDS: dict[str, BackendEntry] = {}


def register(name: str, settings: type[BaseModel], extra: str | None = None,
             packages: tuple[str, ...] = ()) -> Callable[[B], B]:
    """Record the decorated function as the builder of backend ``name``."""
    def add(builder: B) -> B:
        if name in BACKENDS:
            raise ValueError(f"backend {name!r} is registered twice")
        BACKENDS[name] = BackendEntry(name, settings, builder, extra, packages)
        return builder
    return add


def build_backend(name: str, settings: ModelSettings, forecast: Forecaster) -> Backend:
    """Build model ``name``; a package its backend needs that is missing is MissingExtra."""
    entry = BACKENDS[settings.backend]
    try:
        for package in entry.packages:
            importlib.import_module(package)
        return entry.build(name, settings, forecast)
    except ImportError as exc:
        raise MissingExtra(
            f"model {name!r} needs {entry.requirement}: {entry.install} ({exc})"
        ) from exc


def missing_extra(settings: ModelSettings) -> str | None:
    """What to install for this model's backend, found without importing its packages;
    None when everything it needs is installed."""
    entry = BACKENDS[settings.backend]
    absent = [package for package in entry.packages if not _installed(package)]
    if not absent:
        return None
    return (f"backend {entry.name} needs {entry.requirement} ({', '.join(absent)} not "
            f"installed): {entry.install}")


def check_available(models: Mapping[str, ModelSettings]) -> None:
    """Raise MissingExtra naming every configured model whose packages are not installed."""
    problems = [f"models.{name}: {problem}" for name, settings in sorted(models.items())
                if (problem := missing_extra(settings))]
    if problems:
        raise MissingExtra("\n".join(problems))


def _top_level(package: str) -> str:
    return package.partition(".")[0]


def _installed(package: str) -> bool:
    name = _top_level(package)
    try:
        return importlib.util.find_spec(name) is not None
    except ValueError:  # a module put in sys.modules by hand has no spec, yet is there
        return sys.modules.get(name) is not None


@register("fracast", FracastSettings, packages=("fracast",))
def _fracast(name: str, settings: FracastSettings, forecast: Forecaster) -> Backend:
    from openanomaly.adapters.models.fracast_backend import FracastBackend

    return FracastBackend(name, settings)


@register("chronos", ChronosSettings, extra="chronos", packages=("chronos", "torch"))
def _chronos(name: str, settings: ChronosSettings, forecast: Forecaster) -> Backend:
    from openanomaly.adapters.models.chronos_backend import ChronosBackend

    return ChronosBackend(name, settings)


@register("timesfm", TimesFMSettings, extra="timesfm", packages=("timesfm", "torch"))
def _timesfm(name: str, settings: TimesFMSettings, forecast: Forecaster) -> Backend:
    from openanomaly.adapters.models.timesfm_backend import TimesFMBackend

    return TimesFMBackend(name, settings)


@register("tirex", TiRexSettings, extra="tirex", packages=("tirex", "torch"))
def _tirex(name: str, settings: TiRexSettings, forecast: Forecaster) -> Backend:
    from openanomaly.adapters.models.tirex_backend import TiRexBackend

    return TiRexBackend(name, settings)


@register("autoets", StatsForecastSettings, extra="statsforecast", packages=("statsforecast",))
@register("seasonal", StatsForecastSettings, extra="statsforecast", packages=("statsforecast",))
def _statsforecast(name: str, settings: StatsForecastSettings, forecast: Forecaster) -> Backend:
    from openanomaly.adapters.models.statsforecast_backend import StatsForecastBackend

    return StatsForecastBackend(name, settings)


@register("seasonal_naive", SeasonalNaiveSettings)
def _seasonal_naive(name: str, settings: SeasonalNaiveSettings, forecast: Forecaster) -> Backend:
    from openanomaly.adapters.models.seasonal_naive import SeasonalNaiveBackend

    return SeasonalNaiveBackend(name, settings)


@register("ensemble", EnsembleSettings)
def _ensemble(name: str, settings: EnsembleSettings, forecast: Forecaster) -> Backend:
    from openanomaly.adapters.models.ensemble import EnsembleBackend

    return EnsembleBackend(name, settings, forecast)


@register("remote", RemoteSettings)
def _remote(name: str, settings: RemoteSettings, forecast: Forecaster) -> Backend:
    from openanomaly.adapters.models.remote_engine import RemoteBackend

    return RemoteBackend(name, settings)


@register("custom", CustomSettings)
def _custom(name: str, settings: CustomSettings, forecast: Forecaster) -> Backend:
    from openanomaly.adapters.models.custom_factory import build_custom

    return build_custom(name, settings)
