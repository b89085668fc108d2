"""Re-anchoring a context after a confirmed level shift."""

import numpy as np

from openanomaly.domain.shifts import reanchor


def noisy(n=400, seed=0):
    return 10 + np.random.default_rng(seed).normal(0, 0.1, n)


def test_a_confirmed_shift_moves_the_older_context_to_the_new_level():
    x = noisy()
    x[-20:] += 5  # a shift 20 points ago
    out = reanchor(x[None, :])[0]
    assert abs(np.median(out[:-20]) - np.median(out[-20:])) < 0.2
    np.testing.assert_array_equal(out[-20:], x[-20:])  # the new level is left as it is


def test_no_shift_too_recent_too_old_or_too_small_leaves_the_context_alone():
    cases = []
    for age, size in ((5, 5.0), (200, 5.0), (20, 0.3)):
        x = noisy(seed=age)
        x[-age:] += size
        cases.append(x)
    flat = noisy(seed=9)
    contexts = np.stack([*cases, flat])
    np.testing.assert_array_equal(reanchor(contexts), contexts)


def test_a_single_spike_among_the_newest_points_is_not_a_shift():
    x = noisy()
    x[-20:] += 5
    x[-7] = 10.0  # one point back at the old level: not all newest points moved
    np.testing.assert_array_equal(reanchor(x[None, :]), x[None, :])


def test_gaps_do_not_break_it():
    x = noisy()
    x[-20:] += 5
    x[-30:-25] = np.nan
    out = reanchor(x[None, :])[0]
    assert abs(np.nanmedian(out[:-20]) - np.median(out[-20:])) < 0.2
    assert np.isnan(out[-30:-25]).all()
