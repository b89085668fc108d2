"""`openanomaly status`: the distributed deployment as Redis sees it."""

from __future__ import annotations

from collections.abc import Callable

from openanomaly.adapters.scheduler.slot_ledger import SlotLedger
from openanomaly.config import AppConfig
from openanomaly.domain.timeutil import from_ms


def report(config: AppConfig, echo: Callable[[str], None], ping_seconds: float = 1.0) -> None:
    from redbeat.schedulers import RedBeatConfig

    from openanomaly.entrypoints.celery_app import app, redis_client, use_config

    use_config(config)
    client = redis_client(config.redis)
    lock_key = RedBeatConfig(app).lock_key
    remaining = int(client.pttl(lock_key))
    holder = client.get(lock_key)
    if remaining > 0 and holder is not None:
        name = holder.decode() if isinstance(holder, bytes) else str(holder)
        echo(f"beat leader: {name} (lock {lock_key}, {remaining / 1000:.1f}s left before a "
             "standby may take over)")
    else:
        echo(f"beat leader: none (lock {lock_key} is free: no beat is running)")
    queue = app.conf.task_default_queue
    echo(f"queue {queue!r}: {int(client.llen(queue))} task(s) waiting")
    replies = app.control.ping(timeout=ping_seconds) or []
    workers = sorted(name for reply in replies for name in reply)
    echo(f"workers seen: {len(workers)}" + (f" ({', '.join(workers)})" if workers else ""))
    ledger = SlotLedger(client)
    echo("pipelines:")
    for spec in config.pipelines:
        status = ledger.status(spec.name)
        last = (from_ms(status.last_completed_ms).isoformat()
                if status.last_completed_ms is not None else "never")
        state = "" if spec.enabled else " (disabled)"
        echo(f"  {spec.name}{state}: last completed slot {last}")
        if status.last_error:
            error = status.last_error
            slot = from_ms(int(error["slot"])).isoformat() if error.get("slot") else "?"
            echo(f"    last error at slot {slot}: {error.get('kind')}: {error.get('error')}")
