"""The SlotLedger port in Redis: per-pipeline slot bookkeeping shared by every worker and
beat. ``openanomaly status`` shows what it holds.

Keys, under ``{prefix}:slots:{pipeline}`` (``pipeline`` is the ledger key: the name, or
``name/mode`` for runs of another mode than the pipeline's own):
  ``:last``          the latest completed slot (ms); only ever moves forward
  ``:done``          sorted set of completed slots (score = slot), trimmed to a window, so
                     a redelivered or duplicate task of a finished slot is skipped
  ``:claim:{slot}``  the worker running that slot, with an expiry longer than a task's
                     hard time limit, so a worker killed mid-run frees the slot
  ``:error``         hash of the last failure (slot, kind, error, at), cleared by the next
                     success
  ``:skipped``       count of missed slots that were older than the catch-up horizon
                     and so never ran
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from redis.typing import EncodableT, FieldT

from openanomaly.domain.redaction import redact
from openanomaly.domain.slots import SlotStatus

log = logging.getLogger(__name__)

# Advance ``last`` and record the slot atomically: a late finisher of an older slot must
# not move ``last`` back, and a reader must never see ``done`` without ``last``.
_COMPLETE = """
local slot = tonumber(ARGV[1])
redis.call('ZADD', KEYS[2], slot, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (slot - tonumber(ARGV[2])))
local newest = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
if newest[2] then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (tonumber(newest[2]) - tonumber(ARGV[2])))
end
local last = tonumber(redis.call('GET', KEYS[1]))
if last == nil or slot > last then
  redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('DEL', KEYS[3])
if redis.call('GET', KEYS[4]) == ARGV[3] then
  redis.call('DEL', KEYS[4])
end
return redis.call('GET', KEYS[1])
"""

# Only the claim's owner may release it; after an expiry another worker may hold it.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisSlotLedger:
    def __init__(
        self, client: redis.Redis, prefix: str = "openanomaly",
        done_window_ms: int = 7 * 86_400_000,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.done_window_ms = done_window_ms
        self._complete = client.register_script(_COMPLETE)
        self._release = client.register_script(_RELEASE)

    def _key(self, pipeline: str, *parts: str) -> str:
        return ":".join((self.prefix, "slots", pipeline, *parts))

    def claim(self, pipeline: str, slot_ms: int, worker: str, ttl_ms: int) -> bool:
        """True when ``worker`` now holds the slot; False when another worker does."""
        taken = self.client.set(self._key(pipeline, "claim", str(slot_ms)), worker,
                                nx=True, px=ttl_ms)
        return bool(taken)

    def claimed_by(self, pipeline: str, slot_ms: int) -> str | None:
        owner = self.client.get(self._key(pipeline, "claim", str(slot_ms)))
        return _text(owner)

    def release(self, pipeline: str, slot_ms: int, worker: str) -> bool:
        released = self._release(keys=[self._key(pipeline, "claim", str(slot_ms))],
                                 args=[worker])
        return bool(released)

    def done(self, pipeline: str, slot_ms: int) -> bool:
        return self.client.zscore(self._key(pipeline, "done"), str(slot_ms)) is not None

    def complete(self, pipeline: str, slot_ms: int, worker: str = "") -> int:
        """Mark the slot done, advance last-completed, clear the last error and release
        ``worker``'s claim. Returns last-completed after the update."""
        last = self._complete(
            keys=[self._key(pipeline, "last"), self._key(pipeline, "done"),
                  self._key(pipeline, "error"), self._key(pipeline, "claim", str(slot_ms))],
            args=[slot_ms, self.done_window_ms, worker],
        )
        return int(_text(last) or slot_ms)

    def last_completed(self, pipeline: str) -> int | None:
        value = _text(self.client.get(self._key(pipeline, "last")))
        return int(value) if value is not None else None

    def record_error(self, pipeline: str, slot_ms: int, error: BaseException) -> None:
        fields: dict[FieldT, EncodableT] = {
            "slot": str(slot_ms), "kind": type(error).__name__,
            "error": redact(str(error))[:2000], "at": str(int(time.time() * 1000))}
        self.client.hset(self._key(pipeline, "error"), mapping=fields)

    def last_error(self, pipeline: str) -> dict[str, str] | None:
        raw: dict[Any, Any] = self.client.hgetall(self._key(pipeline, "error"))
        return {str(_text(k)): str(_text(v)) for k, v in raw.items()} or None

    def record_skipped(self, pipeline: str, count: int) -> None:
        self.client.incrby(self._key(pipeline, "skipped"), count)

    def skipped(self, pipeline: str) -> int:
        return int(_text(self.client.get(self._key(pipeline, "skipped"))) or 0)

    def running(self, pipeline: str) -> dict[int, str]:
        prefix = self._key(pipeline, "claim", "")
        found = {}
        for key in self.client.scan_iter(match=f"{prefix}*", count=1000):
            slot, owner = str(_text(key))[len(prefix):], _text(self.client.get(key))
            if slot.isdigit() and owner is not None:  # not another pipeline's name prefix
                found[int(slot)] = owner
        return found

    def status(self, pipeline: str) -> SlotStatus:
        count = int(self.client.zcard(self._key(pipeline, "done")))
        return SlotStatus(pipeline, self.last_completed(pipeline), count,
                          self.last_error(pipeline), self.skipped(pipeline),
                          self.running(pipeline))


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)
