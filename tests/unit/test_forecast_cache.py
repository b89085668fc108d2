"""The benchmarks' forecast cache: a hit only for the same contexts, model and settings."""

import numpy as np

from openanomaly.adapters.models.forecast_cache import CachingEngine
from openanomaly.adapters.models.local_engine import LocalModelEngine
from openanomaly.adapters.models.settings import default_models
from openanomaly.domain.forecast import ForecastRequest


class Counting:
    """A real engine that counts the forecasts it computes."""

    def __init__(self):
        self.engine = LocalModelEngine(default_models())
        self.calls = 0

    def forecast(self, model, request):
        self.calls += 1
        return self.engine.forecast(model, request)


def request(seed, horizon=12, quantiles=(0.1, 0.5, 0.9)):
    rng = np.random.default_rng(seed)
    context = 10 + np.sin(np.arange(600) / 20.0)[None, :] + rng.normal(0, 0.1, (3, 600))
    context[1, :50] = np.nan  # padding and gaps are part of the key like any value
    return ForecastRequest(context, horizon, quantiles, 60.0)


def test_the_same_request_is_read_back_identically(tmp_path):
    inner = Counting()
    cache = CachingEngine(inner, tmp_path, {"seasonal_naive": "v1"})
    first = cache.forecast("seasonal_naive", request(0))
    again = CachingEngine(inner, tmp_path, {"seasonal_naive": "v1"}).forecast(
        "seasonal_naive", request(0))
    assert inner.calls == 1
    assert again.quantiles == first.quantiles
    np.testing.assert_array_equal(again.values, first.values)


def test_a_different_context_horizon_quantiles_or_setting_is_computed_again(tmp_path):
    inner = Counting()
    cache = CachingEngine(inner, tmp_path, {"seasonal_naive": "v1"})
    cache.forecast("seasonal_naive", request(0))
    changed = request(0)
    changed.context[2, -1] += 1e-9
    cache.forecast("seasonal_naive", changed)
    cache.forecast("seasonal_naive", request(0, horizon=13))
    cache.forecast("seasonal_naive", request(0, quantiles=(0.2, 0.5, 0.8)))
    CachingEngine(inner, tmp_path, {"seasonal_naive": "v2"}).forecast(
        "seasonal_naive", request(0))
    assert inner.calls == 5
    assert cache.hits == 0 and cache.misses == 4


def test_an_unreadable_entry_is_computed_again(tmp_path):
    inner = Counting()
    cache = CachingEngine(inner, tmp_path, {})
    cache.forecast("seasonal_naive", request(1))
    (entry,) = tmp_path.glob("*.npy")
    entry.write_bytes(b"not an array")
    found = cache.forecast("seasonal_naive", request(1))
    assert inner.calls == 2 and found.values.shape == (3, 12, 3)
