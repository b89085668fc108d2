import pytest
from pydantic import ValidationError

from openanomaly.domain.pipeline import PipelineSpec


def spec(**fields):
    return PipelineSpec(**{"name": "p", "query": "up", **fields})


def test_defaults_and_derived_steps():
    p = spec(step="1m", context="1d", horizon="1h", schedule="5m")
    assert (p.context_steps, p.horizon_steps, p.window_steps) == (1440, 60, 5)
    assert p.scoring.band == (0.1, 0.9)
    assert p.max_series == 1000
    assert p.output.prefix == "openanomaly_"


def test_windows_lie_in_forecast_blocks_that_end_at_multiples_of_the_block():
    p = spec(step="1m", context="1d", schedule="5m")
    # 48 steps, rounded up to whole 5-minute windows: no window straddles two blocks.
    assert p.block_steps == 50
    # Blocks end at multiples of 50 minutes from the epoch, as slots end at multiples of 5.
    block_end = 1_700_000_000_000 - 1_700_000_000_000 % (50 * 60_000)
    first_point = block_end + 60_000
    assert p.lead_steps(first_point) == 0
    assert p.lead_steps(first_point + 10 * 60_000) == 10
    assert p.lead_steps(block_end - 4 * 60_000) == 45  # the first point of the last window
    # The read reaches the context before the earliest block start a window may lie in.
    assert p.check_span_steps == 1440 + 5 - 1 + 49
    assert spec(step="5m", context="5d", schedule="5m").block_steps == 48


@pytest.mark.parametrize("block", [None, 5, 3])
def test_without_blocks_longer_than_a_window_each_window_has_its_own_forecast(block):
    p = spec(step="1m", context="1d", schedule="5m", scoring={"forecast_block": block})
    assert p.block_steps is None
    assert p.lead_steps(1_700_000_123_000 - 1_700_000_123_000 % 60_000) == 0
    assert p.check_span_steps == 1440 + 5 - 1


def test_cron_schedule_needs_a_check_window():
    with pytest.raises(ValidationError, match="check_window"):
        spec(schedule="*/5 * * * *")
    assert spec(schedule="*/5 * * * *", check_window="5m").window_steps == 5


@pytest.mark.parametrize(("fields", "message"), [
    ({"step": "1m", "context": "90s"}, "whole number of steps"),
    ({"step": "1m", "schedule": "90s"}, "whole number of steps"),
    ({"schedule": "every five minutes"}, "neither an interval"),
    ({"step": "1m", "context": "5m"}, "at least 8 steps"),
    ({"scoring": {"band": [0.6, 0.9]}}, "lower < 0.5 < upper"),
    ({"mode": "forecast", "output": {"write_future": False}}, "write_future"),
    ({"name": "bad name!"}, "letters, digits"),
    ({"output": {"extra_labels": {"bad-label": "x"}}}, "not a valid label name"),
    ({"max_series": 0}, "greater than or equal to 1"),
    ({"timezone": "Mars/Olympus"}, "unknown time zone"),
    ({"scoring": {"tecnique": "zscore"}}, "Extra inputs"),
    ({"scoring": {"forecast_block": 0}}, "greater than or equal to 1"),
])
def test_invalid_specs_say_what_is_wrong(fields, message):
    with pytest.raises(ValidationError, match=message):
        spec(**fields)


def test_the_recurring_alarm_bar_reads_a_duration_and_a_margin_of_at_least_1():
    from openanomaly.domain.detection import RecurringSpan

    spec = PipelineSpec(name="p", query="m", scoring={"recurring_tolerance": "15m"})
    assert spec.scoring.recurring_tolerance == 900.0
    assert RecurringSpan.of(spec.scoring, spec.step) == RecurringSpan(1440, 15)
    off = PipelineSpec(name="p", query="m", scoring={"recurring_tolerance": None})
    assert RecurringSpan.of(off.scoring, off.step) is None
    raw = PipelineSpec(name="p", query="m", scoring={"calibration_window": None,
                                                      "suppression_window": None})
    assert RecurringSpan.of(raw.scoring, raw.step) is None  # part of the calibration
    with pytest.raises(ValidationError, match="recurring_margin"):
        PipelineSpec(name="p", query="m", scoring={"recurring_margin": 0.9})
