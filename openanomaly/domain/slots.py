"""Which scheduled slots to run after a gap: the missed ones, oldest first, within a horizon.

Beat failover or a stretch without workers leaves slots unrun. Running them late keeps
every window scored once; running ones far in the past would flood the workers with
stale work, so those are only counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from croniter import croniter

from openanomaly.domain.pipeline import Mode, PipelineSpec
from openanomaly.domain.schedule import Schedule
from openanomaly.domain.timeutil import from_ms, to_ms

# Counting missed cron slots one by one is linear in the gap; past this many the count
# stops, so a pipeline dormant for a year cannot stall the scheduler.
MAX_COUNTED = 100_000


@dataclass(frozen=True)
class CatchUp:
    slots: list[int] = field(default_factory=list)
    """Slots to run now, oldest first; the last one is the latest due slot."""
    skipped: int = 0
    """Missed slots older than the horizon, not run (at most MAX_COUNTED for cron)."""


@dataclass(frozen=True)
class SlotStatus:
    """What a slot ledger holds for one pipeline, as `openanomaly status` shows it."""

    pipeline: str
    last_completed_ms: int | None
    completed_in_window: int
    """Slots recorded as done within the ledger's window."""
    last_error: dict[str, str] | None
    skipped: int = 0
    """Missed slots older than the catch-up horizon, never run."""
    running: dict[int, str] = field(default_factory=dict)
    """Claimed slots and the task holding each."""


def latest_due(schedule: Schedule, now_ms: int) -> int:
    """The latest scheduled slot at or before ``now_ms``."""
    if schedule.interval_seconds is not None:
        interval_ms = int(schedule.interval_seconds * 1000)
        return now_ms - now_ms % interval_ms
    assert schedule.expression is not None
    start = from_ms(now_ms).astimezone(ZoneInfo(schedule.timezone))
    previous = to_ms(croniter(schedule.expression, start).get_prev(datetime))
    # croniter's get_prev is strictly before its start; now itself may be a slot.
    following = schedule.next_slot(previous)
    return following if following <= now_ms else previous


def plan_catch_up(
    schedule: Schedule, last_done_ms: int | None, now_ms: int, horizon_ms: int
) -> CatchUp:
    """Slots after ``last_done_ms`` up to the latest due one, keeping those within
    ``horizon_ms`` of ``now_ms``; with no record yet, only the latest due slot."""
    latest = latest_due(schedule, now_ms)
    if last_done_ms is None:
        return CatchUp([latest])
    if last_done_ms >= latest:
        return CatchUp()
    oldest_allowed = now_ms - horizon_ms
    if schedule.interval_seconds is not None:
        interval_ms = int(schedule.interval_seconds * 1000)
        first = schedule.next_slot(last_done_ms)
        # Past the horizon, start at its first slot on the interval grid.
        horizon_start = -(-oldest_allowed // interval_ms) * interval_ms
        start = horizon_start if first < oldest_allowed else first
        skipped = max(0, (start - first) // interval_ms)
        return CatchUp(list(range(start, latest + 1, interval_ms)), int(skipped))
    slots: list[int] = []
    skipped = 0
    slot = schedule.next_slot(last_done_ms)
    if slot < oldest_allowed:
        # Jump to the horizon's start once counting is pointless, then walk forward.
        while slot < oldest_allowed and skipped < MAX_COUNTED:
            skipped += 1
            slot = schedule.next_slot(slot)
        if slot < oldest_allowed:
            slot = schedule.next_slot(oldest_allowed - 1)
    while slot <= latest:
        slots.append(slot)
        slot = schedule.next_slot(slot)
    return CatchUp(slots, skipped)


def ledger_key(spec: PipelineSpec, mode: Mode | None) -> str:
    """The slot bookkeeping of a pipeline's runs: runs of another mode than the
    pipeline's own keep their own."""
    return spec.name if mode is None or mode == spec.mode else f"{spec.name}/{mode}"
