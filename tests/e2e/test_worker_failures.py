"""A Celery worker killed with ``kill -9`` in the middle of a run loses nothing.

Real processes throughout: two ``openanomaly worker`` processes on a real redis-server, a
real Prometheus, and a model (tests/slow_model.py) that sleeps before it answers so the
run can be killed while it holds the task. Each test checks that the slot is completed
in the ledger and that Prometheus holds exactly the samples a clean run of the same slot
writes: every series, every timestamp, the same values, once.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from celery import Celery

from openanomaly.adapters.models.local_engine import LocalModelEngine
from openanomaly.adapters.models.settings import SeasonalNaiveSettings
from openanomaly.adapters.scheduler.slot_ledger import RedisSlotLedger
from openanomaly.adapters.tsdb.prometheus import PrometheusAdapter
from openanomaly.config import load_config
from openanomaly.domain.detection import StoredScoreStats
from openanomaly.domain.series import Series
from openanomaly.entrypoints.celery_app import celery_settings
from openanomaly.services.runs import run_pipeline
from tests.e2e.test_cli import recent_history, valid_config, write_config
from tests.processes import CLI, stored_samples
from tests.redis_server import redis_server  # noqa: F401  (fixture)
from tests.slow_model import SLEEP_ENV

ROOT = Path(__file__).resolve().parents[2]
TASK = "openanomaly.run_pipeline"
PIPELINE = "slow"
SEASON = "1m"
MODEL_SLEEP_S = 4
# Small limits so a dead worker's task comes back within the test. The visibility timeout
# must exceed task_time_limit + retry_backoff_max (25 s), which the config checks.
SOFT_LIMIT_S, HARD_LIMIT_S, BACKOFF_MAX_S, VISIBILITY_S = 15, 20, 5, 30

SampleMap = dict[frozenset[tuple[str, str]], tuple[np.ndarray, np.ndarray]]


def slow_config(prometheus_url: str, metric: str, redis_url: str) -> str:
    return (valid_config(prometheus_url, metric)
            + f"  - name: {PIPELINE}\n    query: {metric}\n    model: slow\n    mode: both\n"
            + "    step: 5s\n    context: 10m\n    horizon: 1m\n    schedule: 5s\n"
            + "models:\n  slow:\n    backend: custom\n"
            + "    factory: tests.slow_model:slow_seasonal_naive\n"
            + f"    season: {SEASON}\n"
            + f"scheduler:\n  kind: celery\n  task_soft_time_limit: {SOFT_LIMIT_S}\n"
            + f"  task_time_limit: {HARD_LIMIT_S}\n  retry_backoff_max: {BACKOFF_MAX_S}\n"
            + f"  visibility_timeout: {VISIBILITY_S}\n"
            + f"redis:\n  url: {redis_url}\n")


class Worker:
    """``openanomaly worker --concurrency 1`` in its own process group, logging to a file."""

    def __init__(self, config: Path, log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("w")
        self.process = subprocess.Popen(
            [*CLI, "--config", str(config), "worker", "--concurrency", "1",
             "--log-level", "INFO"],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT,
            env={**os.environ, SLEEP_ENV: str(MODEL_SLEEP_S)}, start_new_session=True)

    def text(self) -> str:
        return self.log_path.read_text()

    def received(self, task_id: str) -> int:
        return self.text().count(f"{TASK}[{task_id}] received")

    def received_at(self, task_id: str) -> list[float]:
        """Unix times the worker logged receiving the task."""
        pattern = rf'^ts=(\S+) .*msg="Task {re.escape(TASK)}\[{task_id}\] received"'
        return [datetime.fromisoformat(ts).timestamp()
                for ts in re.findall(pattern, self.text(), flags=re.MULTILINE)]

    def pool_children(self) -> list[int]:
        """Pids of the worker's pool processes (read from /proc: no psutil needed)."""
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                # Fields after the command name, which may hold spaces: state, ppid, ...
                state, ppid = stat.read_text().rsplit(")", 1)[1].split()[:2]
            except (OSError, IndexError, ValueError):
                continue
            if int(ppid) == self.process.pid and state != "Z":
                found.append(int(stat.parent.name))
        return found

    def kill_everything(self) -> None:
        """SIGKILL to the main process and its pool child at once (its process group)."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self._log.close()


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


class RecordingTSDB:
    """Reads from the real Prometheus; keeps what a run writes instead of sending it."""

    def __init__(self, reader: PrometheusAdapter) -> None:
        self.reader = reader
        self.written: list[Series] = []

    def query_range(self, query: str, start_ms: int, end_ms: int, step_ms: int, *,
                    max_series: int | None = None) -> list[Series]:
        return self.reader.query_range(query, start_ms, end_ms, step_ms, max_series=max_series)

    def read_written(self, *args: Any, **kwargs: Any) -> list[Series]:
        return self.reader.read_written(*args, **kwargs)

    def peak_written(self, *args: Any) -> Series | None:
        return self.reader.peak_written(*args)

    def score_stats(self, *args: Any, **kwargs: Any) -> list[StoredScoreStats]:
        return self.reader.score_stats(*args, **kwargs)

    def ping(self) -> None:
        self.reader.ping()

    def write(self, series: Sequence[Series]) -> None:
        self.written.extend(series)


@dataclass
class Setup:
    metric: str
    config: Path
    slot: int
    workers: list[Worker]
    client: Celery
    ledger: RedisSlotLedger
    broker: redis.Redis
    prometheus_url: str


def wait_for(condition: Callable[[], object], timeout: float, what: str,
             logs: Sequence[Worker] = ()) -> float:
    """Poll until ``condition`` holds; returns the time.monotonic() it first held."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            text = "\n".join(f"--- {w.log_path.name}\n{w.text()[-4000:]}" for w in logs)
            pytest.fail(f"{what} not within {timeout:.0f} s\n{text}")
        time.sleep(0.1)
    return time.monotonic()


