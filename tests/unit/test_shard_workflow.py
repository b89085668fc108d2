"""Sharded slots (services.shard_workflow) against an in-memory ledger, shard store and
database, with the real seasonal naive model."""

import numpy as np
import pytest

from openanomaly.adapters.config.yaml_store import YamlConfigStore
from openanomaly.domain.errors import PipelineError, ShardDataMissing
from openanomaly.domain.shards import shard_key
from openanomaly.services.runs import run_pipeline
from openanomaly.services.shard_workflow import Sharding, ShardTask, execute_shard
from openanomaly.services.slot_workflow import Delivery, execute_slot

from .fakes import FakeLedger, FakeShardStore, FakeTSDB
from .test_runs import ENGINE, STEP, T0, N, periodic, spec

AT = T0 + (N - 1) * STEP
TTL = 60_000
SERIES = 12


class CountingTSDB(FakeTSDB):
    """Counts how often each output sample is written."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.times_written: dict[tuple, int] = {}

    def write(self, series):
        super().write(series)
        for one in series:
            labels = tuple(sorted(one.labels.items()))
            for ts in one.timestamps_ms.tolist():
                self.times_written[labels, ts] = self.times_written.get((labels, ts), 0) + 1


class RecordingTelemetry:
    def __init__(self):
        self.runs: list[tuple] = []

    def observe_run(self, pipeline, outcome, seconds, stage_seconds, series, samples_written):
        self.runs.append((outcome, dict(stage_seconds), series, samples_written))

    def observe_error(self, component, kind):
        pass

    def observe_lag(self, pipeline, seconds):
        pass

    def observe_slots(self, pipeline, caught_up, missed):
        pass


class World:
    def __init__(self, series=SERIES, **fields):
        self.spec = spec(mode="both", **fields)
        self.store = YamlConfigStore([self.spec])
        self.ledger = FakeLedger()
        self.shards = FakeShardStore()
        self.tsdb = CountingTSDB([periodic({"i": str(n)}, noise=1.0, seed=n)
                                  for n in range(series)])
        self.queued: list[ShardTask] = []
        self.sharding = Sharding(4, self.shards, self.queued.append)
        self.telemetry = RecordingTelemetry()

    def slot(self, task_id="slot-task", at=AT):
        return execute_slot(Delivery("p", at, None, task_id), self.store, self.ledger,
                            self.tsdb, ENGINE, TTL, run_log=self.store,
                            telemetry=self.telemetry, sharding=self.sharding)

    def shard(self, task, task_id=None, retries=0):
        return execute_shard(task, task_id or f"shard-{task.index}", retries, 5, self.store,
                             self.ledger, self.shards, self.tsdb, ENGINE, TTL,
                             run_log=self.store, telemetry=self.telemetry)


def outputs(tsdb):
    return {k: v for k, v in tsdb.written.items()}


def test_a_large_slot_is_split_and_its_shards_write_what_one_run_writes():
    world = World()
    answer = world.slot()
    assert answer["status"] == "sharded" and answer["series"] == SERIES
    assert answer["shards"] == 3 and answer["queued"] == len(world.queued) <= 3
    assert world.tsdb.write_calls == 0, "the reading worker scores nothing itself"
    assert world.ledger.claimed_by("p", AT) == "slot-task", "it keeps the slot's claim"
    for task in world.queued[:-1]:
        assert world.shard(task)["status"] == "ok"
        assert not world.ledger.done("p", AT)
    last = world.shard(world.queued[-1])
    assert last["status"] == "ok"
    assert world.ledger.done("p", AT) and world.ledger.last_completed("p") == AT
    assert world.ledger.claimed_by("p", AT) is None, "the last shard frees the slot's claim"
    assert world.shards.data == {}, "scored shards leave no data behind"
    # The same samples as one unsharded run, each written once.
    whole = CountingTSDB(world.tsdb.source)
    run_pipeline(world.spec, AT, whole, ENGINE)
    assert outputs(world.tsdb) == outputs(whole)
    assert set(world.tsdb.times_written.values()) == {1}
    # The slot's status sums its shards.
    state = world.store.run_state("p")
    assert state is not None and state.series == SERIES and state.slot_ms == AT
    # The self-metrics count the read once (its series and stages) and each shard's work.
    read, *scored = world.telemetry.runs
    assert read[0] == "sharded" and read[2] == SERIES and "query" in read[1]
    assert [run[0] for run in scored] == ["ok"] * len(world.queued)
    assert all(run[2] == 0 and "inference" in run[1] for run in scored)
    assert sum(run[3] for run in scored) == sum(len(v) for v in whole.written.values())


def test_a_slot_within_the_shard_size_runs_in_one_task():
    world = World(series=3)
    assert world.slot()["status"] == "ok"
    assert world.queued == [] and world.ledger.done("p", AT)


def test_a_duplicate_shard_task_is_skipped_and_a_redelivery_takes_over():
    world = World()
    world.slot()
    task = world.queued[0]
    own = shard_key("p", task.index, task.count)
    # A worker died mid-shard: its claim stays until the task comes back.
    world.ledger.claim(own, AT, "shard-0", TTL)
    assert world.shard(task, task_id="someone-else")["reason"] == "claimed"
    assert world.shard(task, task_id="shard-0")["status"] == "ok"
    assert world.shard(task, task_id="late-duplicate")["reason"] == "done"
    for other in world.queued[1:]:
        world.shard(other)
    assert world.ledger.done("p", AT)
    assert set(world.tsdb.times_written.values()) == {1}


def test_a_slot_read_again_queues_only_unfinished_shards_split_as_before():
    world = World()
    world.slot()
    first = list(world.queued)
    world.shard(first[0])
    # The reading worker's claim expired with a shard unfinished; a later delivery reads
    # the slot again, now with more series, and keeps the first split.
    world.ledger.now_ms += TTL + 1
    world.tsdb.source += [periodic({"i": str(n)}, seed=n) for n in range(SERIES, 30)]
    world.queued.clear()
    again = world.slot(task_id="slot-task-2")
    assert again["shards"] == 3
    assert {t.index for t in world.queued} == {t.index for t in first[1:]}
    for task in world.queued:
        world.shard(task, task_id=f"again-{task.index}")
    assert world.ledger.done("p", AT)
    assert set(world.tsdb.times_written.values()) == {1}, "no series scored twice"


def test_expired_shard_data_is_a_recorded_failure_that_frees_the_shard():
    world = World()
    world.slot()
    task = world.queued[0]
    world.shards.data.clear()
    with pytest.raises(ShardDataMissing, match="expired before a worker ran it"):
        world.shard(task)
    assert world.ledger.last_error("p")["kind"] == "ShardDataMissing"
    assert world.ledger.claimed_by(shard_key("p", task.index, task.count), AT) is None
    assert not world.ledger.done("p", AT)


def test_a_calibrated_pipeline_hands_each_shard_its_history():
    # Two slots: the second calibrates against the raw scores the first one's shards wrote.
    world = World(scoring={"calibration_window": "1h"})
    for at in (AT - 5 * STEP, AT):
        world.queued.clear()
        world.slot(task_id=f"slot-{at}", at=at)
        for task in world.queued:
            world.shard(task, task_id=f"shard-{at}-{task.index}")
    whole = CountingTSDB(world.tsdb.source)
    for at in (AT - 5 * STEP, AT):
        run_pipeline(world.spec, at, whole, ENGINE)
    got, want = outputs(world.tsdb), outputs(whole)
    assert got.keys() == want.keys()
    for key in want:
        np.testing.assert_allclose(list(got[key].values()), list(want[key].values()),
                                   err_msg=str(key))


def test_colliding_series_in_different_shards_are_refused_before_any_shard_is_queued():
    # No calibration: no read-back checks the labels first.
    world = World(scoring={"calibration_window": None, "suppression_window": None})
    # Both become exported_pipeline="x" beside the pipeline's own label.
    world.tsdb.source += [periodic({"pipeline": "x"}), periodic({"exported_pipeline": "x"})]
    with pytest.raises(PipelineError, match="same output labels"):
        world.slot()
    assert world.queued == [] and world.shards.data == {}
    assert world.ledger.claimed_by("p", AT) is None, "the failed slot frees its claim"
    assert world.ledger.last_error("p")["kind"] == "PipelineError"
