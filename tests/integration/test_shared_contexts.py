"""Workers that share each pipeline's context in Redis (adapters/scheduler/context_store)
read only the new steps whichever of them ran the previous slot, and still get what a
full read gets: a real redis-server and the session's real Prometheus."""

import logging
import time
import uuid

import numpy as np
import redis

from openanomaly.adapters.scheduler.context_store import RedisContextStore
from openanomaly.domain.pipeline import PipelineSpec
from openanomaly.domain.series import SeriesBatch
from openanomaly.services.context_cache import ContextCache, read_recent
from openanomaly.services.runs import fetch
from tests.integration.test_context_cache import STEP, same_batch, write
from tests.redis_server import redis_server  # noqa: F401  (fixture)

BASE = (int(time.time() * 1000) - 86_400_000) // 3_600_000 * 3_600_000
TTL_MS = 600_000


def test_a_worker_takes_the_context_another_worker_read(prom_client, unique,
                                                        redis_server):  # noqa: F811
    name = unique("shared_ctx")
    spec = PipelineSpec(name=f"p-{uuid.uuid4().hex[:8]}", query=name, context="2h")
    span = spec.context_steps + spec.window_steps - 1
    at = BASE + 3 * 3_600_000
    for host in ("a", "b", "c"):
        write(prom_client, name, host, BASE, at + 10 * STEP)
    clients = [redis_server.client(), redis_server.client()]
    # Parts of two series: the three series' context spans two Redis values.
    workers = [ContextCache(shared=RedisContextStore(c, TTL_MS, part_series=2))
               for c in clients]
    starts: list[int] = []

    def recording(spec_, tsdb, start, end):
        starts.append(start)
        return fetch(spec_, tsdb, start, end)

    def run(worker, at_ms):
        start = at_ms - span * STEP
        batch = read_recent(spec, prom_client, start, at_ms, worker, recording)
        same_batch(batch, fetch(spec, prom_client, start, at_ms))
        return start

    first, second = workers
    assert run(first, at) == starts[-1], "the first read of all is a full read"
    # The other worker never ran the pipeline, yet reads only the steps since.
    full_start = run(second, at + 5 * STEP)
    assert starts[-1] > full_start and second.hits == 1 and second.misses == 0
    # The first worker's own context is older than the shared one: it takes the shared.
    full_start = run(first, at + 10 * STEP)
    assert starts[-1] > full_start and first.hits == 1
    assert starts[-1] >= at + 5 * STEP - 20 * STEP, "only the steps since, with the overlap"
    for client in clients:
        client.close()


def test_a_context_for_another_query_or_step_is_not_taken(redis_server):  # noqa: F811
    client = redis_server.client()
    store = RedisContextStore(client, TTL_MS, part_series=1)
    pipeline = f"p-{uuid.uuid4().hex[:8]}"
    batch = SeriesBatch([{"i": "1"}, {"i": "2"}], np.array([0, 60_000], dtype=np.int64),
                        np.array([[1.0, 2.0], [3.0, np.nan]]))
    store.put(pipeline, "up", 60_000, batch)
    assert store.latest(pipeline) == 60_000
    got = store.get(pipeline, "up", 60_000)
    assert got is not None and got.labels == batch.labels
    np.testing.assert_array_equal(got.values, batch.values)
    assert store.get(pipeline, "down", 60_000) is None
    assert store.get(pipeline, "up", 30_000) is None
    # A newer context replaces the old one, whose parts are deleted.
    store.put(pipeline, "up", 60_000, SeriesBatch(batch.labels[:1], batch.timestamps_ms + 60_000,
                                                  batch.values[:1]))
    assert store.latest(pipeline) == 120_000
    assert len(list(client.scan_iter(match=f"openanomaly:contexts:{pipeline}:*"))) == 2
    client.close()


def test_an_unreachable_store_costs_a_warning_not_the_run(prom_client, unique, caplog):
    name = unique("ctx_down")
    spec = PipelineSpec(name="down", query=name, context="2h")
    at = BASE + 3 * 3_600_000
    write(prom_client, name, "a", BASE, at)
    gone = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    cache = ContextCache(shared=RedisContextStore(gone, TTL_MS))
    start = at - (spec.context_steps + spec.window_steps - 1) * STEP
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            batch = read_recent(spec, prom_client, start, at, cache, fetch)
            same_batch(batch, fetch(spec, prom_client, start, at))
    assert "could not share the context" in caplog.text
    assert "shared context store failed" in caplog.text
    assert cache.hits == 1, "the process' own context still serves the next run"
