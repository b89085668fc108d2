"""``backend: custom``: a model built by the user's own ``module.path:callable``."""

from __future__ import annotations

import importlib
from typing import Any, cast

from openanomaly.adapters.models.registry import Backend
from openanomaly.adapters.models.settings import CustomSettings
from openanomaly.domain.errors import FactoryError, ModelError


def build_custom(name: str, settings: CustomSettings) -> Backend:
    """Call the user's ``module.path:callable`` as ``callable(name, settings)``."""
    factory = settings.factory
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
