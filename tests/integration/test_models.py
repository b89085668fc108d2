"""The model backends with their real code: Fracast-0's bundled weights and seasonal naive."""

import threading

import numpy as np
import pytest

from openanomaly.adapters.models.local_engine import LocalModelEngine
from openanomaly.adapters.models.settings import FracastSettings, default_models
from openanomaly.domain.errors import ModelError
from openanomaly.domain.forecast import ForecastRequest

QUANTILES = (0.1, 0.5, 0.9)


@pytest.fixture(scope="module")
def engine():
    return LocalModelEngine(default_models())


def daily(n, seed, period=288, noise=1.0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 50 + 20 * np.sin(2 * np.pi * t / period) + rng.normal(0, noise, n)


def request(context, horizon=12, quantiles=QUANTILES):
    return ForecastRequest(np.atleast_2d(context), horizon, quantiles, 300.0)


def test_fracast_shapes_order_and_accuracy(engine):
    context = np.stack([daily(1500, seed) for seed in range(3)])
    forecast = engine.forecast("fracast", request(context))
    assert forecast.values.shape == (3, 12, 3)
    assert np.all(np.diff(forecast.values, axis=2) >= 0)  # quantiles never cross
    truth = 50 + 20 * np.sin(2 * np.pi * np.arange(1500, 1512) / 288)
    assert np.abs(forecast.at(0.5) - truth).max() < 5  # it follows the daily cycle


def test_fracast_is_deterministic_and_independent_of_batching_padding_and_length(engine):
    series = [daily(1500, 1), daily(900, 2), daily(3000, 3)]
    alone = [engine.forecast("fracast", request(s)).values[0] for s in series]
    width = max(s.size for s in series)
    padded = np.full((len(series), width), np.nan)
    for row, s in enumerate(series):
        padded[row, width - s.size:] = s  # ragged contexts, left-padded with NaN
    small_batches = LocalModelEngine({"f": FracastSettings(batch_size=2)})
    together = small_batches.forecast("f", request(padded)).values
    for row in range(len(series)):
        np.testing.assert_allclose(together[row], alone[row], rtol=1e-5, atol=1e-5)
    again = engine.forecast("fracast", request(padded)).values
    np.testing.assert_array_equal(again, engine.forecast("fracast", request(padded)).values)


def test_fracast_handles_gaps_and_reports_too_little_history_as_nan(engine):
    gappy = daily(1500, 4)
    gappy[700:760] = np.nan
    short = np.full(1500, np.nan)
    short[-5:] = 1.0
    forecast = engine.forecast("fracast", request(np.stack([gappy, short])))
    assert np.isfinite(forecast.values[0]).all()
    assert np.isnan(forecast.values[1]).all()


def test_fracast_long_horizon_rolls_forward_and_its_band_keeps_widening(engine):
    rng = np.random.default_rng(5)
    walk = 100 + np.cumsum(rng.normal(0, 1, 1500))
    context = np.stack([daily(1500, 5), walk])
    forecast = engine.forecast("fracast", request(context, horizon=100))
    assert forecast.values.shape == (2, 100, 3) and np.isfinite(forecast.values).all()
    # The median continues as the package rolls it forward, from its own median (compared
    # before the engine sorts crossing quantiles) ...
    backend = engine.get("fracast")
    levels = backend.native_quantiles
    rolled = backend.model.forecast_batch(context.astype(np.float32), horizon=100)
    ours = backend._predict(context, 100, levels)
    middle = levels.index(0.5)
    np.testing.assert_allclose(ours[:, :, middle], rolled[:, :, middle], rtol=1e-5)
    # ... but the band past the native block is never narrower than at its last step,
    # where the package's own continuation pinches it to a one-step band.
    native = backend.model.horizon
    width = forecast.at(0.9) - forecast.at(0.1)
    assert np.all(width[:, native:] >= width[:, native - 1:native] * (1 - 1e-6))
    package = rolled[:, :, -1] - rolled[:, :, 0]
    assert np.any(package[:, native] < package[:, native - 1])


def test_quantiles_outside_the_model_range_are_refused(engine):
    with pytest.raises(ModelError, match=r"0\.1\.\.0\.9"):
        engine.forecast("fracast", request(daily(500, 6), quantiles=(0.01, 0.5, 0.99)))


def test_seasonal_naive_repeats_the_last_season(engine):
    context = np.tile(np.arange(288.0), 3)[None, :]
    forecast = engine.forecast("seasonal_naive", request(context, horizon=300))
    np.testing.assert_allclose(forecast.at(0.5)[0], np.concatenate([np.arange(288.0),
                                                                     np.arange(12.0)]))


def test_models_load_once_even_under_concurrent_first_use():
    engine = LocalModelEngine(default_models())
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(engine.get("fracast")))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(backend) for backend in seen}) == 1


def test_bad_weights_folder_is_a_model_error(tmp_path):
    engine = LocalModelEngine({"f": FracastSettings(source=str(tmp_path))})
    with pytest.raises(ModelError, match="cannot load Fracast weights"):
        engine.forecast("f", request(daily(500, 7)))


def test_seasonal_naive_row_results_do_not_depend_on_batch_padding(engine):
    # 150 steps of 15 minutes is less than two daily seasons: naive, however it is batched.
    short, long = daily(150, 11, period=48), daily(3000, 12, period=48)
    padded = np.full((2, 3000), np.nan)
    padded[0, -150:], padded[1] = short, long
    together = engine.forecast("seasonal_naive", ForecastRequest(padded, 60, QUANTILES,
                                                                 900.0)).values
    alone = engine.forecast("seasonal_naive", ForecastRequest(short[None, :], 60, QUANTILES,
                                                              900.0)).values
    np.testing.assert_array_equal(together[0], alone[0])
