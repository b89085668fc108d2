import numpy as np
import pytest

from openanomaly.adapters.models.local_engine import LocalModelEngine
from openanomaly.adapters.models.settings import SeasonalNaiveSettings
from openanomaly.domain.pipeline import PipelineSpec, ScoringSpec
from openanomaly.domain.series import Series
from openanomaly.services.nab_replay import (
    ReplayInput,
    first_scored_row,
    grid_positions,
    replay_file,
    warm_up_origin,
)
from openanomaly.services.runs import run_anomaly_check

from .fakes import FakeTSDB

ENGINE = LocalModelEngine({"naive": SeasonalNaiveSettings(season="4h"),
                          "seasonal_naive": SeasonalNaiveSettings()})


def signal(n=1200, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 10 + 3 * np.sin(2 * np.pi * t / 48) + rng.normal(0, 0.2, n)


def run(values):
    item = ReplayInput("f.csv", values, ((900, 930),))
    return replay_file(item, ScoringSpec(), ENGINE, "naive", horizon=24, context=400)


def test_probation_rows_are_unscored_and_every_later_row_scored():
    replayed = run(signal())
    scores = replayed.labelled.scores
    assert np.isnan(scores[:180]).all()  # 15% of 1200 rows
    assert np.isfinite(scores[180:]).all()
    assert replayed.labelled.windows == ((900, 930),)


def test_replay_is_causal_a_row_never_sees_its_own_block_or_later():
    base = signal()
    changed = base.copy()
    changed[1000:] += 50  # a shift at row 1000, inside the block starting at 996
    before, after = run(base).labelled.scores, run(changed).labelled.scores
    np.testing.assert_array_equal(before[:996], after[:996])
    assert after[1000] > 3 and np.all(after[996:1000] == before[996:1000])


def test_grid_positions_leave_gaps_and_keep_repeated_stamps_in_place():
    step = 300_000
    stamps = np.array([0, 1, 2, 5, 5, 4, 6], dtype=np.int64) * step
    assert grid_positions(stamps, step).tolist() == [0, 1, 2, 5, 5, 5, 6]


def test_a_file_with_missing_steps_is_replayed_on_the_grid_with_gaps():
    values = signal()
    # 20 steps missing after the probation period: read as consecutive rows, the daily
    # cycle would jump out of phase there; on the grid it stays in phase.
    kept = np.r_[0:600, 620:1200]
    stamps = kept.astype(np.int64) * 300_000
    on_grid = ReplayInput("f.csv", values[kept], ((900, 930),), 300.0,
                          grid_positions(stamps, 300_000))
    as_rows = ReplayInput("f.csv", values[kept], ((900, 930),), 300.0)
    raw = ScoringSpec(calibration_window=None, suppression_window=None)
    gapped = replay_file(on_grid, raw, ENGINE, "naive", horizon=24, context=400)
    naive = replay_file(as_rows, raw, ENGINE, "naive", horizon=24, context=400)
    scores = gapped.labelled.scores
    assert scores.size == kept.size and np.isfinite(scores[177:]).all()
    after_gap = slice(600, 612)
    assert np.nanmax(scores[after_gap]) < 1 < np.nanmax(naive.labelled.scores[after_gap])


def test_the_replay_scores_exactly_what_live_runs_write_for_the_same_data():
    """The benchmark measures production: a file replayed block by block scores each row as
    the scheduled anomaly check of that block, calibrated on what earlier runs wrote."""
    rows, horizon, context, step_ms = 1200, 24, 400, 300_000
    values = signal(rows, seed=4)
    values[1000] += 8  # a spike the detector must flag
    values[700:706] = np.nan  # a gap: NaN scores, left out of the history
    # A rough stretch in the warm-up: its raw scores raise the calibration of later rows.
    values[100:170] += np.random.default_rng(5).normal(0, 3, 70)
    # Windows short enough that calibration and suppression act within the file; one
    # forecast per check window, as the replay's blocks.
    scoring = ScoringSpec(calibration_window="1d", suppression_window="2h",
                          forecast_block=horizon)
    replayed = replay_file(ReplayInput("f.csv", values, (), 300.0), scoring, ENGINE, "naive",
                           horizon=horizon, context=context, window=horizon)

    # Placed so that each block's last row falls on the schedule's (horizon-long) grid.
    block_ms = horizon * step_ms
    first_slot = 1_700_000_000_000 - 1_700_000_000_000 % block_ms
    t0 = first_slot - (first_scored_row(rows) + horizon - 1) * step_ms
    tsdb = FakeTSDB([Series.of({"__name__": "m"}, t0 + np.arange(rows) * step_ms, values)])
    minutes = step_ms // 60_000
    spec = PipelineSpec(name="p", query="m", model="naive", step=f"{minutes}m",
                        context=f"{context * minutes}m", horizon=f"{horizon * minutes}m",
                        schedule=f"{horizon * minutes}m", scoring=scoring)
    # Live runs from the replay's warm-up on, as a backfill before going live would write.
    first = first_scored_row(rows)
    warm = warm_up_origin(first, horizon)
    assert first // 2 <= warm < first and (first - warm) % horizon == 0
    for origin in range(warm, rows - horizon + 1, horizon):
        run_anomaly_check(spec, t0 + (origin + horizon - 1) * step_ms, tsdb, ENGINE)
    (_, written), = tsdb.series_named("openanomaly_anomaly_score").items()
    at_rows = (np.array(sorted(written)) - t0) // step_ms
    live = np.array([written[t] for t in sorted(written)])
    reported = at_rows >= first
    at_rows, live = at_rows[reported], live[reported]

    expected = replayed.labelled.scores
    assert np.isnan(expected[:first]).all()  # the warm-up is not reported
    last = rows - (rows - first) % horizon  # live runs cover whole blocks
    assert at_rows.tolist() == list(range(first, last))
    np.testing.assert_allclose(live, expected[at_rows], rtol=1e-12, equal_nan=True)
    assert live[at_rows == 1000][0] > 1 and np.nanmax(live[at_rows < 1000]) < 1


@pytest.mark.parametrize("calibrated", [False, True])
def test_runs_that_check_parts_of_a_block_score_as_the_replay_of_that_block(calibrated):
    """A pipeline checking every few steps scores each point against the forecast made at
    the start of its block and calibrates each window on the history before it, block's
    earlier windows included, as the replay does."""
    # Blocks of 24 steps, rounded up to whole windows of 5: 25.
    rows, window, context, step_ms = 1200, 5, 400, 300_000
    block = 25
    values = signal(rows, seed=4)
    values[1000] += 8
    calibration = {"calibration_window": "1d", "suppression_window": "2h"} if calibrated \
        else {"calibration_window": None, "suppression_window": None}
    scoring = ScoringSpec(forecast_block=24, **calibration)
    replayed = replay_file(ReplayInput("f.csv", values, (), 300.0), scoring, ENGINE, "naive",
                           horizon=None, context=context, window=window)

    # Blocks end at multiples of the block from the epoch; the replay's first block is one.
    block_ms = block * step_ms
    first_end = 1_700_000_000_000 - 1_700_000_000_000 % block_ms
    first = first_scored_row(rows)
    warm = warm_up_origin(first, block) if calibrated else first
    t0 = first_end - (warm + block - 1) * step_ms
    tsdb = FakeTSDB([Series.of({"__name__": "m"}, t0 + np.arange(rows) * step_ms, values)])
    spec = PipelineSpec(name="p", query="m", model="naive", step="5m",
                        context=f"{context * 5}m", horizon="2h", schedule=f"{window * 5}m",
                        scoring=scoring)
    assert spec.block_steps == block
    for end in range(warm + window - 1, rows, window):
        run_anomaly_check(spec, t0 + end * step_ms, tsdb, ENGINE)
    (_, written), = tsdb.series_named("openanomaly_anomaly_score").items()
    at_rows = (np.array(sorted(written)) - t0) // step_ms
    live = np.array([written[t] for t in sorted(written)])
    reported = at_rows >= first
    at_rows, live = at_rows[reported], live[reported]
    expected = replayed.labelled.scores[at_rows]

    assert at_rows.tolist() == list(range(first, rows - (rows - warm) % window))
    np.testing.assert_allclose(live, expected, rtol=1e-12, equal_nan=True)
    assert live[at_rows == 1000][0] > 1
