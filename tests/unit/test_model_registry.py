"""The backend registry and the per-backend settings it is keyed by."""

import dataclasses
import sys
from typing import get_args

import numpy as np
import pytest
from pydantic import ValidationError

from openanomaly.adapters.models.local_engine import LocalModelEngine
from openanomaly.adapters.models.registry import BACKENDS, check_available, missing_extra
from openanomaly.adapters.models.settings import (
    EnsembleSettings,
    FracastSettings,
    SeasonalNaiveSettings,
    backend_names,
    parse_model_settings,
)
from openanomaly.domain.errors import ConfigError, MissingExtra, is_retryable
from openanomaly.domain.forecast import ForecastRequest

# Backends whose optional package is simulated missing, with the extra that installs it.
OPTIONAL = [("autoets", "statsforecast", "statsforecast"), ("chronos", "chronos", "chronos"),
            ("timesfm", "timesfm", "timesfm"), ("tirex", "tirex", "tirex")]


def without(monkeypatch, package):
    # None in sys.modules is Python's own "not installed": import and find_spec both say so.
    monkeypatch.setitem(sys.modules, package, None)


def test_every_backend_name_has_one_entry_and_every_entry_a_settings_class():
    assert sorted(BACKENDS) == sorted(backend_names())
    for name, entry in BACKENDS.items():
        assert entry.name == name
        assert name in get_args(entry.settings.model_fields["backend"].annotation)


def test_settings_parse_into_the_class_of_their_backend():
    assert isinstance(parse_model_settings({"backend": "fracast"}), FracastSettings)
    ensemble = parse_model_settings({"backend": "ensemble", "members": ["a", "b"]})
    assert isinstance(ensemble, EnsembleSettings) and ensemble.combine == "median"
    assert SeasonalNaiveSettings(season="1h").season == 3600.0


def test_an_unknown_backend_is_refused_listing_the_known_ones():
    with pytest.raises(ValidationError) as caught:
        parse_model_settings({"backend": "prophet"})
    message = str(caught.value)
    assert "'prophet'" in message
    for name in backend_names():
        assert f"'{name}'" in message


@pytest.mark.parametrize(("settings", "field"), [
    ({"backend": "fracast", "members": ["a", "b"]}, "members"),
    ({"backend": "chronos", "factory": "a.b:c"}, "factory"),
    ({"backend": "seasonal_naive", "device": "cuda"}, "device"),
    ({"backend": "ensemble", "members": ["a", "b"], "url": "http://x"}, "url"),
    ({"backend": "remote", "url": "http://x", "season": "1d"}, "season"),
    ({"backend": "fracast", "dtype": "bfloat16"}, "dtype"),
    ({"backend": "timesfm", "dtype": "bfloat16"}, "dtype"),
    ({"backend": "tirex", "dtype": "float16"}, "dtype"),
])
def test_a_field_of_another_backend_is_refused_by_name(settings, field):
    with pytest.raises(ValidationError) as caught:
        parse_model_settings(settings)
    assert f"{settings['backend']}.{field}" in str(caught.value)


def test_chronos_alone_runs_in_reduced_precision():
    assert parse_model_settings({"backend": "chronos", "dtype": "bfloat16"}).dtype == "bfloat16"
    assert parse_model_settings({"backend": "fracast", "dtype": "float32"}).dtype == "float32"


@pytest.mark.parametrize(("settings", "expected"), [
    ({"backend": "ensemble", "members": ["fracast"]}, "an ensemble needs at least two members"),
    ({"backend": "remote", "url": "gpu-1:8501"}, "url must start with http:// or https://"),
    ({"backend": "custom", "factory": "module_only"}, "'module.path:callable'"),
])
def test_values_pydantic_cannot_check_by_type_are_checked_on_their_field(settings, expected):
    with pytest.raises(ValidationError, match=expected):
        parse_model_settings(settings)


def test_settings_are_frozen():
    with pytest.raises(ValidationError):
        FracastSettings().batch_size = 4


@pytest.mark.parametrize(("backend", "package", "extra"), OPTIONAL)
def test_a_missing_package_is_a_final_missing_extra_naming_the_pip_command(
    monkeypatch, backend, package, extra
):
    without(monkeypatch, package)
    engine = LocalModelEngine({"m": parse_model_settings({"backend": backend})})
    with pytest.raises(MissingExtra) as caught:
        engine.get("m")
    assert f"model 'm' needs the {extra} extra: pip install 'openanomaly[{extra}]'" in str(
        caught.value)
    assert not is_retryable(caught.value), "installing a package is not a retry"
    assert isinstance(caught.value, ConfigError)
    assert engine.loaded() == []


def test_an_import_error_while_building_is_a_missing_extra_too(monkeypatch):
    def needs_a_package(name, settings, forecast):
        raise ModuleNotFoundError("No module named 'statsmodels'")

    entry = dataclasses.replace(BACKENDS["autoets"], build=needs_a_package)
    monkeypatch.setitem(BACKENDS, "autoets", entry)
    engine = LocalModelEngine({"m": parse_model_settings({"backend": "autoets"})})
    with pytest.raises(MissingExtra, match=r"pip install 'openanomaly\[statsforecast\]' "
                                           r"\(No module named 'statsmodels'\)"):
        engine.get("m")


@pytest.mark.parametrize(("backend", "package", "extra"), OPTIONAL)
def test_missing_extras_are_found_without_importing(monkeypatch, backend, package, extra):
    settings = parse_model_settings({"backend": backend})
    assert missing_extra(settings) is None
    without(monkeypatch, package)
    assert missing_extra(settings) == (f"backend {backend} needs the {extra} extra ({package} "
                                       f"not installed): pip install 'openanomaly[{extra}]'")


def test_check_available_names_each_model_that_cannot_load(monkeypatch):
    models = {"ets": parse_model_settings({"backend": "autoets"}),
              "naive": SeasonalNaiveSettings(), "fracast": FracastSettings()}
    check_available(models)
    without(monkeypatch, "statsforecast")
    with pytest.raises(MissingExtra) as caught:
        check_available(models)
    assert str(caught.value) == ("models.ets: backend autoets needs the statsforecast extra "
                                 "(statsforecast not installed): pip install "
                                 "'openanomaly[statsforecast]'")


def test_built_in_backends_need_no_extra(monkeypatch):
    for package in ("statsforecast", "chronos", "timesfm", "tirex", "torch"):
        without(monkeypatch, package)
    engine = LocalModelEngine({"naive": SeasonalNaiveSettings(season="1h"),
                               "both": EnsembleSettings(members=["naive", "naive"])})
    request = ForecastRequest(np.sin(np.arange(300.0))[None, :], 6, (0.1, 0.5, 0.9), 60.0)
    assert engine.forecast("both", request).values.shape == (1, 6, 3)
