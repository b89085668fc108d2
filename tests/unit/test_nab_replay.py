import numpy as np

from openanomaly.adapters.models.local_engine import LocalModelEngine
from openanomaly.adapters.models.settings import SeasonalNaiveSettings
from openanomaly.domain.pipeline import ScoringSpec
from openanomaly.services.nab_benchmark import ReplayInput, grid_positions, replay_file

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
