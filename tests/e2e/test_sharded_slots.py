"""One pipeline's slots split into shards that two Celery workers share, with a worker's
run killed in the middle of a shard: every series of every slot is scored exactly once.

Real processes throughout: two ``openanomaly worker`` processes on a real redis-server, a
real Prometheus, and the slow model of tests/slow_model.py, so a shard can be killed while
its worker runs it.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator

import numpy as np
import pytest

from openanomaly.adapters.models.local_engine import LocalModelEngine
from openanomaly.adapters.models.settings import SeasonalNaiveSettings
from openanomaly.adapters.scheduler.slot_ledger import RedisSlotLedger
from openanomaly.adapters.tsdb.prometheus import PrometheusAdapter
from openanomaly.config import load_config
from openanomaly.domain.series import Series
from openanomaly.services.runs import run_pipeline
from tests.e2e.test_cli import recent_history
from tests.e2e.test_worker_failures import (
    BACKOFF_MAX_S,
    HARD_LIMIT_S,
    SEASON,
    SOFT_LIMIT_S,
    VISIBILITY_S,
    RecordingTSDB,
    alive,
    wait_for,
    worker_pair,
)
from tests.processes import stored_samples
from tests.redis_server import redis_server  # noqa: F401  (fixture)

PIPELINE = "sharded"
SERIES = 8
SHARD_SERIES = 3


def sharded_config(prometheus_url: str, metric: str, redis_url: str) -> str:
    return (f"prometheus:\n  url: {prometheus_url}\npipelines:\n"
            f"  - name: {PIPELINE}\n    query: {metric}\n    model: slow\n"
            "    step: 5s\n    context: 10m\n    horizon: 1m\n    schedule: 5s\n"
            "models:\n  slow:\n    backend: custom\n"
            f"    factory: tests.slow_model:slow_seasonal_naive\n    season: {SEASON}\n"
            f"scheduler:\n  kind: celery\n  task_soft_time_limit: {SOFT_LIMIT_S}\n"
            f"  task_time_limit: {HARD_LIMIT_S}\n  retry_backoff_max: {BACKOFF_MAX_S}\n"
            f"  visibility_timeout: {VISIBILITY_S}\n  shard_series: {SHARD_SERIES}\n"
            f"redis:\n  url: {redis_url}\n")


@pytest.fixture
def fleet(request, tmp_path, prometheus, prom_client, unique,
          redis_server) -> Iterator[tuple]:  # noqa: F811
    metric = unique("e2e_shards")
    base = recent_history(metric)
    series = [Series.of({**base.labels, "instance": f"node-{n}"}, base.timestamps_ms,
                        base.values * (1 + n / 10) + n) for n in range(SERIES)]
    prom_client.write(series)
    last = int(base.timestamps_ms[-1])
    with worker_pair(request, tmp_path, redis_server,
                     lambda url: sharded_config(prometheus.url, metric, url)) as (
            config, workers, client, broker):
        yield (metric, config, [last - 60_000, last - 30_000], workers, client, broker,
               prometheus.url)


def clean_runs(config_path, slots) -> dict:
    """Each slot run in this process, unsharded, with the plain seasonal naive model (what
    the slow one answers); writes recorded instead of sent."""
    config = load_config(config_path, environ={})
    spec = next(p for p in config.pipelines if p.name == PIPELINE)
    engine = LocalModelEngine({"slow": SeasonalNaiveSettings(season=SEASON)})
    expected: dict = {}
    with PrometheusAdapter(config.prometheus) as reader:
        for slot in slots:
            tsdb = RecordingTSDB(reader)
            result = run_pipeline(spec, slot, tsdb, engine)
            assert result.status == "ok" and result.series == SERIES
            for one in tsdb.written:
                key = frozenset(one.labels.items())
                times, values = expected.get(key, (np.array([], np.int64), np.array([])))
                expected[key] = (np.concatenate([times, one.timestamps_ms]),
                                 np.concatenate([values, one.values]))
    return {key: by_time(*pair) for key, pair in expected.items()}


def by_time(times: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(times, kind="stable")
    return times[order], values[order]


@pytest.mark.slow
def test_two_workers_share_a_slot_and_a_killed_shard_is_scored_once(fleet):
    metric, config, slots, workers, client, broker, prometheus_url = fleet
    ledger = RedisSlotLedger(broker)
    slot_tasks = [client.send_task("openanomaly.run_pipeline", args=[PIPELINE, slot]).id
                  for slot in slots]
    # Kill the first shard run any worker starts, inside the model's sleep.
    wait_for(lambda: any('msg="shard started"' in w.text() for w in workers), 90,
             "a shard's start", workers)
    victim = next(w for w in workers if 'msg="shard started"' in w.text())
    shard_id = re.search(r'msg="shard started" .*task_id=(\S+)', victim.text()).group(1)
    children = victim.pool_children()
    assert len(children) == 1
    os.kill(children[0], signal.SIGKILL)
    wait_for(lambda: not alive(children[0]), 10, "the pool child's death", workers)
    for slot in slots:
        wait_for(lambda s=slot: ledger.done(PIPELINE, s), 120, f"slot {slot} done", workers)

    text = "".join(w.text() for w in workers)
    assert "WorkerLostError" in victim.text(), "the shard died with its process"
    assert text.count(f"openanomaly.run_shard[{shard_id}] received") == 2, "redelivered"
    # Each slot was read once and split; every shard ran to its end exactly once, and
    # together the shards of a slot scored each of its series.
    for slot, task_id in zip(slots, slot_tasks, strict=True):
        answer = client.AsyncResult(task_id).get(timeout=30)
        assert answer["status"] == "sharded" and answer["series"] == SERIES
        finished = [int(n) for n in re.findall(
            rf'msg="run finished" pipeline={PIPELINE} at={slot} .*? series=(\d+)', text)]
        assert sum(finished) == SERIES and len(finished) == answer["queued"], finished
        assert ledger.claimed_by(PIPELINE, slot) is None, "the last shard freed the claim"
    assert sum(w.text().count('msg="sharded slot done"') for w in workers) == len(slots)
    # Prometheus holds what an unsharded run of each slot writes: every series, every
    # timestamp, the same values.
    expected = clean_runs(config, slots)
    stored = stored_samples(prometheus_url,
                            f'{{source_metric="{metric}",pipeline="{PIPELINE}"}}',
                            slots[0] - 20 * 60_000, slots[-1] + 10 * 60_000)
    assert set(stored) == set(expected)
    for key, (times, values) in expected.items():
        np.testing.assert_array_equal(stored[key][0], times, err_msg=str(dict(key)))
        np.testing.assert_array_equal(stored[key][1], values, err_msg=str(dict(key)))
    assert ledger.last_error(PIPELINE) is None
