import pytest

from openanomaly.domain.timeutil import align_down, format_duration, parse_duration, parse_time


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30), ("5m", 300), ("1h30m", 5400), ("7d", 604800), ("500ms", 0.5), (90, 90),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "5 minutes", "-5m", "0s", "m5"])
def test_parse_duration_rejects_with_a_hint(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_format_duration_round_trips():
    assert format_duration(parse_duration("1d2h3m")) == "1d2h3m"


def test_parse_time_forms():
    now = 1_700_000_000_000
    assert parse_time("now", now) == now
    assert parse_time("now-1h", now) == now - 3_600_000
    assert parse_time("1700000000", now) == 1_700_000_000_000
    assert parse_time("2023-11-14T22:13:20Z", now) == 1_700_000_000_000
    assert parse_time("2023-11-14T22:13:20", now) == 1_700_000_000_000  # naive means UTC
    with pytest.raises(ValueError, match="RFC 3339"):
        parse_time("yesterday", now)


def test_align_down():
    assert align_down(1_700_000_123_456, 60_000) == 1_700_000_100_000
    assert align_down(120_000, 60_000) == 120_000
