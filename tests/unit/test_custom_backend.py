"""``backend: custom``: a model built by the user's own ``module.path:callable``."""

import numpy as np
import pytest
from pydantic import ValidationError

from openanomaly.adapters.models.local_engine import LocalModelEngine
from openanomaly.adapters.models.settings import (
    CustomSettings,
    SeasonalNaiveSettings,
    parse_model_settings,
)
from openanomaly.config import load_config
from openanomaly.domain.errors import ConfigError, FactoryError, ModelError
from openanomaly.domain.forecast import ForecastRequest
from tests.slow_model import SLEEP_ENV, SlowSeasonalNaive

NOT_CALLABLE = 42


class NoForecast:
    def __init__(self, name, settings):
        self.name = name


def failing_factory(name, settings):
    raise RuntimeError("weights file is locked")


def request():
    t = np.arange(96, dtype=np.float64)
    context = np.stack([10 + np.sin(t / 4), 5 + np.cos(t / 6)])
    return ForecastRequest(context, 12, (0.1, 0.5, 0.9), 60.0)


def custom(factory, **extra):
    return CustomSettings(factory=factory, **extra)


def test_factory_builds_the_backend_used_by_the_engine(monkeypatch):
    monkeypatch.setenv(SLEEP_ENV, "0")
    engine = LocalModelEngine({
        "slow": custom("tests.slow_model:slow_seasonal_naive", season="12m"),
        "plain": SeasonalNaiveSettings(season="12m"),
    })
    backend = engine.get("slow")
    assert isinstance(backend, SlowSeasonalNaive)
    assert backend.name == "slow"
    assert backend.inner.settings.season == 720.0, "the factory gets the model's settings"
    got, expected = engine.forecast("slow", request()), engine.forecast("plain", request())
    assert got.quantiles == expected.quantiles
    np.testing.assert_array_equal(got.values, expected.values)
    assert engine.get("slow") is backend, "built once, then cached"


def test_the_sleep_comes_from_the_environment(monkeypatch):
    calls = []
    monkeypatch.setattr("tests.slow_model.time.sleep", calls.append)
    engine = LocalModelEngine({"slow": custom("tests.slow_model:slow_seasonal_naive")})
    monkeypatch.delenv(SLEEP_ENV, raising=False)
    engine.forecast("slow", request())
    monkeypatch.setenv(SLEEP_ENV, "0.25")
    engine.forecast("slow", request())
    assert calls == [4.0, 0.25]


def test_config_file_accepts_a_custom_model(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("models:\n  mine:\n    backend: custom\n"
                    "    factory: tests.slow_model:slow_seasonal_naive\n"
                    "pipelines:\n  - name: a\n    query: up\n    model: mine\n")
    config = load_config(path, environ={})
    assert config.models["mine"].factory == "tests.slow_model:slow_seasonal_naive"


@pytest.mark.parametrize(("settings", "expected"), [
    ({"backend": "custom"}, "custom.factory\n  Field required"),
    ({"backend": "custom", "factory": ""}, "factory must be written 'module.path:callable'"),
    ({"backend": "custom", "factory": "tests.slow_model"},
     "factory must be written 'module.path:callable', got 'tests.slow_model'"),
    ({"backend": "custom", "factory": ":slow_seasonal_naive"},
     "factory must be written 'module.path:callable'"),
    ({"backend": "seasonal_naive", "factory": "tests.slow_model:slow_seasonal_naive"},
     "seasonal_naive.factory\n  Extra inputs are not permitted"),
])
def test_settings_refuse_a_missing_or_misplaced_factory(settings, expected):
    with pytest.raises(ValidationError, match=r"factory") as caught:
        parse_model_settings(settings)
    assert expected in str(caught.value)


def test_config_error_names_the_model_key(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("models:\n  mine:\n    backend: custom\n")
    with pytest.raises(ConfigError, match=r"models\.mine\.factory: Field required"):
        load_config(path, environ={})


@pytest.mark.parametrize(("factory", "expected"), [
    ("tests.no_such_module:build",
     "model 'm': factory 'tests.no_such_module:build': cannot import module "
     "'tests.no_such_module'"),
    ("tests.slow_model:no_such_factory",
     "model 'm': factory 'tests.slow_model:no_such_factory': module 'tests.slow_model' has "
     "no attribute 'no_such_factory'"),
    ("tests.slow_model:SlowSeasonalNaive.nope",
     "module 'tests.slow_model' has no attribute 'SlowSeasonalNaive.nope'"),
    ("tests.unit.test_custom_backend:NOT_CALLABLE", "'NOT_CALLABLE' is a int, not callable"),
    ("tests.unit.test_custom_backend:NoForecast",
     "returned a NoForecast without a forecast(request) method"),
])
def test_a_wrong_factory_is_a_final_model_error_naming_it(factory, expected):
    engine = LocalModelEngine({"m": custom(factory)})
    with pytest.raises(FactoryError) as caught:
        engine.forecast("m", request())
    assert expected in str(caught.value)
    # A model error (the model server answers 422) that retrying cannot fix.
    assert isinstance(caught.value, ModelError) and isinstance(caught.value, ConfigError)
    assert engine.loaded() == []


def test_a_factory_that_raises_is_a_model_error_with_the_cause():
    engine = LocalModelEngine({"m": custom("tests.unit.test_custom_backend:failing_factory")})
    with pytest.raises(ModelError) as caught:
        engine.get("m")
    assert not isinstance(caught.value, ConfigError), "may be transient: retried"
    assert ("model 'm': factory 'tests.unit.test_custom_backend:failing_factory': building "
            "the model failed: RuntimeError: weights file is locked") in str(caught.value)
