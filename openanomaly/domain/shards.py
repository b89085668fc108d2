"""Splitting one slot of a large pipeline into shards that separate workers score.

A series belongs to the shard its label set hashes to, so the split does not depend on
the order the database answers in, or on which other series it returns: a slot read
twice (a coordinator that died and ran again) puts every series it saw both times in the
same shard, and a shard that completed once is never scored again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from openanomaly.domain.detection import ScoreHistory
from openanomaly.domain.series import SeriesBatch


def shard_count(n_series: int, shard_series: int) -> int:
    """Shards for ``n_series`` at about ``shard_series`` each (at least one)."""
    return max(1, -(-n_series // shard_series))


def shard_of(labels: Mapping[str, str], count: int) -> int:
    """The shard of one series: a hash of its sorted labels, stable across processes
    (Python's own ``hash`` of a string is salted per process)."""
    text = "\x00".join(f"{k}\x01{v}" for k, v in sorted(labels.items()))
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


def partition(labels: Sequence[Mapping[str, str]], count: int) -> list[np.ndarray]:
    """Row indices of each of ``count`` shards; every row is in exactly one."""
    owner = np.fromiter((shard_of(one, count) for one in labels), dtype=np.int64,
                        count=len(labels))
    return [np.flatnonzero(owner == index) for index in range(count)]


def shard_key(ledger_key: str, index: int, count: int) -> str:
    """The ledger key of one shard of a slot: its own claim and done marks."""
    return f"{ledger_key}/shard-{index}-of-{count}"


@dataclass(frozen=True)
class ShardData:
    """What a shard's task needs to score its series without reading the database: the
    rows of the slot's batch and of its calibration history."""

    batch: SeriesBatch
    history: ScoreHistory | None


def shard_data(batch: SeriesBatch, history: ScoreHistory | None,
               rows: np.ndarray) -> ShardData:
    picked = SeriesBatch([batch.labels[i] for i in rows], batch.timestamps_ms,
                         batch.values[rows])
    if history is None:
        return ShardData(picked, None)
    return ShardData(picked, history.rows(rows))
