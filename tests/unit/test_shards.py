"""Splitting a slot's series into shards (domain.shards) and the shard codec."""

import json
import os
import subprocess
import sys

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from openanomaly.adapters.scheduler.shard_store import decode, encode
from openanomaly.domain.detection import ScoreHistory
from openanomaly.domain.series import SeriesBatch
from openanomaly.domain.shards import partition, shard_count, shard_data, shard_of

label_sets = st.lists(
    st.dictionaries(st.sampled_from(["instance", "job", "device", "mode"]),
                    st.text(min_size=1, max_size=6), min_size=1, max_size=4),
    max_size=60, unique_by=lambda one: frozenset(one.items()))


@given(label_sets, st.integers(1, 9))
def test_every_series_is_in_exactly_one_shard(labels, count):
    shards = partition(labels, count)
    assert len(shards) == count
    rows = np.concatenate(shards) if shards else np.array([], dtype=np.int64)
    assert sorted(rows.tolist()) == list(range(len(labels)))


@given(label_sets, st.integers(1, 9), st.randoms(use_true_random=False))
def test_a_series_shard_depends_on_its_labels_alone(labels, count, random):
    # Another answer order, or fewer series (some stopped), moves no series elsewhere.
    shuffled = list(labels)
    random.shuffle(shuffled)
    kept = shuffled[: len(shuffled) // 2]
    where = {frozenset(one.items()): i for i, rows in enumerate(partition(labels, count))
             for one in (labels[r] for r in rows)}
    for i, rows in enumerate(partition(kept, count)):
        assert all(where[frozenset(kept[r].items())] == i for r in rows)


def test_the_shard_of_a_series_is_the_same_in_every_process():
    # Python salts its str hash per process: workers with other seeds must agree.
    labels = [{"instance": f"node-{n}:9100", "job": "node"} for n in range(50)]
    here = [shard_of(one, 7) for one in labels]
    code = ("import json, sys; from openanomaly.domain.shards import shard_of; "
            "print(json.dumps([shard_of(l, 7) for l in json.load(sys.stdin)]))")
    for seed in ("1", "2"):
        done = subprocess.run([sys.executable, "-c", code], input=json.dumps(labels),
                              capture_output=True, text=True, timeout=60, check=True,
                              env={**os.environ, "PYTHONHASHSEED": seed})
        assert json.loads(done.stdout) == here
    assert shard_of({"job": "node", "instance": "a"}, 7) == shard_of(
        {"instance": "a", "job": "node"}, 7), "label order does not matter"


def test_shard_count_rounds_up_and_is_at_least_one():
    assert [shard_count(n, 100) for n in (0, 1, 100, 101, 250)] == [1, 1, 1, 2, 3]


def test_shards_are_about_even():
    labels = [{"instance": f"node-{n}", "job": "node"} for n in range(10_000)]
    sizes = [rows.size for rows in partition(labels, shard_count(10_000, 1000))]
    assert len(sizes) == 10 and min(sizes) > 850 and max(sizes) < 1150


def test_shard_data_survives_the_codec_bit_for_bit():
    rng = np.random.default_rng(3)
    values = rng.normal(size=(5, 7))
    values[1, 2] = np.nan
    batch = SeriesBatch([{"i": str(n), "ü": "ß"} for n in range(5)],
                        np.arange(7, dtype=np.int64) * 60_000, values)
    history = ScoreHistory(rng.normal(size=5), np.full(5, np.nan), rng.normal(size=(5, 3)),
                           np.arange(5.0))
    rows = np.array([0, 1, 4])
    back = decode(encode(shard_data(batch, history, rows)))
    assert back.batch.labels == [batch.labels[i] for i in rows]
    np.testing.assert_array_equal(back.batch.timestamps_ms, batch.timestamps_ms)
    np.testing.assert_array_equal(back.batch.values, values[rows])
    assert back.history is not None and back.history.tail is not None
    np.testing.assert_array_equal(back.history.quantile, history.quantile[rows])
    np.testing.assert_array_equal(back.history.peak, history.peak[rows])
    np.testing.assert_array_equal(back.history.tail, history.tail[rows])
    without = decode(encode(shard_data(batch, None, rows)))
    assert without.history is None and without.batch.n_series == 3
