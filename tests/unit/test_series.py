import numpy as np

from openanomaly.domain.series import Series, align


def test_align_leaves_gaps_as_nan_not_zero():
    series = Series.of({"__name__": "m"}, [0, 60_000, 240_000], [1.0, 2.0, 5.0])
    batch = align([series], 0, 300_000, 60_000)
    assert batch.timestamps_ms.tolist() == [0, 60_000, 120_000, 180_000, 240_000, 300_000]
    np.testing.assert_array_equal(batch.values[0], [1, 2, np.nan, np.nan, 5, np.nan])


def test_align_ignores_samples_off_the_grid_and_outside_the_range():
    series = Series.of({}, [-60_000, 30_000, 60_000, 400_000], [9.0, 9.0, 2.0, 9.0])
    batch = align([series], 0, 120_000, 60_000)
    np.testing.assert_array_equal(batch.values[0], [np.nan, 2.0, np.nan])
