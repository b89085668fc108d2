"""RedBeatReconciler and dispatch against a real redis-server."""

import uuid
from datetime import timedelta

import pytest
from celery import Celery
from celery.schedules import crontab, schedule
from redbeat import RedBeatSchedulerEntry
from redbeat.schedulers import get_redis

from openanomaly.adapters.config.yaml_store import YamlConfigStore
from openanomaly.adapters.scheduler.redbeat_sync import RedBeatReconciler, SyncReport
from openanomaly.adapters.scheduler.slot_ledger import RedisSlotLedger
from openanomaly.config import AppConfig, RedisSettings
from openanomaly.domain.pipeline import PipelineSpec
from openanomaly.entrypoints.celery_app import celery_settings
from openanomaly.services.slot_workflow import plan_due_slots
from tests.redis_server import redis_server  # noqa: F401  (fixture)


def spec(name, **fields):
    base = {"name": name, "query": "up", "step": "5s", "context": "10m", "horizon": "1m",
            "schedule": "5s"}
    return PipelineSpec(**{**base, **fields})


@pytest.fixture
def celery_app(redis_server):  # noqa: F811
    # A fresh app per test with its own key prefix: RedBeat caches its config on the app.
    app = Celery(f"test-{uuid.uuid4().hex[:6]}")
    app.conf.update(celery_settings(AppConfig(redis=RedisSettings(url=redis_server.url))),
                    redbeat_key_prefix=f"rb-{uuid.uuid4().hex[:8]}:")
    yield app
    app.close()


def entry(app, pipeline):
    return RedBeatSchedulerEntry.from_key(
        RedBeatSchedulerEntry.generate_key(app, f"openanomaly:{pipeline}"), app=app)


def test_reconcile_follows_the_store(celery_app):
    foreign = RedBeatSchedulerEntry(name="backup", task="other.task",
                                    schedule=schedule(timedelta(hours=1)), args=[1],
                                    app=celery_app).save()
    store = YamlConfigStore([spec("a"), spec("b", schedule="1m")])
    assert RedBeatReconciler(celery_app, store).reconcile() == SyncReport(added=["a", "b"])
    a = entry(celery_app, "a")
    assert a.task == "openanomaly.dispatch"
    assert a.args == ["a"]
    assert a.schedule.run_every == timedelta(seconds=5)
    # Interval entries fire on the epoch-aligned slot grid.
    assert a.last_run_at.timestamp() % 5 == 0
    assert RedBeatReconciler(celery_app, store).reconcile() == SyncReport(), "idempotent"

    # Changed schedule (cron in UTC and in a zone), disabled and removed pipelines.
    store = YamlConfigStore([
        spec("a", schedule="*/10 * * * *", check_window="10m"),
        spec("b", schedule="1m", enabled=False),
        spec("c", schedule="30 9 * * 1-5", timezone="Europe/Berlin", check_window="1h"),
    ])
    report = RedBeatReconciler(celery_app, store).reconcile()
    assert report == SyncReport(added=["c"], updated=["a"], removed=["b"])
    a = entry(celery_app, "a")
    assert isinstance(a.schedule, crontab)
    assert a.schedule._orig_minute == "*/10" and a.schedule._orig_hour == "*"
    # Beat evaluates crontabs in UTC; a zoned one fires on its minute every hour and
    # dispatch picks the slots that are due in the pipeline's zone.
    c = entry(celery_app, "c")
    assert c.schedule._orig_minute == "30" and c.schedule._orig_hour == "*"
    with pytest.raises(KeyError):
        entry(celery_app, "b")
    assert RedBeatReconciler(celery_app, store).reconcile() == SyncReport()

    store = YamlConfigStore([spec("c", schedule="30 9 * * 1-5", timezone="Europe/Berlin",
                                  check_window="1h")])
    assert RedBeatReconciler(celery_app, store).reconcile() == SyncReport(removed=["a"])
    kept = RedBeatSchedulerEntry.from_key(foreign.key, app=celery_app)
    assert kept.task == "other.task" and kept.args == [1], "foreign entries untouched"
    scheduled = get_redis(celery_app).zrange(celery_app.redbeat_conf.schedule_key, 0, -1)
    assert sorted(scheduled) == sorted(
        [foreign.key, entry(celery_app, "c").key])


def test_dispatch_sends_missed_slots_oldest_first(redis_server):  # noqa: F811
    ledger = RedisSlotLedger(redis_server.client(), prefix=f"t-{uuid.uuid4().hex[:8]}")
    pipeline = spec("late", delay="2s")
    now = 1_700_000_001_000
    latest = now - now % 5000
    ledger.complete("late", latest - 3 * 5000)
    sent = []
    plan = plan_due_slots(pipeline, ledger, now, 3_600_000,
                          send=lambda name, slot, countdown: sent.append(
                                  (name, slot, countdown)))
    assert plan.skipped == 0
    # Only the newest slot waits for late data: 2 s after the slot, 1 s from now.
    assert sent == [("late", latest - 10_000, 0.0), ("late", latest - 5000, 0.0),
                    ("late", latest, 1.0)]

    ledger.complete("late", latest)
    sent.clear()
    assert plan_due_slots(pipeline, ledger, now, 3_600_000,
                          send=lambda *a: sent.append(a)).slots == []
    assert sent == []


def test_dispatch_counts_misses_beyond_the_horizon(redis_server):  # noqa: F811
    ledger = RedisSlotLedger(redis_server.client(), prefix=f"t-{uuid.uuid4().hex[:8]}")
    now = 1_700_000_000_000
    ledger.complete("old", now - 100 * 5000)
    sent = []
    plan = plan_due_slots(spec("old"), ledger, now, 20_000,
                          send=lambda *a: sent.append(a))
    assert [slot for _, slot, _ in sent] == [now - 20_000, now - 15_000, now - 10_000,
                                             now - 5000, now]
    assert plan.skipped == 95
    assert ledger.skipped("old") == 95
    assert ledger.client.get(f"{ledger.prefix}:slots:old:skipped") == b"95", "documented key"
