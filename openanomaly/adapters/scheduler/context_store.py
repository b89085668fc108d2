"""The ContextStore port in Redis: each pipeline's latest context, shared by every worker,
so whichever worker reads a pipeline's next slot reads only the steps since.

Keys, under ``{prefix}:contexts:{pipeline}``:
  ``:meta``                    hash: the query and step the context was read for, its last
                               timestamp (``end_ms``), its generation and number of parts
  ``:{generation}:{part}``     the rows of one part (at most PART_SERIES series: Redis
                               refuses values over 512 MB), encoded as shard data
A new context is written under a new generation before ``:meta`` points to it, and the
previous generation is deleted after: a reader sees one whole context or none. Every key
expires after ``ttl_ms``.
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import redis

from openanomaly.adapters.scheduler.shard_store import decode, encode
from openanomaly.domain.series import SeriesBatch
from openanomaly.domain.shards import ShardData

PART_SERIES = 2000


class RedisContextStore:
    def __init__(self, client: redis.Redis, ttl_ms: int, prefix: str = "openanomaly",
                 part_series: int = PART_SERIES) -> None:
        self.client = client
        self.ttl_ms = ttl_ms
        self.prefix = prefix
        self.part_series = part_series

    def _key(self, pipeline: str, *parts: str) -> str:
        return ":".join((self.prefix, "contexts", pipeline, *parts))

    def _meta(self, pipeline: str) -> dict[str, str]:
        raw: dict[Any, Any] = self.client.hgetall(self._key(pipeline, "meta"))
        return {k.decode(): v.decode() for k, v in raw.items()}

    def latest(self, pipeline: str) -> int | None:
        end = self.client.hget(self._key(pipeline, "meta"), "end_ms")
        return None if end is None else int(end)

    def get(self, pipeline: str, query: str, step_ms: int) -> SeriesBatch | None:
        meta = self._meta(pipeline)
        if not meta or meta["query"] != query or int(meta["step_ms"]) != step_ms:
            return None
        keys = [self._key(pipeline, meta["generation"], str(i))
                for i in range(int(meta["parts"]))]
        raw: list[Any] = self.client.mget(keys)
        if any(one is None for one in raw):
            return None  # replaced or expired meanwhile: the caller reads in full
        parts = [decode(one).batch for one in raw]
        return SeriesBatch([labels for part in parts for labels in part.labels],
                           parts[0].timestamps_ms,
                           np.concatenate([part.values for part in parts]))

    def put(self, pipeline: str, query: str, step_ms: int, batch: SeriesBatch) -> None:
        if batch.timestamps_ms.size == 0 or batch.n_series == 0:
            return  # nothing a later read could take
        previous = self._meta(pipeline)
        generation = uuid.uuid4().hex[:12]
        count = 0
        with self.client.pipeline(transaction=False) as write:
            for first in range(0, batch.n_series, self.part_series):
                rows = slice(first, first + self.part_series)
                part = SeriesBatch(batch.labels[rows], batch.timestamps_ms, batch.values[rows])
                write.set(self._key(pipeline, generation, str(count)),
                          encode(ShardData(part, None)), px=self.ttl_ms)
                count += 1
            write.execute()
        meta = self._key(pipeline, "meta")
        with self.client.pipeline() as swap:
            swap.hset(meta, mapping={"query": query, "step_ms": step_ms, "parts": count,
                                     "generation": generation,
                                     "end_ms": int(batch.timestamps_ms[-1])})
            swap.pexpire(meta, self.ttl_ms)
            swap.execute()
        if previous and previous.get("generation") != generation:
            old = [self._key(pipeline, previous["generation"], str(i))
                   for i in range(int(previous.get("parts", 0)))]
            if old:
                self.client.delete(*old)
