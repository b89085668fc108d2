"""The ShardStore contract against a real redis-server, two handles as two workers hold."""

import uuid

import numpy as np
import pytest

from openanomaly.adapters.scheduler.shard_store import RedisShardStore
from openanomaly.domain.series import SeriesBatch
from openanomaly.domain.shards import shard_data
from tests.redis_server import redis_server  # noqa: F401  (fixture)

TTL_MS = 120_000
SLOT = 1_700_000_000_000


@pytest.fixture
def stores(redis_server):  # noqa: F811
    clients = [redis_server.client(), redis_server.client()]
    yield [RedisShardStore(client, TTL_MS) for client in clients]
    for client in clients:
        client.close()


@pytest.fixture
def pipeline():
    return f"p-{uuid.uuid4().hex[:8]}"


def batch(n: int) -> SeriesBatch:
    values = np.arange(n * 4, dtype=float).reshape(n, 4)
    return SeriesBatch([{"i": str(k)} for k in range(n)],
                       np.arange(4, dtype=np.int64) * 60_000, values)


def test_the_first_plan_stands(stores, pipeline):
    reader, again = stores
    assert reader.plan(pipeline, SLOT, 3) == 3
    assert again.plan(pipeline, SLOT, 5) == 3, "a second read keeps the first split"
    assert again.plan(pipeline, SLOT + 60_000, 5) == 5, "another slot splits afresh"


def test_a_shard_goes_from_one_worker_to_another_and_is_dropped_once_scored(
        stores, pipeline, redis_server):  # noqa: F811
    reader, scorer = stores
    rows = np.array([1, 3])
    reader.put(pipeline, SLOT, 0, shard_data(batch(4), None, rows))
    got = scorer.get(pipeline, SLOT, 0)
    assert got is not None and got.batch.labels == [{"i": "1"}, {"i": "3"}]
    np.testing.assert_array_equal(got.batch.values, batch(4).values[rows])
    assert scorer.get(pipeline, SLOT, 1) is None
    client = scorer.client
    data_key = f"openanomaly:shards:{pipeline}:{SLOT}:data:0"
    assert 0 < client.pttl(data_key) <= TTL_MS, "data never outlives the store's TTL"
    scorer.finish(pipeline, SLOT, 0, {"series": 2, "status": "ok"})
    assert scorer.get(pipeline, SLOT, 0) is None
    assert reader.summaries(pipeline, SLOT) == {0: {"series": 2, "status": "ok"}}
    assert 0 < client.pttl(f"openanomaly:shards:{pipeline}:{SLOT}:results") <= TTL_MS


def test_handed_over_data_goes_to_the_handover_redis_when_one_is_set(
        redis_server, pipeline):  # noqa: F811
    from openanomaly.bootstrap import redis_context_store, redis_shard_store
    from openanomaly.config import AppConfig

    # The main Redis (ledger, broker) is not even reachable: nothing goes there.
    config = AppConfig.model_validate({"redis": {"url": "redis://127.0.0.1:1/0",
                                                 "handover_url": redis_server.url}})
    shards, contexts = redis_shard_store(config), redis_context_store(config)
    assert shards.plan(pipeline, SLOT, 2) == 2
    contexts.put(pipeline, "up", 60_000, batch(3))
    client = redis_server.client()
    assert client.get(f"openanomaly:shards:{pipeline}:{SLOT}:plan") == b"2"
    assert contexts.latest(pipeline) == 180_000
    client.close()


def test_a_shard_carries_its_series_raw_score_history(stores, pipeline):
    # What the reading worker found in the database is what the scoring worker calibrates
    # on, the same time a season earlier included.
    from openanomaly.domain.detection import ScoreHistory

    reader, scorer = stores
    history = ScoreHistory(np.array([1.0, 2.0, 3.0]), np.array([4.0, np.nan, 6.0]),
                           recurring=np.array([7.0, 8.0, np.nan]),
                           recent=np.array([[0.5, 1.5], [0.6, 1.6], [0.7, 1.7]]),
                           recent_count=np.array([10.0, 0.0, 30.0]))
    rows = np.array([0, 2])
    reader.put(pipeline, SLOT, 0, shard_data(batch(3), history, rows))
    got = scorer.get(pipeline, SLOT, 0)
    assert got is not None and got.history is not None
    np.testing.assert_array_equal(got.history.quantile, [1.0, 3.0])
    np.testing.assert_array_equal(got.history.peak, [4.0, 6.0])
    assert got.history.recurring is not None
    np.testing.assert_array_equal(got.history.recurring, [7.0, np.nan])
    assert got.history.recent is not None and got.history.recent_count is not None
    np.testing.assert_array_equal(got.history.recent, [[0.5, 1.5], [0.7, 1.7]])
    np.testing.assert_array_equal(got.history.recent_count, [10.0, 30.0])
    assert got.history.tail is None and got.history.count is None
