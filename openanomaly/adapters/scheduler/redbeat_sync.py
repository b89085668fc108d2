"""Keeps RedBeat's schedule in Redis equal to the enabled pipelines of the ConfigStore.

Every entry this module owns is named ``openanomaly:<pipeline>``; entries under other names
(added by hand or by other apps sharing the Redis) are never touched. Each entry fires
``openanomaly.dispatch(pipeline)``, which works out the slots due from the pipeline's own
schedule and time zone, so beat only has to fire at (or shortly after) every slot.

Time zones: RedBeat stores a crontab without its ``nowfun``, so a per-entry time zone does
not survive the round trip through Redis and beat evaluates every crontab in the app's
time zone (UTC). A cron pipeline in another zone therefore gets a crontab that fires on
its minute field every hour (every minute where the zone has a non-whole-hour offset), and
dispatch, which evaluates the cron expression in the pipeline's zone, sends only the slots
that are really due. Interval pipelines fire every interval; beat counts the interval from
its last firing, so the entry's first run is set on the epoch-aligned slot grid.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from celery import Celery
from celery.schedules import crontab, schedule
from redbeat import RedBeatSchedulerEntry
from redbeat.decoder import RedBeatJSONEncoder
from redbeat.schedulers import ensure_conf, get_redis

from openanomaly.domain.errors import ConfigError
from openanomaly.domain.schedule import Schedule
from openanomaly.domain.slots import latest_due
from openanomaly.domain.timeutil import from_ms
from openanomaly.ports import ConfigStore

log = logging.getLogger(__name__)

ENTRY_PREFIX = "openanomaly:"
DISPATCH_TASK = "openanomaly.dispatch"
_CRON_FIELDS = 5


@dataclass(frozen=True)
class SyncReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)


def entry_name(pipeline: str) -> str:
    return ENTRY_PREFIX + pipeline


def _whole_hour_offsets(zone: ZoneInfo, now: datetime) -> bool:
    # Sampling both halves of the year covers daylight-saving time.
    for moment in (now, now + timedelta(days=182)):
        offset = moment.astimezone(zone).utcoffset() or timedelta()
        if offset.total_seconds() % 3600:
            return False
    return True


def beat_schedule(spec: Schedule, now: datetime | None = None) -> schedule | crontab:
    """The celery schedule that makes beat fire at every slot of ``spec``."""
    if spec.interval_seconds is not None:
        return schedule(run_every=timedelta(seconds=spec.interval_seconds))
    assert spec.expression is not None
    parts = spec.expression.split()
    if len(parts) != _CRON_FIELDS:
        raise ConfigError(
            f"cron schedule {spec.expression!r} has {len(parts)} fields; celery beat takes "
            "5 (minute hour day-of-month month day-of-week)")
    minute, hour, day_of_month, month, day_of_week = parts
    if spec.timezone == "UTC":
        return crontab(minute=minute, hour=hour, day_of_month=day_of_month,
                       month_of_year=month, day_of_week=day_of_week)
    # See the module docstring: beat fires often enough, dispatch picks the real slots.
    zone = ZoneInfo(spec.timezone)
    if _whole_hour_offsets(zone, now or datetime.now(UTC)):
        return crontab(minute=minute)
    return crontab()


def _encoded(value: Any) -> Any:
    """``value`` as RedBeat stores it, as plain JSON, so stored and wanted compare equal."""
    return json.loads(json.dumps(value, cls=RedBeatJSONEncoder))


class RedBeatReconciler:
    def __init__(self, celery_app: Celery, store: ConfigStore) -> None:
        self.app = celery_app
        self.store = store
        ensure_conf(celery_app)

    def _key(self, name: str) -> str:
        return str(RedBeatSchedulerEntry.generate_key(self.app, name))

    def _wanted(self) -> dict[str, RedBeatSchedulerEntry]:
        entries: dict[str, RedBeatSchedulerEntry] = {}
        for spec in self.store.list_pipelines():
            if not spec.enabled:
                continue
            name = entry_name(spec.name)
            entries[name] = RedBeatSchedulerEntry(
                name=name, task=DISPATCH_TASK, schedule=beat_schedule(spec.schedule_spec),
                args=[spec.name], kwargs={}, options={}, app=self.app)
        return entries

    def _existing(self) -> dict[str, Any]:
        """Stored definitions of our entries, keyed by entry name, as plain JSON."""
        client = get_redis(self.app)
        prefix = self._key(ENTRY_PREFIX)
        found: dict[str, Any] = {}
        for raw_key in client.scan_iter(match=prefix + "*"):
            key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
            definition = client.hget(key, "definition")
            if not definition:
                continue
            found[key[len(self._key("")):]] = json.loads(definition)
        return found

    @staticmethod
    def _definition(entry: RedBeatSchedulerEntry) -> Any:
        return _encoded({"name": entry.name, "task": entry.task, "args": entry.args,
                         "kwargs": entry.kwargs, "options": entry.options,
                         "schedule": entry.schedule, "enabled": entry.enabled})

    def _first_run(self, pipeline: str) -> datetime | None:
        """Puts a new interval entry's firings on the slot grid; cron needs no help."""
        spec = self.store.get_pipeline(pipeline).schedule_spec
        if spec.interval_seconds is None:
            return None
        now_ms = int(datetime.now(UTC).timestamp() * 1000)
        return from_ms(latest_due(spec, now_ms))

    def reconcile(self) -> SyncReport:
        wanted = self._wanted()
        existing = self._existing()
        report = SyncReport()
        for name, entry in sorted(wanted.items()):
            stored = existing.get(name)
            if stored is not None and stored == self._definition(entry):
                continue
            pipeline = entry.args[0]
            if stored is None:
                entry.last_run_at = self._first_run(pipeline)
                report.added.append(pipeline)
            else:
                # save() keeps the stored last run, so a changed entry is not fired twice.
                entry.last_run_at = RedBeatSchedulerEntry.from_key(
                    self._key(name), app=self.app).last_run_at
                report.updated.append(pipeline)
            entry.save()
        for name in sorted(set(existing) - set(wanted)):
            RedBeatSchedulerEntry(name=name, app=self.app).delete()
            report.removed.append(name[len(ENTRY_PREFIX):])
        if report.changed:
            log.info("beat schedule reconciled", extra={
                "added": report.added, "updated": report.updated, "removed": report.removed})
        return report
