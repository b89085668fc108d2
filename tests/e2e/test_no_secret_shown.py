"""Planted secrets never come out: not on the command line's output, not in logs, not in
what the slot ledger and the run states keep, not in `status`."""

from __future__ import annotations

import pytest

from openanomaly.adapters.config.sqlite_store import SqliteStore
from openanomaly.adapters.scheduler.slot_ledger import RedisSlotLedger
from openanomaly.adapters.tsdb.local_prometheus import free_port
from openanomaly.domain.errors import ModelError
from openanomaly.services.run_status import recorded
from tests.e2e.test_cli import openanomaly, write_config
from tests.redis_server import redis_server  # noqa: F401  (fixture)

SECRET = "PLANTED-s3cret-value"


def test_urls_with_credentials_are_masked_in_every_output(tmp_path, redis_server):  # noqa: F811
    dead = free_port()  # nothing listens: every call fails and says where it went
    config = write_config(tmp_path, (
        f"prometheus:\n  url: http://admin:{SECRET}@127.0.0.1:{dead}\n  max_retries: 0\n"
        f"redis:\n  url: redis://:{SECRET}@127.0.0.1:{free_port()}/0\n"
        "pipelines:\n  - name: p\n    query: up\n    model: seasonal_naive\n"))
    outputs = {
        "check-config": openanomaly("check-config", config=config),
        "check-config --connect": openanomaly("check-config", "--connect", config=config),
        "run-once": openanomaly("--log-level", "DEBUG", "run-once", "p", config=config),
        "status": openanomaly("status", config=config),
    }
    for name, done in outputs.items():
        shown = done.stdout + done.stderr
        assert SECRET not in shown, f"{name} showed the secret:\n{shown}"
    assert "admin:***@127.0.0.1" in outputs["check-config"].stdout, "the rest stays readable"
    assert outputs["run-once"].returncode == 1 and "127.0.0.1" in outputs["run-once"].stderr


def test_errors_kept_for_status_are_masked(tmp_path, redis_server):  # noqa: F811
    failure = ModelError(f"remote model at https://user:{SECRET}@gpu:8000/v1 failed; "
                               f"sent Authorization: Bearer {SECRET}")
    ledger = RedisSlotLedger(redis_server.client(), prefix="secrets")
    ledger.record_error("p", 60_000, failure)
    assert SECRET not in str(ledger.last_error("p"))
    assert "gpu:8000" in ledger.last_error("p")["error"]

    store = SqliteStore(tmp_path / "store.db")

    def fails():
        raise failure

    with pytest.raises(ModelError):
        recorded(store, "p", 60_000, fails)
    assert SECRET not in store.run_state("p").error
