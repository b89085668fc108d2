"""The run and backfill services against an in-memory TSDB and the real seasonal naive model."""

import numpy as np
import pytest

from openanomaly.adapters.models.local_engine import LocalModelEngine
from openanomaly.adapters.models.settings import SeasonalNaiveSettings
from openanomaly.domain.errors import TooManySeries, UnknownModel
from openanomaly.domain.pipeline import PipelineSpec
from openanomaly.domain.series import Series
from openanomaly.services.backfill import backfill, backfill_slots
from openanomaly.services.runs import run_anomaly_check, run_forecast, run_pipeline

from .fakes import FakeTSDB

STEP = 60_000
# The last point, T0 + (N - 1) steps, lies on the specs' 5-minute schedule grid: a run's
# slot is a scheduled slot.
T0 = 1_700_000_000_000 - 1_700_000_000_000 % 300_000 + STEP
N = 600
ENGINE = LocalModelEngine({"naive": SeasonalNaiveSettings(season="1h")})


def spec(**fields):
    base = {"name": "p", "query": "m", "model": "naive", "step": "1m", "context": "3h",
            "horizon": "30m", "schedule": "5m"}
    return PipelineSpec(**{**base, **fields})


def periodic(labels, n=N, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    values = 100 + 10 * np.sin(2 * np.pi * t / 60) + rng.normal(0, noise, n)
    return Series.of({"__name__": "m", **labels}, T0 + t * STEP, values)


def test_anomaly_check_writes_score_and_band_at_the_window_timestamps():
    tsdb = FakeTSDB([periodic({"job": "a"}, noise=0.5)])
    at = T0 + (N - 1) * STEP
    result = run_anomaly_check(spec(), at, tsdb, ENGINE)
    assert result.status == "ok" and result.series == 1
    window = [at - k * STEP for k in (4, 3, 2, 1, 0)]
    for metric in ("anomaly_score", "yhat", "yhat_lower", "yhat_upper"):
        (labels, samples), = tsdb.series_named(f"openanomaly_{metric}").items()
        assert sorted(samples) == window
        assert dict(labels)["job"] == "a" and dict(labels)["source_metric"] == "m"
    scores = np.array(list(tsdb.series_named("openanomaly_anomaly_score").popitem()[1].values()))
    assert np.all(scores < 1)  # a clean periodic series is not anomalous
    assert tsdb.write_calls == 1  # all outputs in one request


def test_spike_in_the_window_scores_above_one():
    source = periodic({}, noise=0.5)
    source.values[-2] += 60
    tsdb = FakeTSDB([source])
    result = run_anomaly_check(spec(), T0 + (N - 1) * STEP, tsdb, ENGINE)
    # Calibrated scores are compressed (log1p): 60 noise levels out is about 3.
    assert result.anomalous_points == 1 and result.max_score > 2.5


def test_runs_are_deterministic_and_rewrites_are_identical():
    tsdb = FakeTSDB([periodic({"i": "1"}, noise=1.0), periodic({"i": "2"}, noise=1.0, seed=1)])
    at = T0 + (N - 3) * STEP
    first = run_pipeline(spec(mode="both"), at, tsdb, ENGINE)
    second = run_pipeline(spec(mode="both"), at, tsdb, ENGINE)  # the fake refuses changed values
    assert first.samples_written == second.samples_written > 0
    assert second.status == "ok"


def test_forecast_writes_every_quantile_ahead_once_per_timestamp():
    tsdb = FakeTSDB([periodic({})])
    at = T0 + (N - 1) * STEP
    run_forecast(spec(), at, tsdb, ENGINE)
    run_forecast(spec(), at + 5 * STEP, tsdb, ENGINE)
    written = tsdb.series_named("openanomaly_forecast")
    assert sorted(dict(k)["quantile"] for k in written) == [
        "0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9"]
    median = next(v for k, v in written.items() if dict(k)["quantile"] == "0.5")
    # Each run writes the last 5 steps of its 30-step horizon: together a contiguous run.
    assert sorted(median) == [at + k * STEP for k in range(26, 36)]
    assert not tsdb.series_named("openanomaly_anomaly_score")


def test_empty_result_writes_nothing():
    tsdb = FakeTSDB([])
    result = run_anomaly_check(spec(query="absent"), T0 + N * STEP, tsdb, ENGINE)
    assert result.status == "no_data" and tsdb.write_calls == 0


def test_too_many_series_is_an_error_and_writes_nothing():
    tsdb = FakeTSDB([periodic({"i": str(i)}) for i in range(3)])
    with pytest.raises(TooManySeries, match="3 series, more than max_series=2"):
        run_anomaly_check(spec(max_series=2), T0 + (N - 1) * STEP, tsdb, ENGINE)
    assert tsdb.write_calls == 0


def test_every_read_of_a_run_tells_the_database_its_max_series():
    # The adapter derives the largest answer it reads from it, before decoding any.
    tsdb = FakeTSDB([periodic({"i": "1"})])
    run_anomaly_check(spec(max_series=7), T0 + (N - 1) * STEP, tsdb, ENGINE)
    assert {kind for kind, _, _ in tsdb.read_backs} == {"score_stats"}
    assert len(tsdb.series_bounds) == 2 and set(tsdb.series_bounds) == {7}


def test_all_nan_series_is_skipped_and_others_still_scored():
    dead = Series.of({"__name__": "m", "i": "dead"}, T0 + np.arange(N) * STEP, np.full(N, np.nan))
    tsdb = FakeTSDB([dead, periodic({"i": "live"})])
    result = run_anomaly_check(spec(), T0 + (N - 1) * STEP, tsdb, ENGINE)
    assert result.series == 1  # Prometheus returns no points for an all-NaN series
    sparse = periodic({"i": "sparse"})
    sparse.values[:-3] = np.nan  # history too short to forecast
    tsdb = FakeTSDB([sparse, periodic({"i": "live"})])
    result = run_anomaly_check(spec(), T0 + (N - 1) * STEP, tsdb, ENGINE)
    assert (result.series, result.skipped) == (2, 1)
    labels = [dict(k)["i"] for k in tsdb.series_named("openanomaly_anomaly_score")]
    assert labels == ["live"]


def test_constant_series_scores_zero_not_nan():
    flat = Series.of({"__name__": "m"}, T0 + np.arange(N) * STEP, np.full(N, 7.0))
    tsdb = FakeTSDB([flat])
    run_anomaly_check(spec(), T0 + (N - 1) * STEP, tsdb, ENGINE)
    scores = list(tsdb.series_named("openanomaly_anomaly_score").popitem()[1].values())
    assert scores == [0.0] * 5


def test_unknown_model_is_a_clear_error():
    tsdb = FakeTSDB([periodic({})])
    with pytest.raises(UnknownModel, match="unknown model 'nope'; configured models: naive"):
        run_anomaly_check(spec(model="nope"), T0 + (N - 1) * STEP, tsdb, ENGINE)


def test_backfill_writes_the_same_samples_as_live_runs_of_each_slot():
    sources = [periodic({"i": "1"}, noise=1.0), periodic({"i": "2"}, noise=2.0, seed=3)]
    start, end = T0 + 200 * STEP, T0 + 330 * STEP
    replayed = FakeTSDB(sources)
    progress = []
    result = backfill(spec(), start, end, replayed, ENGINE,
                      progress=lambda done, total: progress.append((done, total)),
                      slots_per_request=5)
    slots = backfill_slots(spec(), start, end)
    assert progress[-1] == (len(slots), len(slots)) and len(progress) > 1
    live = FakeTSDB(sources)
    for slot in slots:
        run_anomaly_check(spec(), slot, live, ENGINE)
    assert replayed.written == live.written
    assert result.scored_points == 2 * 5 * len(slots)
    # The source and the raw scores stored before the range are each fetched once.
    assert [q[0] for q in replayed.queries] == ["m"]
    assert replayed.read_backs == [("read_written", "openanomaly_raw_score", "p")]


def test_a_series_whose_raw_scores_are_usually_large_is_judged_against_them():
    source = periodic({}, noise=0.5)
    source.values[-2] += 60
    at = T0 + (N - 1) * STEP
    quiet = FakeTSDB([source])
    assert run_anomaly_check(spec(), at, quiet, ENGINE).anomalous_points == 1
    (key, _), = quiet.series_named("openanomaly_raw_score").items()
    raw_at_spike = quiet.written[key][at - STEP]

    # The same data, after a day in which this series' raw scores were as large as the
    # spike's: the spike is ordinary for it, and the written band widens to match.
    noisy = FakeTSDB([source])
    before = T0 + (N - 5) * STEP
    times = np.arange(before - 1440 * STEP, before, STEP)
    noisy.write([Series(dict(key), times, np.full(times.size, raw_at_spike * 1.5))])
    result = run_anomaly_check(spec(), at, noisy, ENGINE)
    assert result.anomalous_points == 0
    assert noisy.read_backs == [("score_stats", "openanomaly_raw_score", "p")]
    width = {}
    for tsdb, name in ((quiet, "quiet"), (noisy, "noisy")):
        lower = tsdb.series_named("openanomaly_yhat_lower").popitem()[1][at]
        upper = tsdb.series_named("openanomaly_yhat_upper").popitem()[1][at]
        width[name] = upper - lower
    assert width["noisy"] > 2 * width["quiet"]
