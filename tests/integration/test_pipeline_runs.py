"""The inference loop end to end against a real Prometheus and the real Fracast model."""

import time

import numpy as np
import pytest

from openanomaly.adapters.models.local_engine import LocalModelEngine
from openanomaly.adapters.models.settings import default_models
from openanomaly.adapters.tsdb.prometheus import PrometheusAdapter
from openanomaly.adapters.tsdb.settings import PrometheusSettings
from openanomaly.domain.errors import QueryRejected, TooManySeries, TSDBUnavailable
from openanomaly.domain.pipeline import PipelineSpec
from openanomaly.domain.series import Series
from openanomaly.services.runs import run_anomaly_check, run_forecast

STEP = 60_000


@pytest.fixture(scope="module")
def engine():
    return LocalModelEngine(default_models())


def history(metric, labels, end_ms, n=1500, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    values = 40 + 10 * np.sin(2 * np.pi * t / 120) + rng.normal(0, 0.5, n)
    return Series.of({"__name__": metric, **labels}, end_ms - (n - 1 - t) * STEP, values)


def spec(name, query, **fields):
    base = {"name": name, "query": query, "step": "1m", "context": "1d", "horizon": "30m",
            "schedule": "5m"}
    return PipelineSpec(**{**base, **fields})


def read(client, query, start, end):
    return {tuple(sorted(s.labels.items())): s for s in client.query_range(query, start, end, STEP)}


def slot_now():
    now = int(time.time() * 1000)
    return now - now % (5 * STEP)


def test_anomaly_check_writes_contract_series_read_back_with_promql(prom_client, engine, unique):
    metric = unique("requests")
    at = slot_now() - 10 * STEP
    sources = [history(metric, {"job": "api", "instance": f"i{i}"}, at, seed=i) for i in range(2)]
    prom_client.write(sources)
    result = run_anomaly_check(spec(unique("p"), metric), at, prom_client, engine)
    assert (result.status, result.series, result.skipped) == ("ok", 2, 0)

    window = [at - k * STEP for k in range(4, -1, -1)]
    scores = read(prom_client, f'openanomaly_anomaly_score{{source_metric="{metric}"}}',
                  window[0], at)
    assert len(scores) == 2  # one output series per source, no collisions
    for labels, series in scores.items():
        labels = dict(labels)
        assert labels["job"] == "api" and labels["instance"] in ("i0", "i1")
        assert labels["pipeline"] == unique("p") and labels["model"] == "fracast"
        assert series.timestamps_ms.tolist() == window
        assert np.all(series.values < 1)
    for metric_name in ("yhat", "yhat_lower", "yhat_upper"):
        assert len(read(prom_client, f'openanomaly_{metric_name}{{source_metric="{metric}"}}',
                        window[0], at)) == 2
    # The score is consistent with the band written beside it.
    key = f'{{source_metric="{metric}",instance="i0"}}'
    yhat = read(prom_client, f"openanomaly_yhat{key}", window[0], at).popitem()[1].values
    upper = read(prom_client, f"openanomaly_yhat_upper{key}", window[0], at).popitem()[1].values
    assert np.all(upper > yhat)
    # Re-running the slot rewrites identical samples, which Prometheus accepts.
    again = run_anomaly_check(spec(unique("p"), metric), at, prom_client, engine)
    assert again.status == "ok" and again.samples_written == result.samples_written


def test_forecast_is_written_at_future_timestamps(prom_client, engine, unique):
    metric = unique("load")
    at = slot_now()
    prom_client.write([history(metric, {"host": "h1"}, at)])
    run_forecast(spec(unique("p"), metric), at, prom_client, engine)
    expected = [at + k * STEP for k in range(26, 31)]
    found = read(prom_client, f'openanomaly_forecast{{source_metric="{metric}"}}',
                 expected[0], expected[-1])
    assert sorted(dict(k)["quantile"] for k in found) == [
        "0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9"]
    for series in found.values():
        assert series.timestamps_ms.tolist() == expected
        assert np.all((series.values > 20) & (series.values < 60))


def test_query_rejected_by_prometheus_surfaces_its_message(prom_client, engine):
    with pytest.raises(QueryRejected, match="parse error"):
        run_anomaly_check(spec("bad", "rate(x[5m]"), slot_now(), prom_client, engine)


def test_prometheus_down_fails_after_retries_and_writes_nothing(engine, unique):
    dead = PrometheusAdapter(PrometheusSettings(url="http://127.0.0.1:9", max_retries=2,
                                                retry_backoff=0.01))
    with pytest.raises(TSDBUnavailable, match=r"127\.0\.0\.1:9"):
        run_anomaly_check(spec("down", "up"), slot_now(), dead, engine)


def test_empty_result_and_all_nan_series(prom_client, engine, unique):
    assert run_anomaly_check(spec("empty", unique("absent")), slot_now(), prom_client,
                             engine).status == "no_data"
    metric = unique("nan")
    at = slot_now()
    dead = history(metric, {}, at)
    dead = Series(dead.labels, dead.timestamps_ms, np.full(dead.values.size, np.nan))
    prom_client.write([dead])
    result = run_anomaly_check(spec("nan", metric), at, prom_client, engine)
    # Prometheus returns the NaN samples: no value in the window, so the series is stale
    # and nothing is written for it.
    assert result.stale == result.series == 1 and result.status == "stale"
    assert result.skipped == 0 and result.samples_written == 0


def test_constant_series_scores_finite_and_quiet(prom_client, engine, unique):
    metric = unique("flat")
    at = slot_now()
    source = history(metric, {}, at)
    flat = np.full(source.values.size, 3.0)
    prom_client.write([Series(source.labels, source.timestamps_ms, flat)])
    run_anomaly_check(spec("flat", metric), at, prom_client, engine)
    scores = read(prom_client, f'openanomaly_anomaly_score{{source_metric="{metric}"}}',
                  at - 4 * STEP, at)
    (series,) = scores.values()
    assert series.timestamps_ms.size == 5
    assert np.all(np.isfinite(series.values)) and np.all(series.values < 0.1)


def test_max_series_exceeded_writes_nothing(prom_client, engine, unique):
    metric = unique("many")
    at = slot_now()
    prom_client.write([history(metric, {"i": str(i)}, at, n=30) for i in range(3)])
    with pytest.raises(TooManySeries, match="returned 3 series, more than max_series=2"):
        run_anomaly_check(spec("many", metric, max_series=2), at, prom_client, engine)
    assert not read(prom_client, f'{{source_metric="{metric}"}}', at - 10 * STEP, at)


@pytest.mark.parametrize("calibration", [
    {"calibration_window": "2h", "suppression_window": "30m"},
    # Long enough for the tail fit: its quantiles and count are read back too.
    {"calibration_window": "6h", "suppression_window": "30m", "false_alarm_days": 0.5},
    # A suppression window longer than the history for most of the range: the young
    # history's expected peak comes from two of its quantiles and its count, read back too.
    {"calibration_window": "6h", "suppression_window": "6h"},
], ids=["quantile", "tail-fit", "young-history"])
def test_calibrated_backfill_equals_live_runs_that_read_history_from_prometheus(
        prom_client, engine, unique, calibration):
    # Live runs read the raw-score history back with quantile_over_time / max_over_time;
    # a backfill computes the same statistics in memory. Both must write the same scores.
    from openanomaly.services.backfill import backfill, backfill_slots

    metric = unique("calibrated")
    end = slot_now() - 10 * STEP
    source = history(metric, {"job": "api"}, end, n=900, seed=4)
    source.values[-30] += 25  # one spike inside the compared range
    source.values[-400:-390] = np.nan  # a gap: no raw score is written there
    prom_client.write([source.where(np.isfinite(source.values))])
    options = {"model": "seasonal_naive", "context": "3h", "scoring": calibration}
    start = end - 450 * STEP
    backfilled = spec(unique("bf"), metric, **options)
    backfill(backfilled, start, end, prom_client, engine)
    live = spec(unique("live"), metric, **options)
    slots = backfill_slots(live, start, end)
    for slot in slots:
        run_anomaly_check(live, slot, prom_client, engine)
    first = slots[0] - 4 * STEP
    for name in ("anomaly_score", "raw_score", "yhat_upper"):
        written = {}
        for which in (backfilled, live):
            found = read(prom_client, f'openanomaly_{name}{{pipeline="{which.name}"}}',
                         first, end)
            (series,) = found.values()
            written[which.name] = series
        a, b = written[backfilled.name], written[live.name]
        assert a.timestamps_ms.tolist() == b.timestamps_ms.tolist()
        np.testing.assert_allclose(a.values, b.values, rtol=1e-9, err_msg=name)
    scores = read(prom_client, f'openanomaly_anomaly_score{{pipeline="{live.name}"}}',
                  first, end).popitem()[1]
    raw = read(prom_client, f'openanomaly_raw_score{{pipeline="{live.name}"}}',
               first, end).popitem()[1]
    assert scores.values.max() > 1  # the spike alarms
    # The history was used: calibration or suppression changed some scores.
    assert np.any(np.abs(scores.values - np.log1p(raw.values)) > 1e-3)
