"""PrometheusAdapter against a real Prometheus 2.x started by the ``prometheus`` fixture."""

import logging
import math
import time

import httpx
import numpy as np
import pytest
from pydantic import ValidationError

from openanomaly.adapters.tsdb.local_prometheus import free_port
from openanomaly.adapters.tsdb.prometheus import PrometheusAdapter
from openanomaly.adapters.tsdb.settings import PrometheusSettings
from openanomaly.domain.errors import (
    DuplicateSamples,
    QueryRejected,
    ResponseTooLarge,
    TSDBUnavailable,
    WriteRejected,
)
from openanomaly.domain.series import Series

MINUTE = 60_000
DAY = 86_400_000
LOOKBACK = 5 * MINUTE  # Prometheus' default query lookback delta


def minute_now() -> int:
    now = int(time.time() * 1000)
    return now - now % MINUTE


def by_labels(series):
    return {tuple(sorted(s.labels.items())): s for s in series}


def test_history_days_in_the_past_reads_back_exactly(prom_client, unique):
    metric = unique("history")
    start = minute_now() - 3 * DAY  # far behind the head: goes through the OOO window
    timestamps = start + MINUTE * np.arange(180)
    written = [
        Series.of({"__name__": metric, "host": "a", "job": "api"}, timestamps,
                  np.sin(np.arange(180) / 7.0) * 100),
        Series.of({"__name__": metric, "host": "b", "job": "api"}, timestamps,
                  np.arange(180) * 0.25 - 3),
    ]
    prom_client.write(written)

    found = by_labels(prom_client.query_range(metric, int(timestamps[0]), int(timestamps[-1]),
                                              MINUTE))

    assert found.keys() == by_labels(written).keys()
    for key, series in by_labels(written).items():
        assert found[key].timestamps_ms.dtype == np.int64
        assert found[key].values.dtype == np.float64
        np.testing.assert_array_equal(found[key].timestamps_ms, series.timestamps_ms)
        np.testing.assert_array_equal(found[key].values, series.values)


def test_series_without_name_from_functions_are_returned(prom_client, unique):
    metric = unique("counter")
    end = minute_now() - 10 * MINUTE
    timestamps = end - MINUTE * np.arange(30)[::-1]
    prom_client.write([Series.of({"__name__": metric, "job": "x"}, timestamps,
                                 np.arange(30) * 60.0)])

    (rate,) = prom_client.query_range(f"rate({metric}[5m])", end - 10 * MINUTE, end, MINUTE)

    assert rate.labels == {"job": "x"}
    np.testing.assert_allclose(rate.values, 1.0)


def test_range_beyond_prometheus_point_limit_is_split_and_complete(prometheus, prom_client,
                                                                   unique):
    metric = unique("dense")
    step = 1000
    n = 12_500
    start = minute_now() - 2 * DAY
    end = start + (n - 1) * step
    prom_client.write([Series.of({"__name__": metric}, start + step * np.arange(n),
                                 np.arange(n, dtype=float))])
    # One request for this range is refused by Prometheus itself...
    direct = httpx.post(f"{prometheus.url}/api/v1/query_range",
                        data={"query": metric, "start": start / 1000, "end": end / 1000,
                              "step": "1"})
    assert direct.status_code == 400 and "11,000 points" in direct.text

    (series,) = prom_client.query_range(metric, start, end, step)  # ...the adapter splits it

    np.testing.assert_array_equal(series.timestamps_ms, start + step * np.arange(n))
    np.testing.assert_array_equal(series.values, np.arange(n))


def test_gaps_stay_gaps_and_nan_comes_back_as_nan(prom_client, unique):
    metric = unique("gappy")
    start = minute_now() - DAY
    minutes = np.r_[0:20, 40:60]  # a 20-minute hole, longer than the 5m lookback
    values = minutes.astype(float)
    values[5] = np.nan
    written = start + MINUTE * minutes
    prom_client.write([Series.of({"__name__": metric}, written, values)])

    (series,) = prom_client.query_range(metric, start, start + 59 * MINUTE, MINUTE)

    # Expected from Prometheus' semantics: a step sees the newest sample at most 5m old.
    expected_t, expected_v = [], []
    for t in start + MINUTE * np.arange(60):
        seen = np.flatnonzero((written <= t) & (written >= t - LOOKBACK))
        if seen.size:
            expected_t.append(t)
            expected_v.append(values[seen[-1]])
    np.testing.assert_array_equal(series.timestamps_ms, expected_t)
    np.testing.assert_array_equal(series.values, expected_v)  # NaN compares equal here
    hole = (series.timestamps_ms > written[19] + LOOKBACK) & (series.timestamps_ms < written[20])
    assert not hole.any()  # no zero-filled or repeated steps inside the hole
    assert math.isnan(series.values[series.timestamps_ms == written[5]][0])
    assert 0.0 not in series.values[1:]


