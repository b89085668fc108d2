"""Durations, timestamps and step alignment. All times are UTC, in milliseconds on the wire."""

from __future__ import annotations

import re
from datetime import UTC, datetime

_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_DURATION = re.compile(r"^((\d+)(ms|[smhdwy]))+$")
_PART = re.compile(r"(\d+)(ms|[smhdwy])")


def parse_duration(text: str | int | float) -> float:
    """Parse a Prometheus-style duration ("90s", "5m", "1h30m", "7d") into seconds.

    A bare number is taken as seconds.
    """
    if isinstance(text, bool):
        raise ValueError(f"not a duration: {text!r}")
    if isinstance(text, int | float):
        if text <= 0:
            raise ValueError(f"duration must be positive, got {text}")
        return float(text)
    value = text.strip()
    if not _DURATION.match(value):
        raise ValueError(
            f"not a duration: {text!r}; use a number with a unit such as 30s, 5m, 1h or 7d"
        )
    seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(value))
    if seconds <= 0:
        raise ValueError(f"duration must be positive, got {text!r}")
    return float(seconds)


def format_duration(seconds: float) -> str:
    """Shortest Prometheus-style spelling of a whole number of seconds."""
    remaining = int(seconds)
    if remaining == 0:
        return "0s"
    parts = []
    for unit in ("d", "h", "m", "s"):
        size = int(_UNIT_SECONDS[unit])
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def align_down(ts_ms: int, step_ms: int) -> int:
    """The latest multiple of ``step_ms`` at or before ``ts_ms`` (slots are epoch-aligned)."""
    return ts_ms - ts_ms % step_ms


def to_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def from_ms(ts_ms: int) -> datetime:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC)


def parse_time(text: str, now_ms: int) -> int:
    """Parse a user-given time: RFC 3339 / ISO 8601, a Unix timestamp in seconds,
    ``now``, or ``now-2h`` style offsets. Naive datetimes are taken as UTC."""
    value = text.strip()
    if value == "now":
        return now_ms
    if value.startswith("now-"):
        return now_ms - int(parse_duration(value[4:]) * 1000)
    try:
        return round(float(value) * 1000)
    except ValueError:
        pass
    try:
        return to_ms(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError as exc:
        raise ValueError(
            f"not a time: {text!r}; use RFC 3339 (2024-05-01T12:00:00Z), "
            "a Unix timestamp, 'now' or 'now-1h'"
        ) from exc
