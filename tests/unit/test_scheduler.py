import threading

from openanomaly.adapters.config.yaml_store import YamlConfigStore
from openanomaly.adapters.scheduler.embedded import EmbeddedScheduler
from openanomaly.adapters.scheduler.sqlite_ledger import SqliteSlotLedger
from openanomaly.domain.errors import QueryRejected, TSDBUnavailable
from openanomaly.domain.pipeline import PipelineSpec


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def make(specs, clock, workers=2):
    return EmbeddedScheduler(YamlConfigStore(specs), max_workers=workers, clock=clock,
                             tick_seconds=0.01)


def drive(scheduler, run, ticks, clock, advance_ms):
    """Run the scheduler's loop in a thread while moving the fake clock forward."""
    thread = threading.Thread(target=scheduler.run, args=(run,))
    thread.start()
    try:
        for _ in range(ticks):
            threading.Event().wait(0.03)
            clock.now += advance_ms
    finally:
        scheduler.stop()
        thread.join(5)
    assert not thread.is_alive()


def test_fires_each_slot_once_with_the_aligned_slot_as_at():
    clock = Clock(1_700_000_005_000)
    fired = []
    lock = threading.Lock()

    def run(spec, at):
        with lock:
            fired.append((spec.name, at))

    specs = [PipelineSpec(name="a", query="up", step="1m", schedule="1m"),
             PipelineSpec(name="off", query="up", enabled=False)]
    drive(make(specs, clock), run, ticks=30, clock=clock, advance_ms=20_000)
    slots = [at for name, at in fired if name == "a"]
    assert all(name == "a" for name, _ in fired)
    assert slots and all(at % 60_000 == 0 for at in slots)
    assert slots == sorted(set(slots))
    assert slots == list(range(slots[0], slots[-1] + 1, 60_000))


def test_a_slow_run_is_not_started_twice_and_errors_do_not_stop_the_loop():
    clock = Clock(1_700_000_000_000)
    release = threading.Event()
    calls = []

    def run(spec, at):
        calls.append(at)
        if len(calls) == 1:
            release.wait(5)
        raise RuntimeError("boom")

    scheduler = make([PipelineSpec(name="a", query="up", step="1m", schedule="1m")], clock)
    thread = threading.Thread(target=scheduler.run, args=(run,))
    thread.start()
    for _ in range(20):
        threading.Event().wait(0.02)
        clock.now += 60_000
    assert len(calls) == 1  # still blocked: later slots were skipped, not stacked
    release.set()
    for _ in range(10):
        threading.Event().wait(0.03)
        clock.now += 60_000
    scheduler.stop()
    thread.join(5)
    assert len(calls) > 1  # the loop survived the failures


def test_a_run_is_retried_only_while_its_error_says_retrying_can_help():
    scheduler = EmbeddedScheduler(YamlConfigStore([]), max_retries=3, retry_backoff_max=0.01,
                                  retry_window_s=0)
    spec = PipelineSpec(name="p", query="up")
    for failures, expected_calls in (
            ([TSDBUnavailable("down"), TSDBUnavailable("down")], 3),  # then it succeeds
            ([TSDBUnavailable("down")] * 9, 4),  # the first try and max_retries=3 retries
            ([QueryRejected("parse error")], 1),
            ([ValueError("a bug")], 1)):
        calls = []

        def run(spec, at, failures=failures, calls=calls):
            calls.append(at)
            if len(calls) <= len(failures):
                raise failures[len(calls) - 1]
            return "ok"

        error = scheduler._guarded(run, spec, 60_000)
        assert len(calls) == expected_calls, failures
        assert error is (None if expected_calls == 3 else failures[-1])


def with_ledger(specs, clock, ledger, **options):
    return EmbeddedScheduler(YamlConfigStore(specs), clock=clock, tick_seconds=0.01,
                             ledger=ledger, **options)


def test_with_a_ledger_a_restart_catches_up_every_missed_slot_once(tmp_path):
    clock = Clock(1_700_000_005_000)
    spec = PipelineSpec(name="a", query="up", step="1m", schedule="1m")
    fired = []
    first = with_ledger([spec], clock, SqliteSlotLedger(tmp_path / "slots.db"))
    drive(first, lambda s, at: fired.append(at), ticks=10, clock=clock, advance_ms=30_000)
    assert fired, "ran while up"
    clock.now += 7 * 60_000  # down (or killed) for seven minutes
    second = with_ledger([spec], clock, SqliteSlotLedger(tmp_path / "slots.db"))
    drive(second, lambda s, at: fired.append(at), ticks=3, clock=clock, advance_ms=1_000)
    assert fired == list(range(fired[0], fired[-1] + 1, 60_000)), "every slot, once, in order"
    assert fired[-1] + 60_000 >= clock.now - 3_000 - 60_000, "caught up to the latest due slot"


def test_a_slot_that_failed_runs_again_before_the_next_one(tmp_path):
    clock = Clock(1_700_000_000_000)
    spec = PipelineSpec(name="a", query="up", step="1m", schedule="1m")
    ledger = SqliteSlotLedger(tmp_path / "slots.db")
    calls = []

    def run(spec, at):
        calls.append(at)
        if len(calls) == 2:
            raise TSDBUnavailable("prometheus restarting")

    scheduler = with_ledger([spec], clock, ledger, max_retries=0, retry_window_s=0)
    drive(scheduler, run, ticks=16, clock=clock, advance_ms=15_000)
    failed = calls[1]
    assert calls[:4] == [failed - 60_000, failed, failed, failed + 60_000], calls
    assert ledger.done("a", failed) and ledger.last_error("a") is None


def test_slots_older_than_the_horizon_are_counted_not_run(tmp_path):
    clock = Clock(1_700_000_000_000)
    spec = PipelineSpec(name="a", query="up", step="1m", schedule="1m")
    ledger = SqliteSlotLedger(tmp_path / "slots.db")
    ledger.complete("a", clock.now - 3 * 3_600_000)  # last ran three hours ago
    fired = []
    scheduler = with_ledger([spec], clock, ledger, catch_up_horizon_ms=600_000)
    drive(scheduler, lambda s, at: fired.append(at), ticks=3, clock=clock, advance_ms=1)
    assert len(fired) in (10, 11) and fired == sorted(fired), "the horizon: 10 minutes"
    assert ledger.skipped("a") > 150
