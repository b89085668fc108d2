"""`openanomaly status`: the distributed deployment as Redis sees it."""

from __future__ import annotations

from collections.abc import Callable

from openanomaly.bootstrap import bootstrap_status
from openanomaly.config import AppConfig
from openanomaly.domain.timeutil import from_ms


def report(config: AppConfig, echo: Callable[[str], None], ping_seconds: float = 1.0) -> None:
    from redbeat.schedulers import RedBeatConfig

    from openanomaly.entrypoints.celery_app import app, use_config

    use_config(config)
    sources = bootstrap_status(config)
    client, ledger = sources.client, sources.ledger
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
    echo("pipelines:")
    for spec in config.pipelines:
        status = ledger.status(spec.name)
        last = (from_ms(status.last_completed_ms).isoformat()
                if status.last_completed_ms is not None else "never")
        state = "" if spec.enabled else " (disabled)"
        echo(f"  {spec.name}{state}: last completed slot {last}, "
             f"{status.completed_in_window} slot(s) done in the ledger's window")
        for slot, owner in sorted(status.running.items()):
            echo(f"    running: slot {from_ms(slot).isoformat()} (task {owner})")
        if status.skipped:
            echo(f"    {status.skipped} missed slot(s) older than scheduler.catch_up_horizon, "
                 "not run")
        if status.last_error:
            error = status.last_error
            slot_text = from_ms(int(error["slot"])).isoformat() if error.get("slot") else "?"
            echo(f"    last error at slot {slot_text}: {error.get('kind')}: "
                 f"{error.get('error')}")
