"""RedBeat with leader election done on every tick, so beat survives Redis trouble.

Stock RedBeat takes its lock once, blocking, when beat starts, and any Redis error or a
lost lock later ends the beat process. Here every beat ticks: a standby tries the lock
(without blocking) every ``standby_poll_s`` and does nothing else; the leader extends it
and sends the due entries. When Redis is unreachable the tick logs, waits and tries again;
when it is back the beat either still holds the lock and goes on, or finds it lost (it
expired during the outage, or Redis restarted empty) and competes for it again. Only the
leader reconciles the schedule with the pipelines, at once when the store reports a
change and at least every ``reconcile_interval_s``.

The lock's value names its holder (``host:pid:nonce``), which ``openanomaly status`` shows.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import redis
from celery.schedules import schedule
from redbeat import RedBeatScheduler
from redbeat.schedulers import get_redis
from redis.exceptions import LockError

from openanomaly.adapters.scheduler.redbeat_sync import RedBeatReconciler
from openanomaly.domain.errors import OpenAnomalyError
from openanomaly.ports import BeatTelemetry

log = logging.getLogger(__name__)

REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError)


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LeaderScheduler(RedBeatScheduler):  # type: ignore[misc]
    """Subclasses provide ``make_reconciler``; settings come as class attributes."""

    standby_poll_s = 1.0
    reconcile_interval_s = 30.0
    queue_poll_s = 5.0
    telemetry: BeatTelemetry | None = None
    lock_key: str | None
    lock_timeout: float

    def __init__(self, app: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(app, *args, **kwargs)
        # RedBeat's own start-up hook blocks on the lock when lock_key is set; leadership
        # is handled in tick instead, under the same key.
        self.election_key: str = str(self.lock_key)
        self.lock_key = None
        self.identity = holder_name()
        self.lock: Any = None
        self._reconciler: RedBeatReconciler | None = None
        self._next_reconcile = 0.0
        self._redis_down_since: float | None = None
        self._next_queue_poll = 0.0

    def make_reconciler(self) -> RedBeatReconciler:
        raise NotImplementedError

    @property
    def is_leader(self) -> bool:
        return self.lock is not None

    def tick(self, *args: Any, **kwargs: Any) -> float:
        try:
            leading = self._lead()
            self._report(leading)
            if not leading:
                self._redis_back()
                return self.standby_poll_s
            self._maybe_reconcile()
            interval = float(super().tick(*args, **kwargs))
            self._redis_back()
        except REDIS_DOWN as exc:
            if self._redis_down_since is None:
                self._redis_down_since = time.monotonic()
                log.warning("beat: Redis unreachable; retrying",
                            extra={"error": str(exc), "leader": self.is_leader})
            # A beat that cannot reach Redis sends nothing, lock or not.
            if self.telemetry is not None:
                self.telemetry.observe_leadership(False)
            return self.standby_poll_s
        until_reconcile = max(0.0, self._next_reconcile - time.monotonic())
        return min(interval, until_reconcile or self.standby_poll_s)

    def _report(self, leading: bool) -> None:
        """Leadership on every tick; the queue's length every ``queue_poll_s``."""
        if self.telemetry is None:
            return
        self.telemetry.observe_leadership(leading)
        now = time.monotonic()
        if now >= self._next_queue_poll:
            self._next_queue_poll = now + self.queue_poll_s
            queue = self.app.conf.task_default_queue
            self.telemetry.observe_queue(queue, int(get_redis(self.app).llen(queue)))

    def _redis_back(self) -> None:
        if self._redis_down_since is not None:
            log.warning("beat: Redis reachable again", extra={
                "down_s": round(time.monotonic() - self._redis_down_since, 1),
                "leader": self.is_leader})
            self._redis_down_since = None

    def _lead(self) -> bool:
        """Extend the lock if held, else try to take it. True when this beat leads."""
        if self.lock is not None:
            try:
                self.lock.extend(self.lock_timeout, replace_ttl=True)
                return True
            except LockError:
                # It expired while this beat could not reach Redis; another may hold it.
                log.warning("beat: lost the leader lock; standing by",
                            extra={"holder": self.identity, "lock": self.election_key})
                self.lock = None
        lock = get_redis(self.app).lock(self.election_key, timeout=self.lock_timeout)
        if not lock.acquire(blocking=False, token=self.identity):
            return False
        self.lock = lock
        self._next_reconcile = 0.0
        log.info("beat: became leader", extra={"holder": self.identity,
                                               "lock": self.election_key,
                                               "lock_timeout": self.lock_timeout})
        return True

    def reserve(self, entry: Any) -> Any:
        """Record the firing; an interval entry's last run goes on the slot grid, so a
        firing delayed by an outage or a failover does not shift every later one."""
        every = getattr(entry.schedule, "run_every", None)
        if not isinstance(entry.schedule, schedule) or not every:
            return next(entry)
        now = self.app.now().timestamp()
        step = every.total_seconds()
        return entry._next_instance(
            last_run_at=datetime.fromtimestamp(now - now % step, tz=UTC))

    def _maybe_reconcile(self) -> None:
        if self._reconciler is None:
            self._reconciler = self.make_reconciler()
        now = time.monotonic()
        try:
            changed = self._reconciler.store.refresh()
            if not changed and now < self._next_reconcile:
                return
            self._next_reconcile = now + self.reconcile_interval_s
            self._reconciler.reconcile()
            if self.telemetry is not None:
                self.telemetry.observe_reconcile(time.monotonic() - now)
        # A bad store edit must not stop the schedule; the next interval tries again.
        except OpenAnomalyError as exc:
            log.warning("beat schedule reconcile failed; retried next interval",
                        extra={"error": str(exc), "kind": type(exc).__name__})

    def close(self) -> None:
        try:
            super().close()
        except (*REDIS_DOWN, LockError) as exc:
            log.warning("beat: could not release the leader lock; it expires by itself",
                        extra={"error": str(exc)})