@contextlib.contextmanager
def worker_pair(request, tmp_path: Path, redis_server,  # noqa: F811
                config_text: Callable[[str], str]) -> Iterator[tuple[Path, list[Worker],
                                                                      Celery, redis.Redis]]:
    """Two workers on a Redis database of the test's own (nothing queued or unacknowledged
    by other tests reaches them, and their redelivery sweeps touch nothing else), with the
    configuration ``config_text(redis_url)``; a Celery client and a Redis handle on it."""
    database = 1 + sum(map(ord, request.node.name)) % 15
    url = f"{redis_server.url.rsplit('/', 1)[0]}/{database}"
    broker = redis.Redis.from_url(url)
    broker.flushdb()
    config = write_config(tmp_path, config_text(url))
    workers = [Worker(config, tmp_path / f"worker-{n}.log") for n in (1, 2)]
    client = Celery("openanomaly-test", broker=url, backend=url)
    try:
        for worker in workers:
            wait_for(lambda w=worker: " ready." in w.text(), 90, "worker start", workers)
        yield config, workers, client, broker
    finally:
        for worker in workers:
            worker.close()
        client.close()
        broker.flushdb()
        broker.close()


@pytest.fixture
def setup(request, tmp_path, prometheus, prom_client, unique,
          redis_server) -> Iterator[Setup]:  # noqa: F811
    metric = unique("e2e_kill")
    history = recent_history(metric)
    prom_client.write([history])
    with worker_pair(request, tmp_path, redis_server,
                     lambda url: slow_config(prometheus.url, metric, url)) as (
            config, workers, client, broker):
        yield Setup(metric, config, int(history.timestamps_ms[-1]) - 60_000, workers, client,
                    RedisSlotLedger(broker), broker, prometheus.url)


def start_slow_run(s: Setup) -> tuple[str, Worker]:
    """Send the slot and wait until a worker's run holds it; returns the task id and the
    worker running it."""
    task_id = s.client.send_task(TASK, args=[PIPELINE, s.slot]).id
    wait_for(lambda: s.ledger.claimed_by(PIPELINE, s.slot) == task_id, 60,
                       "the run claiming its slot", s.workers)
    owner = [w for w in s.workers if w.received(task_id)]
    assert len(owner) == 1, "exactly one worker got the task"
    # The claim comes just before the query and the model: be inside the model's sleep.
    time.sleep(1.0)
    assert not s.ledger.done(PIPELINE, s.slot)
    return task_id, owner[0]


def raw_samples(s: Setup) -> SampleMap:
    """Every sample stored in Prometheus of the pipeline's output series (no lookback)."""
    return stored_samples(s.prometheus_url,
                          f'{{source_metric="{s.metric}",pipeline="{PIPELINE}"}}',
                          s.slot - 20 * 60_000, s.slot + 10 * 60_000)


def clean_run(s: Setup) -> tuple[SampleMap, int]:
    """The same slot run in this process with the plain seasonal naive model (what the
    slow one answers), writes recorded instead of sent."""
    config = load_config(s.config, environ={})
    spec = next(p for p in config.pipelines if p.name == PIPELINE)
    engine = LocalModelEngine({"slow": SeasonalNaiveSettings(season=SEASON)})
    with PrometheusAdapter(config.prometheus) as reader:
        tsdb = RecordingTSDB(reader)
        result = run_pipeline(spec, s.slot, tsdb, engine)
    assert result.status == "ok" and result.series == 1
    expected: SampleMap = {}
    for series in tsdb.written:
        key = frozenset(series.labels.items())
        assert key not in expected
        expected[key] = (series.timestamps_ms, series.values)
    return expected, result.samples_written


