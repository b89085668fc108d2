"""The ShardStore port in Redis: the data of each shard of a sharded slot, from the worker
that read the slot to the workers that score its shards.

Keys, under ``{prefix}:shards:{pipeline}:{slot}`` (``pipeline`` is the ledger key):
  ``:plan``        the slot's shard count, set once: a coordinator that runs the slot
                   again splits it the same way
  ``:data:{i}``    shard i's series, context and calibration history (msgpack, arrays as
                   raw little-endian bytes), deleted once the shard is scored
  ``:results``     hash of each scored shard's summary (JSON)
Every key expires after ``ttl_ms``: a slot abandoned half way leaves nothing behind.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import numpy as np
import redis

from openanomaly.domain.detection import ScoreHistory
from openanomaly.domain.series import SeriesBatch
from openanomaly.domain.shards import ShardData


class _Array(msgspec.Struct, array_like=True):
    shape: list[int]
    data: bytes


class _Shard(msgspec.Struct, array_like=True):
    labels: list[dict[str, str]]
    timestamps_ms: _Array
    values: _Array
    history: list[_Array | None] | None


def _pack(array: np.ndarray, dtype: str) -> _Array:
    return _Array(list(array.shape), np.ascontiguousarray(array, dtype=dtype).tobytes())


def _unpack(packed: _Array, dtype: str) -> np.ndarray:
    return np.frombuffer(packed.data, dtype=dtype).reshape(packed.shape).copy()


def encode(data: ShardData) -> bytes:
    history = None
    if data.history is not None:
        h = data.history
        history = [None if a is None else _pack(a, "<f8")
                   for a in (h.quantile, h.peak, h.tail, h.count, h.recurring,
                             h.recent, h.recent_count)]
    return msgspec.msgpack.encode(_Shard(
        list(data.batch.labels), _pack(data.batch.timestamps_ms, "<i8"),
        _pack(data.batch.values, "<f8"), history))


def decode(raw: bytes) -> ShardData:
    shard = msgspec.msgpack.decode(raw, type=_Shard)
    batch = SeriesBatch(shard.labels, _unpack(shard.timestamps_ms, "<i8"),
                        _unpack(shard.values, "<f8"))
    if shard.history is None:
        return ShardData(batch, None)
    quantile, peak, *rest = (None if a is None else _unpack(a, "<f8") for a in shard.history)
    assert quantile is not None and peak is not None
    return ShardData(batch, ScoreHistory(quantile, peak, *rest))


class RedisShardStore:
    def __init__(self, client: redis.Redis, ttl_ms: int, prefix: str = "openanomaly") -> None:
        self.client = client
        self.ttl_ms = ttl_ms
        self.prefix = prefix

    def _key(self, pipeline: str, slot_ms: int, *parts: str) -> str:
        return ":".join((self.prefix, "shards", pipeline, str(slot_ms), *parts))

    def plan(self, pipeline: str, slot_ms: int, count: int) -> int:
        key = self._key(pipeline, slot_ms, "plan")
        self.client.set(key, count, nx=True, px=self.ttl_ms)
        return int(self.client.get(key) or count)

    def put(self, pipeline: str, slot_ms: int, index: int, data: ShardData) -> None:
        self.client.set(self._key(pipeline, slot_ms, "data", str(index)), encode(data),
                        px=self.ttl_ms)

    def get(self, pipeline: str, slot_ms: int, index: int) -> ShardData | None:
        raw: Any = self.client.get(self._key(pipeline, slot_ms, "data", str(index)))
        return None if raw is None else decode(raw)

    def finish(self, pipeline: str, slot_ms: int, index: int,
               summary: dict[str, Any]) -> None:
        results = self._key(pipeline, slot_ms, "results")
        with self.client.pipeline() as batch:
            batch.hset(results, str(index), json.dumps(summary))
            batch.pexpire(results, self.ttl_ms)
            batch.delete(self._key(pipeline, slot_ms, "data", str(index)))
            batch.execute()

    def summaries(self, pipeline: str, slot_ms: int) -> dict[int, dict[str, Any]]:
        raw: dict[Any, Any] = self.client.hgetall(self._key(pipeline, slot_ms, "results"))
        return {int(k): json.loads(v) for k, v in raw.items()}

    def forget(self, pipeline: str, slot_ms: int) -> None:
        self.client.delete(self._key(pipeline, slot_ms, "plan"),
                           self._key(pipeline, slot_ms, "results"))