def test_an_answer_larger_than_max_series_allows_is_refused(prom_client, unique):
    metric = unique("wide")
    at = minute_now() - 10 * MINUTE
    prom_client.write([Series.of({"__name__": metric, "i": str(i), "pad": "x" * 200}, [at],
                                 [float(i)]) for i in range(1000)])

    with pytest.raises(ResponseTooLarge) as caught:
        prom_client.query_range(metric, at, at, MINUTE, max_series=10)
    assert "max_series=10 series of 1 point(s)" in str(caught.value)
    assert not caught.value.retryable

    assert len(prom_client.query_range(metric, at, at, MINUTE, max_series=1000)) == 1000


def test_query_rejected_by_prometheus_carries_its_parse_error(prom_client):
    with pytest.raises(QueryRejected) as caught:
        prom_client.query_range("rate(foo[5m]", 0, 60_000, 60_000)
    message = str(caught.value)
    assert "parse error" in message and "unclosed left parenthesis" in message
    assert "rate(foo[5m]" in message


def test_unreachable_database_is_retried_then_reported(caplog):
    url = f"http://127.0.0.1:{free_port()}"
    settings = PrometheusSettings(url=url, max_retries=3, retry_backoff=0.01)
    caplog.set_level(logging.WARNING, logger="openanomaly.adapters.tsdb.prometheus")

    with PrometheusAdapter(settings) as client, pytest.raises(TSDBUnavailable) as caught:
        client.query_range("up", 0, 60_000, 60_000)

    retries = [r for r in caplog.records if hasattr(r, "attempt")]
    assert [r.attempt for r in retries] == [1, 2, 3]
    assert all(r.levelno == logging.WARNING for r in retries)
    assert url in str(caught.value) and "4 attempt" in str(caught.value)
    assert "ConnectError" in str(caught.value)


def test_ping(prom_client):
    prom_client.ping()
    dead = PrometheusSettings(url=f"http://127.0.0.1:{free_port()}")
    with PrometheusAdapter(dead) as client, pytest.raises(TSDBUnavailable, match="cannot reach"):
        client.ping()


def test_duplicate_timestamp_with_other_value_is_distinguishable(prom_client, unique):
    metric = unique("dup")
    newest = minute_now() - 2 * MINUTE  # near the head's newest time: the in-order path
    timestamps = newest - MINUTE * np.arange(10)[::-1]
    original = Series.of({"__name__": metric, "pipeline": "p"}, timestamps, np.arange(10.0))
    prom_client.write([original])

    prom_client.write([original])  # an identical re-run is accepted
    with pytest.raises(DuplicateSamples, match="duplicate sample for timestamp"):
        prom_client.write([Series.of(original.labels, [newest], [99.0])])

    (series,) = prom_client.query_range(metric, int(timestamps[0]), newest, MINUTE)
    np.testing.assert_array_equal(series.values, np.arange(10.0))


def test_samples_older_than_the_ooo_window_are_rejected_without_retries(prom_client, unique,
                                                                         caplog):
    caplog.set_level(logging.WARNING, logger="openanomaly.adapters.tsdb.prometheus")
    too_old = minute_now() - 40 * DAY  # the fixture's window is 30d
    with pytest.raises(WriteRejected, match="too old sample") as caught:
        prom_client.write([Series.of({"__name__": unique("old")}, [too_old], [1.0])])
    assert not isinstance(caught.value, DuplicateSamples)
    assert not [r for r in caplog.records if hasattr(r, "attempt")]


def test_settings_refuse_two_kinds_of_auth_and_unknown_keys():
    with pytest.raises(ValidationError, match="either bearer_token or basic_auth"):
        PrometheusSettings(bearer_token="t", basic_auth={"username": "u", "password": "p"})
    with pytest.raises(ValidationError):
        PrometheusSettings(urll="http://x")
    settings = PrometheusSettings(url="http://db:9090/")
    assert settings.effective_remote_write_url == "http://db:9090/api/v1/write"
    assert "s3cret" not in repr(PrometheusSettings(bearer_token="s3cret"))


