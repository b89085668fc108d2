"""The preview: the production check over recent history, returned instead of written."""

import numpy as np

from openanomaly.services.backfill import backfill
from openanomaly.services.preview import history, preview
from openanomaly.services.runs import run_anomaly_check

from .fakes import FakeTSDB
from .test_runs import ENGINE, STEP, T0, N, periodic, spec


def test_a_preview_scores_what_a_backfill_of_a_new_pipeline_writes_and_writes_nothing():
    sources = [periodic({"i": "1"}, noise=1.0), periodic({"i": "2"}, noise=2.0, seed=3)]
    sources[1].values[500] += 80
    start, end = T0 + 300 * STEP, T0 + (N - 1) * STEP
    shown = FakeTSDB(sources)
    result = preview(spec(), start, end, shown, ENGINE)
    assert shown.written == {} and shown.write_calls == 0
    written = FakeTSDB(sources)
    backfill(spec(), start, end, written, ENGINE)
    assert [s.labels["i"] for s in result.series] == ["1", "2"]
    for one in result.series:
        stored = next(samples for key, samples in
                      written.series_named("openanomaly_anomaly_score").items()
                      if dict(key)["i"] == one.labels["i"])
        assert one.timestamps_ms == sorted(stored)
        np.testing.assert_allclose(one.score, [stored[t] for t in one.timestamps_ms])
        np.testing.assert_array_equal(one.actual, [
            s.values[(t - T0) // STEP] for s in sources if s.labels["i"] == one.labels["i"]
            for t in one.timestamps_ms])
        assert np.all(one.lower <= one.yhat) and np.all(one.yhat <= one.upper)
    # The spike, then its echo a season later (seasonal naive forecasts from it).
    assert result.series[1].alarms_ms[0] == T0 + 500 * STEP
    assert result.series[0].alarms_ms == []


def test_history_shows_what_live_runs_wrote_beside_the_actual_values():
    source = periodic({"i": "1"}, noise=1.0)
    tsdb = FakeTSDB([source])
    at = T0 + (N - 1) * STEP
    run_anomaly_check(spec(), at, tsdb, ENGINE)
    (one,) = history(spec(), at - 59 * STEP, at, tsdb).series
    assert len(one.timestamps_ms) == 60
    np.testing.assert_array_equal(one.actual, source.values[-60:])
    written = next(iter(tsdb.series_named("openanomaly_anomaly_score").values()))
    scored = [t for t, s in zip(one.timestamps_ms, one.score.tolist(), strict=True) if s == s]
    assert scored == sorted(written), "the checked window, and nothing else"
    np.testing.assert_allclose([s for s in one.score.tolist() if s == s],
                               [written[t] for t in scored])
