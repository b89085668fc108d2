"""The benchmark fleet: node-exporter-like series, reproducible, with a few gaps."""

import numpy as np

from openanomaly.domain.synthetic import FLEET_METRIC, fleet_labels, fleet_series


def test_labels_are_unique_and_shaped_like_node_exporter():
    labels = [fleet_labels(i) for i in range(1000)]
    assert len({tuple(sorted(one.items())) for one in labels}) == 1000
    assert labels[0] == {"__name__": FLEET_METRIC, "job": "node",
                         "instance": "host-00000:9100", "datacenter": "dc0", "cpu": "0",
                         "mode": "user"}
    assert labels[40]["instance"] == "host-00001:9100"


def test_series_are_reproducible_on_the_grid_and_in_range():
    first = fleet_series(100, 300, 1_000_000, 1440, 60.0, seed=3)
    again = fleet_series(100, 300, 1_000_000, 1440, 60.0, seed=3)
    other = fleet_series(100, 300, 1_000_000, 1440, 60.0, seed=4)
    assert [s.labels for s in first] == [fleet_labels(i) for i in range(100, 400)]
    for one, same in zip(first, again, strict=True):
        np.testing.assert_array_equal(one.values, same.values)
    assert not all(np.array_equal(a.values, b.values) for a, b in zip(first, other, strict=True))
    for one in first:
        assert np.all((one.values >= 0) & (one.values <= 100))
        assert np.all((one.timestamps_ms - 1_000_000) % 60_000 == 0)


def test_about_one_series_in_a_hundred_has_a_gap():
    series = fleet_series(0, 2000, 0, 1440, 60.0)
    gapped = sum(one.values.size < 1440 for one in series)
    assert 5 <= gapped <= 40
    assert min(one.values.size for one in series) >= 1440 - 60