def test_score_stats_with_the_tail_and_recent_statistics_match_those_in_memory(prom_client,
                                                                              unique):
    # Live runs read the tail of their raw-score history, and the suppression window's
    # quantile and count, back from the database; replays and backfills compute them in
    # memory. Both must agree for their scores to agree.
    from openanomaly.domain.detection import RECENT_LEVELS, TAIL_LEVELS, history_of

    metric, pipeline = unique("raw_score"), unique("p")
    end = minute_now() - 10 * MINUTE
    timestamps = end - MINUTE * np.arange(400)[::-1]
    rng = np.random.default_rng(2)
    values = {"a": rng.exponential(1.0, 400), "b": rng.pareto(2.0, 400)}
    values["b"][::7] = np.nan  # gaps: runs write no raw score where the actual is missing
    prom_client.write([
        Series.of({"__name__": metric, "pipeline": pipeline, "host": host}, timestamps,
                  v).where(np.isfinite(v))
        for host, v in values.items()])

    # Between two samples, so the windows hold the same samples however their ends close.
    at = end + MINUTE // 2
    # A level with more digits than a short float format keeps (once per 12 hours at 1m).
    level = 1 - 1 / 720
    stats = prom_client.score_stats(metric, pipeline, at, level, 300 * MINUTE, 30 * MINUTE,
                                    tail_levels=TAIL_LEVELS, recent_levels=RECENT_LEVELS,
                                    recent_below=30)

    found = {s.labels["host"]: s for s in stats}
    assert found.keys() == {"a", "b"}
    assert all(s.labels == {"pipeline": pipeline, "host": h} for h, s in found.items())
    for host, series in values.items():
        # The newest 300 samples.
        expected = history_of(series[None, -300:], level, 300, 30)
        assert expected.tail is not None and expected.count is not None
        np.testing.assert_allclose(found[host].tail, expected.tail[0], rtol=1e-9, err_msg=host)
        assert found[host].count == expected.count[0]
        assert found[host].quantile == pytest.approx(expected.quantile[0], rel=1e-9)
        assert found[host].peak == pytest.approx(expected.peak[0], rel=1e-9)
        assert expected.recent is not None and expected.recent_count is not None
        np.testing.assert_allclose(found[host].recent, expected.recent[0], rtol=1e-9)
        np.testing.assert_equal(found[host].recent_count, expected.recent_count[0])
    # The recent statistics come only for a window with fewer samples than its points:
    # "a" holds all 30 of the last half hour, "b" has gaps.
    assert np.isnan(found["a"].recent_count) and np.isnan(found["a"].recent).all()
    assert found["b"].recent_count < 30 and np.isfinite(found["b"].recent).all()


def test_score_stats_read_the_recurring_span_as_the_history_in_memory_does(prom_client,
                                                                            unique):
    # A live run asks the database for the largest raw score near the same time a season
    # earlier; a backfill takes it from its own past. Both must pick the same samples.
    from openanomaly.domain.detection import RecurringSpan, RunningHistory

    metric, pipeline = unique("raw_score"), unique("p")
    end = minute_now() - 10 * MINUTE
    timestamps = end - MINUTE * np.arange(400)[::-1]
    values = np.random.default_rng(3).exponential(1.0, 400)
    prom_client.write([Series.of({"__name__": metric, "pipeline": pipeline}, timestamps,
                                 values)])
    span = RecurringSpan(season=120, tolerance=5)
    width = 5  # a window of 5 points starting at the 341st sample
    window_start = int(timestamps[340])
    recurring = span.time_range(window_start, width, MINUTE)
    (stats,) = prom_client.score_stats(metric, pipeline, window_start - 1, 0.5, 60 * MINUTE,
                                       None, recurring=recurring)
    history = RunningHistory(values[None, :340], 0.5, 60, 1, span)
    expected = history.next_window(values[None, 340:345]).recurring
    assert expected is not None
    assert stats.recurring == pytest.approx(expected[0], rel=1e-12)
    assert stats.recurring == pytest.approx(values[340 - 125:340 - 115 + width].max())


def test_score_stats_without_tail_levels_ask_for_no_tail(prom_client, unique):
    metric, pipeline = unique("raw_score"), unique("p")
    end = minute_now() - 10 * MINUTE
    timestamps = end - MINUTE * np.arange(20)[::-1]
    prom_client.write([Series.of({"__name__": metric, "pipeline": pipeline}, timestamps,
                                 np.arange(20.0))])
    (stats,) = prom_client.score_stats(metric, pipeline, end, 0.5, 60 * MINUTE, None)
    assert stats.tail == () and math.isnan(stats.count) and math.isnan(stats.peak)
    assert stats.recent == () and math.isnan(stats.recent_count)
    assert stats.quantile == pytest.approx(9.5)


def test_a_query_for_many_series_is_read_in_time_slices_of_bounded_points(prom_client,
                                                                         unique):
    import itertools

    from openanomaly.adapters.tsdb.prometheus import MAX_POINTS_PER_ANSWER, sub_ranges

    ranges = sub_ranges(0, 599_000, 1000, max_series=100_000)
    assert len(ranges) == 10 and ranges[0] == (0, 59_000) and ranges[-1][1] == 599_000
    assert all(lo == prev_hi + 1000 for (_, prev_hi), (lo, _) in itertools.pairwise(ranges))
    assert all((hi - lo) // 1000 + 1 <= max(60, MAX_POINTS_PER_ANSWER // 100_000)
               for lo, hi in ranges)
    assert sub_ranges(0, 599_000, 1000) == [(0, 599_000)]  # the default bound: one read

    metric = unique("sliced")
    start = minute_now() - DAY
    stamps = start + 60_000 * np.arange(600)
    prom_client.write([Series.of({"__name__": metric, "host": h}, stamps,
                                 np.arange(600, dtype=float) + i)
                       for i, h in enumerate(("a", "b"))])
    found = prom_client.query_range(metric, start, stamps[-1], 60_000, max_series=100_000)
    assert sorted(one.labels["host"] for one in found) == ["a", "b"]
    for one in found:
        np.testing.assert_array_equal(one.timestamps_ms, stamps)
        np.testing.assert_array_equal(one.values,
                                      np.arange(600) + (one.labels["host"] == "b"))
