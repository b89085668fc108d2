"""Leader election of the beat scheduler against real redis-servers."""

import uuid

import pytest
from celery import Celery
from redbeat import RedBeatSchedulerEntry
from redbeat.schedulers import get_redis

from openanomaly.adapters.config.sqlite_store import SqliteStore
from openanomaly.adapters.config.yaml_store import YamlConfigStore
from openanomaly.adapters.scheduler.redbeat_leader import LeaderScheduler
from openanomaly.adapters.scheduler.redbeat_sync import RedBeatReconciler
from openanomaly.config import AppConfig, RedisSettings, SchedulerSettings, load_config
from openanomaly.domain.pipeline import PipelineSpec
from openanomaly.entrypoints.celery_app import celery_settings
from tests.redis_server import RedisServer

PIPELINES = """pipelines:
  - name: cpu
    query: up
    schedule: {schedule}
"""


def make_app(url: str) -> Celery:
    app = Celery(f"test-{uuid.uuid4().hex[:6]}")
    config = AppConfig(redis=RedisSettings(url=url), scheduler=SchedulerSettings(lock_timeout=5))
    app.conf.update(celery_settings(config), redbeat_key_prefix=f"rb-{uuid.uuid4().hex[:8]}:")
    return app


class Scheduler(LeaderScheduler):
    store: YamlConfigStore

    def make_reconciler(self) -> RedBeatReconciler:
        return RedBeatReconciler(self.app, self.store)


def scheduler(app: Celery, store: YamlConfigStore) -> Scheduler:
    made = Scheduler(app, lazy=False)
    made.store = store
    made.reconcile_interval_s = 3600
    return made


@pytest.fixture
def server(tmp_path):
    started = RedisServer(tmp_path, persistent=True)
    yield started
    started.stop()


@pytest.fixture
def pipelines_file(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(PIPELINES.format(schedule="1m"))
    return path


def watched_store(path) -> YamlConfigStore:
    return YamlConfigStore(load_config(path).pipelines, files=[path],
                           reload=lambda: load_config(path).pipelines, check_every_s=0)


def holder(app: Celery) -> str | None:
    return get_redis(app).get(app.redbeat_conf.lock_key)


def entries(app: Celery) -> dict[str, float]:
    client = get_redis(app)
    found = {}
    for key in client.zrange(app.redbeat_conf.schedule_key, 0, -1):
        entry = RedBeatSchedulerEntry.from_key(key, app=app)
        found[entry.name] = entry.schedule.run_every.total_seconds()
    return found


def test_one_leader_reconciles_and_a_standby_waits(server, pipelines_file):
    app = make_app(server.url)
    store = watched_store(pipelines_file)
    first, second = scheduler(app, store), scheduler(app, store)

    first.tick()
    assert first.is_leader and holder(app) == first.identity
    assert entries(app) == {"openanomaly:cpu": 60}
    assert second.tick() == second.standby_poll_s
    assert not second.is_leader

    # An edit of the pipelines file is reconciled by the leader on its next tick, not
    # at the next periodic sync an hour away.
    pipelines_file.write_text(PIPELINES.format(schedule="5m"))
    first.tick()
    assert entries(app) == {"openanomaly:cpu": 300}

    # A bad edit keeps the previous pipelines.
    pipelines_file.write_text(PIPELINES.format(schedule="every now and then"))
    first.tick()
    assert entries(app) == {"openanomaly:cpu": 300}

    # The leader goes away cleanly: the standby takes over on its next tick.
    first.close()
    assert holder(app) is None
    second.tick()
    assert second.is_leader and holder(app) == second.identity
    second.close()


def test_a_leader_whose_lock_was_taken_stands_by(server, pipelines_file):
    app = make_app(server.url)
    leader = scheduler(app, watched_store(pipelines_file))
    leader.tick()
    # As if the lock expired while this beat was paused and another beat took it.
    get_redis(app).set(app.redbeat_conf.lock_key, "other-host:1:abc", px=5000)
    assert leader.tick() == leader.standby_poll_s
    assert not leader.is_leader
    assert holder(app) == "other-host:1:abc"


def test_beat_rides_out_a_redis_restart(server, pipelines_file):
    app = make_app(server.url)
    leader = scheduler(app, watched_store(pipelines_file))
    leader.tick()
    assert leader.is_leader
    server.stop()
    # Redis down: the tick neither raises nor gives up leadership it may still hold.
    assert leader.tick() == leader.standby_poll_s
    restarted = server.restarted()
    try:
        leader.tick()
        assert leader.is_leader and holder(app) == leader.identity
        assert list(entries(app)) == ["openanomaly:cpu"]
    finally:
        leader.close()
        restarted.stop()


def test_the_leader_follows_a_change_another_process_makes_in_the_sqlite_store(server,
                                                                              tmp_path):
    app = make_app(server.url)
    path = tmp_path / "store.db"
    beat_view, api_view = SqliteStore(path), SqliteStore(path)
    leader = scheduler(app, beat_view)
    leader.tick()
    assert entries(app) == {}
    cpu = PipelineSpec(name="cpu", query="up", schedule="1m")
    api_view.create(cpu)
    leader.tick()
    assert entries(app) == {"openanomaly:cpu": 60}, "reconciled at once, not an hour later"
    api_view.update(cpu.model_copy(update={"enabled": False}), version=1)
    leader.tick()
    assert entries(app) == {}, "a disabled pipeline leaves the schedule"
    leader.close()
