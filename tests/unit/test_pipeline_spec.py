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
])
def test_invalid_specs_say_what_is_wrong(fields, message):
    with pytest.raises(ValidationError, match=message):
        spec(**fields)