def assert_written_once_and_complete(s: Setup, task_id: str) -> None:
    expected, samples = clean_run(s)
    names = {dict(key)["__name__"] for key in expected}
    assert names == {f"openanomaly_{m}" for m in (
        "y", "anomaly_score", "raw_score", "yhat", "yhat_lower", "yhat_upper", "forecast")}
    assert len([k for k in expected if dict(k)["__name__"] == "openanomaly_forecast"]) == 9
    stored = raw_samples(s)
    assert set(stored) == set(expected), "the same output series, no more, no fewer"
    for key, (timestamps, values) in expected.items():
        got_timestamps, got_values = stored[key]
        np.testing.assert_array_equal(got_timestamps, timestamps, err_msg=str(dict(key)))
        np.testing.assert_array_equal(got_values, values, err_msg=str(dict(key)))
    # The task's own answer: done once, nothing recorded as failed.
    result = s.client.AsyncResult(task_id)
    answer = result.get(timeout=30)
    assert result.state == "SUCCESS"
    assert answer["status"] == "ok" and answer["samples_written"] == samples
    assert s.ledger.done(PIPELINE, s.slot)
    assert s.ledger.last_completed(PIPELINE) == s.slot
    assert s.ledger.claimed_by(PIPELINE, s.slot) is None, "completion frees the claim"
    assert s.ledger.last_error(PIPELINE) is None
    finished = sum(len(re.findall(r"msg=\"run finished\" pipeline=slow ", w.text()))
                   for w in s.workers)
    assert finished == 1, "the slot ran to its end exactly once"


@pytest.mark.slow
def test_pool_child_killed_mid_run_is_redelivered_and_completed(setup):
    s = setup
    task_id, owner = start_slow_run(s)
    children = owner.pool_children()
    assert len(children) == 1, children
    killed_at = time.monotonic()
    os.kill(children[0], signal.SIGKILL)
    wait_for(lambda: not alive(children[0]), 10, "the pool child's death", s.workers)

    killed_wall = time.time() - (time.monotonic() - killed_at)
    assert raw_samples(s) == {}, "killed before it wrote anything"
    # The dead run's claim outlives it; the redelivered task (same id) takes it over.
    assert s.ledger.claimed_by(PIPELINE, s.slot) == task_id
    redelivered_at = wait_for(lambda: sum(w.received(task_id) for w in s.workers) == 2, 60,
                              "redelivery of the killed task", s.workers)
    done_at = wait_for(lambda: s.ledger.done(PIPELINE, s.slot), 60, "the slot's completion",
                       s.workers)
    rerun_by = next(w for w in s.workers if len(w.received_at(task_id)) == (2 if w is owner
                                                                              else 1))
    received_wall = max(rerun_by.received_at(task_id))
    print(f"\npool child killed: received again by {rerun_by.log_path.stem} "
          f"({'the same worker' if rerun_by is owner else 'the other worker'}) "
          f"{received_wall - killed_wall:.1f} s after the kill (seen by the test after "
          f"{redelivered_at - killed_at:.1f} s); slot done {done_at - killed_at:.1f} s after")
    # The worker's main process saw its child die and gave the task back to the queue.
    assert owner.process.poll() is None, "the worker itself stays up"
    assert "WorkerLostError" in owner.text()
    assert "signal 9 (SIGKILL)" in owner.text()
    assert_written_once_and_complete(s, task_id)


@pytest.mark.slow
def test_whole_worker_killed_mid_run_is_taken_over_after_the_visibility_timeout(setup):
    s = setup
    task_id, owner = start_slow_run(s)
    other = next(w for w in s.workers if w is not owner)
    # kombu keeps each delivered, unacknowledged message with its delivery time.
    delivered = s.broker.zrange("unacked_index", 0, -1, withscores=True)
    assert len(delivered) == 1
    delivered_at_wall = delivered[0][1]
    children = owner.pool_children()
    assert len(children) == 1
    killed_at = time.monotonic()
    owner.kill_everything()
    wait_for(lambda: not alive(children[0]), 10, "the pool child's death", s.workers)

    assert raw_samples(s) == {}, "killed before it wrote anything"
    # The dead run's claim outlives it; the redelivered task (same id) takes it over.
    assert s.ledger.claimed_by(PIPELINE, s.slot) == task_id
    redelivered_at = wait_for(lambda: other.received(task_id) == 1, VISIBILITY_S + 45,
                              "redelivery to the other worker", s.workers)
    redelivered_wall = other.received_at(task_id)[0]
    done_at = wait_for(lambda: s.ledger.done(PIPELINE, s.slot), 60, "the slot's completion",
                       s.workers)
    print(f"\nworker killed: redelivered {redelivered_at - killed_at:.1f} s after the kill, "
          f"{redelivered_wall - delivered_at_wall:.1f} s after the first delivery "
          f"(visibility_timeout {VISIBILITY_S} s); slot done "
          f"{done_at - killed_at:.1f} s after the kill")
    # Given back because it stayed unacknowledged past the visibility timeout, by the next
    # sweep of the surviving worker (with slack for a busy machine).
    transport = celery_settings(load_config(s.config, environ={}))["broker_transport_options"]
    sweep = transport["unacked_restore_interval"] * transport["unacked_restore_throttle"]
    assert VISIBILITY_S - 0.5 <= redelivered_wall - delivered_at_wall <= VISIBILITY_S + sweep + 10
    assert_written_once_and_complete(s, task_id)
