"""When a pipeline runs: an epoch-aligned interval or a cron expression, in a time zone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from openanomaly.domain.timeutil import from_ms, parse_duration, to_ms


@dataclass(frozen=True)
class Schedule:
    """``interval_seconds`` for "every 5m" schedules, else a cron ``expression``."""

    interval_seconds: float | None = None
    expression: str | None = None
    timezone: str = "UTC"

    @classmethod
    def parse(cls, text: str, timezone: str = "UTC") -> Schedule:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {timezone!r}; use an IANA name") from exc
        try:
            return cls(interval_seconds=parse_duration(text), timezone=timezone)
        except ValueError:
            pass
        if not croniter.is_valid(text):
            raise ValueError(
                f"schedule {text!r} is neither an interval (30s, 5m, 1h) "
                "nor a cron expression ('*/5 * * * *')"
            )
        return cls(expression=text, timezone=timezone)

    def next_slot(self, after_ms: int) -> int:
        """The first scheduled time strictly after ``after_ms``."""
        if self.interval_seconds is not None:
            interval_ms = int(self.interval_seconds * 1000)
            return (after_ms // interval_ms + 1) * interval_ms
        assert self.expression is not None
        start = from_ms(after_ms).astimezone(ZoneInfo(self.timezone))
        following: datetime = croniter(self.expression, start).get_next(datetime)
        return to_ms(following)

    def __str__(self) -> str:
        if self.interval_seconds is not None:
            return f"every {self.interval_seconds:g}s"
        return f"cron '{self.expression}' ({self.timezone})"
