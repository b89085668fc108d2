"""The SlotLedger contract against a real redis-server (the Celery deployment) and a
SQLite file (the embedded service), two handles each as two processes would hold."""

import time
import uuid

import pytest

from openanomaly.adapters.scheduler.slot_ledger import RedisSlotLedger
from openanomaly.adapters.scheduler.sqlite_ledger import SqliteSlotLedger
from openanomaly.domain.errors import QueryRejected
from tests.redis_server import redis_server  # noqa: F401  (fixture)


@pytest.fixture
def pipeline():
    return f"p-{uuid.uuid4().hex[:8]}"


@pytest.fixture(params=["redis", "sqlite"])
def make_ledger(request, tmp_path):
    """Opens another handle on one ledger; ``done_window_ms`` as given."""
    opened = []

    def make(done_window_ms=7 * 86_400_000):
        if request.param == "redis":
            server = request.getfixturevalue("redis_server")
            opened.append(server.client())
            return RedisSlotLedger(opened[-1], done_window_ms=done_window_ms)
        ledger = SqliteSlotLedger(tmp_path / "slots.db", done_window_ms=done_window_ms)
        opened.append(ledger)
        return ledger

    yield make
    for handle in opened:
        handle.close()


@pytest.fixture
def ledgers(make_ledger):
    return make_ledger(), make_ledger()


def test_claim_is_exclusive_between_clients(ledgers, pipeline):
    a, b = ledgers
    assert a.claim(pipeline, 1000, "worker-a", ttl_ms=10_000)
    assert not b.claim(pipeline, 1000, "worker-b", ttl_ms=10_000)
    assert b.claimed_by(pipeline, 1000) == "worker-a"
    assert b.claim(pipeline, 2000, "worker-b", ttl_ms=10_000), "other slots are free"
    assert not b.release(pipeline, 1000, "worker-b"), "only the owner releases"
    assert a.release(pipeline, 1000, "worker-a")
    assert b.claim(pipeline, 1000, "worker-b", ttl_ms=10_000)


def test_claim_expires(ledgers, pipeline):
    a, b = ledgers
    assert a.claim(pipeline, 1000, "worker-a", ttl_ms=200)
    assert not b.claim(pipeline, 1000, "worker-b", ttl_ms=200)
    time.sleep(0.35)
    assert b.claim(pipeline, 1000, "worker-b", ttl_ms=10_000)
    assert not a.release(pipeline, 1000, "worker-a"), "an expired owner frees nothing"
    assert b.claimed_by(pipeline, 1000) == "worker-b"


def test_last_completed_never_goes_back(ledgers, pipeline):
    a, b = ledgers
    assert a.last_completed(pipeline) is None
    assert a.complete(pipeline, 3000, "worker-a") == 3000
    assert b.complete(pipeline, 2000, "worker-b") == 3000, "late finisher of an older slot"
    assert a.last_completed(pipeline) == 3000
    assert b.complete(pipeline, 4000, "worker-b") == 4000
    assert a.last_completed(pipeline) == 4000
    assert a.done(pipeline, 2000) and a.done(pipeline, 3000)


def test_complete_releases_own_claim_and_clears_error(ledgers, pipeline):
    a, b = ledgers
    a.claim(pipeline, 5000, "worker-a", ttl_ms=10_000)
    a.record_error(pipeline, 5000, QueryRejected("bad query"))
    error = b.last_error(pipeline)
    assert error is not None
    assert error["kind"] == "QueryRejected" and error["error"] == "bad query"
    assert error["slot"] == "5000"
    a.complete(pipeline, 5000, "worker-a")
    assert b.last_error(pipeline) is None
    assert b.claimed_by(pipeline, 5000) is None
    status = b.status(pipeline)
    assert (status.last_completed_ms, status.completed_in_window, status.last_error) == (
        5000, 1, None)


def test_done_set_is_trimmed_to_its_window(make_ledger, pipeline):
    ledger = make_ledger(done_window_ms=10_000)
    for slot in (0, 5000, 10_000, 15_000):
        assert not ledger.done(pipeline, slot)
        ledger.complete(pipeline, slot)
        assert ledger.done(pipeline, slot)
    assert not ledger.done(pipeline, 0), "older than the window"
    assert all(ledger.done(pipeline, s) for s in (5000, 10_000, 15_000))
    ledger.complete(pipeline, 1000)  # a very late, older finisher
    assert not ledger.done(pipeline, 1000)
    assert ledger.last_completed(pipeline) == 15_000
    assert ledger.status(pipeline).completed_in_window == 3


def test_skipped_slots_add_up_and_show_in_the_status(ledgers, pipeline):
    a, b = ledgers
    a.record_skipped(pipeline, 3)
    b.record_skipped(pipeline, 2)
    a.claim(pipeline, 7000, "worker-a", ttl_ms=10_000)
    status = b.status(pipeline)
    assert status.skipped == 5 and status.running == {7000: "worker-a"}


def test_prefix_keeps_deployments_apart(redis_server, pipeline):  # noqa: F811
    client = redis_server.client()
    RedisSlotLedger(client, prefix="one").complete(pipeline, 1000)
    assert RedisSlotLedger(client, prefix="two").last_completed(pipeline) is None
    client.close()
