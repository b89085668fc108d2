"""A run that reads only what is new since the previous run gets the batch a full read
gets, on a real Prometheus: late samples inside the overlap, series that stop, series
that appear, another query."""

import time

import numpy as np

from openanomaly.domain.pipeline import PipelineSpec
from openanomaly.domain.series import Series
from openanomaly.services.context_cache import ContextCache, read_recent
from openanomaly.services.runs import fetch

STEP = 60_000
# Within the out-of-order window of the session's Prometheus, which other tests write to.
BASE = (int(time.time() * 1000) - 86_400_000) // 3_600_000 * 3_600_000


def write(client, name, host, first, last, value=None):
    stamps = np.arange(first, last + 1, STEP, dtype=np.int64)
    values = (np.full(stamps.size, value, dtype=float) if value is not None
              else np.sin(stamps / 3.6e6) * 10 + 50 + hash(host) % 7)
    client.write([Series({"__name__": name, "host": host}, stamps, values)])


def same_batch(left, right):
    assert left.timestamps_ms.tolist() == right.timestamps_ms.tolist()
    order = {frozenset(labels.items()): i for i, labels in enumerate(right.labels)}
    assert sorted(map(frozenset, (one.items() for one in left.labels)), key=sorted) == sorted(
        order, key=sorted)
    for row, labels in enumerate(left.labels):
        np.testing.assert_array_equal(left.values[row],
                                      right.values[order[frozenset(labels.items())]])


def test_reads_after_the_first_take_only_the_recent_steps_and_match_a_full_read(
        prom_client, unique):
    name = unique("ctx")
    spec = PipelineSpec(name="ctx", query=name, context="2h")
    span = spec.context_steps + spec.window_steps - 1
    cache = ContextCache()
    at = BASE + 3 * 3_600_000
    for host in ("a", "b", "c"):
        write(prom_client, name, host, BASE, at)

    def both(at_ms):
        start = at_ms - span * STEP
        cached = read_recent(spec, prom_client, start, at_ms, cache, fetch)
        same_batch(cached, fetch(spec, prom_client, start, at_ms))
        return cached

    both(at)
    assert (cache.hits, cache.misses) == (0, 1)
    # Five minutes on: b stops, a and c go on.
    write(prom_client, name, "a", at + STEP, at + 5 * STEP)
    write(prom_client, name, "c", at + STEP, at + 5 * STEP)
    at += 5 * STEP
    batch = both(at)
    assert (cache.hits, cache.misses) == (1, 1)
    assert len(batch.labels) == 3  # b still has values in the context
    # A new series needs its history: a full read.
    write(prom_client, name, "d", BASE, at + 5 * STEP)
    write(prom_client, name, "a", at + STEP, at + 5 * STEP)
    at += 5 * STEP
    assert len(both(at).labels) == 4
    assert (cache.hits, cache.misses) == (1, 2)
    # The same slot again reads the overlap only.
    both(at)
    assert cache.hits == 2


def test_a_sample_that_arrives_within_the_overlap_is_read(prom_client, unique):
    name = unique("late")
    spec = PipelineSpec(name="late", query=name, context="1h")
    span = spec.context_steps + spec.window_steps - 1
    cache = ContextCache()
    at = BASE + 2 * 3_600_000
    write(prom_client, name, "a", BASE, at - 3 * STEP)  # the last 3 minutes are late
    read_recent(spec, prom_client, at - span * STEP, at, cache, fetch)
    write(prom_client, name, "a", at - 2 * STEP, at + 5 * STEP, value=99.0)
    at += 5 * STEP
    cached = read_recent(spec, prom_client, at - span * STEP, at, cache, fetch)
    full = fetch(spec, prom_client, at - span * STEP, at)
    same_batch(cached, full)
    assert cache.hits == 1
    assert cached.values[0, -8] == 99.0  # a late sample from before the previous run


def test_another_query_or_an_earlier_slot_is_a_full_read(prom_client, unique):
    name = unique("other")
    write(prom_client, name, "a", BASE, BASE + 3 * 3_600_000)
    cache = ContextCache()
    spec = PipelineSpec(name="p", query=name, context="1h")
    at = BASE + 3 * 3_600_000
    start = at - 64 * STEP
    read_recent(spec, prom_client, start, at, cache, fetch)
    changed = PipelineSpec(name="p", query=f"{name} * 2", context="1h")
    doubled = read_recent(changed, prom_client, start, at, cache, fetch)
    np.testing.assert_allclose(doubled.values, 2 * fetch(spec, prom_client, start, at).values)
    earlier = at - 3_600_000
    read_recent(changed, prom_client, earlier - 64 * STEP, earlier, cache, fetch)
    assert (cache.hits, cache.misses) == (0, 3)


def test_the_cache_keeps_within_its_bytes():
    from openanomaly.domain.series import SeriesBatch

    cache = ContextCache(max_bytes=3 * 8 * 100 + 2 * 8 * 100)
    batch = SeriesBatch([{"a": "1"}] * 2, np.arange(100, dtype=np.int64), np.zeros((2, 100)))
    for name in ("one", "two", "three"):
        cache.put(PipelineSpec(name=name, query="up"), batch)
    assert cache.get(PipelineSpec(name="one", query="up")) is None
    assert cache.get(PipelineSpec(name="three", query="up")) is batch


def test_more_series_than_the_pipeline_allows_is_refused_as_a_full_read_refuses_it(
        prom_client, unique):
    import pytest

    from openanomaly.domain.errors import TooManySeries

    name = unique("bound")
    at = BASE + 2 * 3_600_000
    write(prom_client, name, "a", BASE, at + 5 * STEP)
    write(prom_client, name, "b", BASE, at)  # stops: only the older steps have it
    cache = ContextCache()
    wide = PipelineSpec(name="bound", query=name, context="1h")
    span = wide.context_steps + wide.window_steps - 1
    read_recent(wide, prom_client, at - span * STEP, at, cache, fetch)
    narrow = wide.model_copy(update={"max_series": 1})
    later = at + 5 * STEP
    with pytest.raises(TooManySeries):
        fetch(narrow, prom_client, later - span * STEP, later)
    with pytest.raises(TooManySeries):
        read_recent(narrow, prom_client, later - span * STEP, later, cache, fetch)
