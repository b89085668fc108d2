"""Foundation-model and statistical backends with their real code.

Hub weights are out of reach here, so each foundation model is a tiny randomly initialised
model built from its package's own config class, saved to a folder and loaded back through
the same from_pretrained path a real checkpoint takes.
"""

import numpy as np
import pytest

from openanomaly.adapters.models import random_init
from openanomaly.adapters.models.local_engine import LocalModelEngine
from openanomaly.adapters.models.settings import (
    ChronosSettings,
    EnsembleSettings,
    FracastSettings,
    SeasonalNaiveSettings,
    StatsForecastSettings,
    TimesFMSettings,
    parse_model_settings,
)
from openanomaly.domain.errors import ModelError
from openanomaly.domain.forecast import ForecastRequest

pytest.importorskip("chronos")
QUANTILES = (0.1, 0.5, 0.9)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoints")
    kinds = ("chronos-bolt", "chronos-2", "chronos-t5", "tirex")
    return {kind: str(random_init.build(kind, root / kind)) for kind in kinds}


def series(n, seed, period=48):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 30 + 8 * np.sin(2 * np.pi * t / period) + rng.normal(0, 0.5, n)


def ragged_batch():
    rows = [series(400, 1), series(250, 2), series(600, 3), series(90, 4), series(500, 5)]
    rows[2][100:160] = np.nan  # a gap
    width = max(r.size for r in rows)
    batch = np.full((len(rows), width), np.nan)
    for i, row in enumerate(rows):
        batch[i, width - row.size:] = row
    return rows, batch


def request(context, horizon=10):
    return ForecastRequest(np.atleast_2d(context), horizon, QUANTILES, 60.0)


@pytest.mark.parametrize(("kind", "backend"), [
    ("chronos-bolt", "chronos"), ("chronos-2", "chronos"), ("chronos-t5", "chronos"),
    ("tirex", "tirex"),
])
def test_foundation_models_shapes_order_determinism_and_batch_independence(
    checkpoints, kind, backend
):
    engine = LocalModelEngine({"m": parse_model_settings({
        "backend": backend, "source": checkpoints[kind], "batch_size": 2, "max_context": 512})})
    rows, batch = ragged_batch()
    forecast = engine.forecast("m", request(batch)).values
    assert forecast.shape == (5, 10, 3) and np.isfinite(forecast).all()
    assert np.all(np.diff(forecast, axis=2) >= 0)
    np.testing.assert_array_equal(forecast, engine.forecast("m", request(batch)).values)
    for i, row in enumerate(rows):
        # One at a time, unpadded, and cut to the model's context by hand.
        alone = engine.forecast("m", request(row[-512:])).values[0]
        np.testing.assert_allclose(forecast[i], alone, rtol=1e-4, atol=1e-4)


def test_chronos_long_horizon_beyond_the_native_prediction_length(checkpoints):
    engine = LocalModelEngine({"m": ChronosSettings(source=checkpoints["chronos-bolt"])})
    forecast = engine.forecast("m", request(series(300, 6), horizon=100)).values
    assert forecast.shape == (1, 100, 3) and np.isfinite(forecast).all()


def test_chronos_needs_a_source_and_an_unreachable_hub_id_is_a_clear_error(monkeypatch):
    engine = LocalModelEngine({"none": ChronosSettings(),
                               "hub": ChronosSettings(source="amazon/chronos-bolt-tiny")})
    with pytest.raises(ModelError, match="set source"):
        engine.forecast("none", request(series(100, 1)))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelError, match="cannot load 'amazon/chronos-bolt-tiny'"):
        engine.forecast("hub", request(series(100, 1)))


@pytest.mark.parametrize("backend", ["autoets", "seasonal"])
def test_statsforecast_backends(backend):
    engine = LocalModelEngine({"m": StatsForecastSettings(backend=backend, season="48m")})
    context = np.stack([series(480, 7), series(480, 8)])
    context[1, :475] = np.nan  # too little history: NaN, not an error
    forecast = engine.forecast("m", request(context, horizon=48)).values
    assert forecast.shape == (2, 48, 3) and np.isnan(forecast[1]).all()
    assert np.all(np.diff(forecast[0], axis=1) > 0)
    if backend == "seasonal":
        truth = 30 + 8 * np.sin(2 * np.pi * np.arange(480, 528) / 48)
        assert np.abs(forecast[0, :, 1] - truth).max() < 2.5


def test_ensemble_takes_the_median_of_its_members_level_by_level():
    members = {
        "naive": SeasonalNaiveSettings(season="48m"),
        "ets": StatsForecastSettings(backend="autoets"),
        "fracast": FracastSettings(),
    }
    engine = LocalModelEngine({**members, "ens": EnsembleSettings(members=list(members))})
    context = request(np.stack([series(500, 9), series(500, 10)]))
    expected = np.median(np.stack([engine.forecast(m, context).values for m in members]), axis=0)
    np.testing.assert_allclose(engine.forecast("ens", context).values, expected)


def test_models_beyond_the_memory_bound_are_unloaded_least_recently_used_first(checkpoints):
    engine = LocalModelEngine({
        "a": ChronosSettings(source=checkpoints["chronos-bolt"]),
        "b": ChronosSettings(source=checkpoints["chronos-2"]),
        "naive": SeasonalNaiveSettings(),
    }, cache_mb=0.45)  # bolt: 0.32 MB, chronos-2: 0.16 MB
    engine.get("a")
    engine.get("naive")
    engine.get("b")  # does not fit beside "a"
    assert engine.loaded() == ["naive", "b"]


class RecordedTelemetry:
    def __init__(self):
        self.loads, self.caches = [], []

    def observe_model_load(self, model, seconds):
        self.loads.append((model, seconds))

    def observe_model_cache(self, models, size_bytes):
        self.caches.append((models, size_bytes))


def test_the_engine_reports_load_times_and_what_its_cache_holds(checkpoints):
    telemetry = RecordedTelemetry()
    engine = LocalModelEngine({
        "a": ChronosSettings(source=checkpoints["chronos-bolt"]),
        "b": ChronosSettings(source=checkpoints["chronos-2"]),
    }, cache_mb=0.45, telemetry=telemetry)
    engine.get("a")
    engine.get("a")  # cached: no second load
    engine.get("b")  # unloads "a"
    assert [model for model, _ in telemetry.loads] == ["a", "b"]
    assert all(seconds > 0 for _, seconds in telemetry.loads)
    (one_a, bytes_a), (one_b, bytes_b) = telemetry.caches
    assert one_a == one_b == 1 and bytes_a > bytes_b > 0  # bolt is the larger
    engine.close()
    assert telemetry.caches[-1] == (0, 0)


@pytest.mark.slow
def test_timesfm_2p5_random_checkpoint_through_from_pretrained(tmp_path):
    pytest.importorskip("timesfm")
    # TimesFM 2.5 has a single size: a random 200M-parameter checkpoint (0.9 GB).
    path = random_init.build("timesfm-2.5", tmp_path / "timesfm")
    engine = LocalModelEngine({"t": TimesFMSettings(source=str(path), batch_size=4,
                                                    max_context=256)})
    rows, batch = ragged_batch()
    forecast = engine.forecast("t", request(batch)).values
    assert forecast.shape == (5, 10, 3) and np.isfinite(forecast).all()
    assert np.all(np.diff(forecast, axis=2) >= 0)
    np.testing.assert_array_equal(forecast, engine.forecast("t", request(batch)).values)
    alone = engine.forecast("t", request(rows[0][-256:])).values[0]
    np.testing.assert_allclose(forecast[0], alone, rtol=1e-4, atol=1e-4)
