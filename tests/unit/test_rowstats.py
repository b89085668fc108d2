"""Row medians and quantiles ignoring NaN: numpy's values, to the last bit."""

import warnings

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from openanomaly.domain.rowstats import nanmedian_rows, nanquantile_rows

values = st.one_of(st.floats(-1e6, 1e6), st.just(np.nan), st.just(np.inf), st.just(-np.inf))
batches = hnp.arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 12)),
                     elements=values)
levels = st.lists(st.floats(0, 1), min_size=1, max_size=4)


def numpy_says(function, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return function(*args, axis=1)


@settings(max_examples=400, deadline=None)
@given(batches, levels)
def test_the_same_as_numpy_with_or_without_gaps(x, wanted):
    np.testing.assert_array_equal(nanmedian_rows(x), numpy_says(np.nanmedian, x))
    np.testing.assert_array_equal(nanquantile_rows(x, wanted),
                                  numpy_says(np.nanquantile, x, wanted))
    np.testing.assert_array_equal(nanquantile_rows(x, wanted[0]),
                                  numpy_says(np.nanquantile, x, wanted[0]))


def test_a_row_without_values_gives_nan_and_leaves_the_others_alone():
    x = np.array([[np.nan, np.nan, np.nan], [3.0, np.nan, 1.0]])
    np.testing.assert_array_equal(nanmedian_rows(x), [np.nan, 2.0])
    np.testing.assert_array_equal(nanquantile_rows(x, [0.0, 1.0]), [[np.nan, 1.0],
                                                                     [np.nan, 3.0]])
