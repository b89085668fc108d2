"""The pipeline spec: what to query, how to forecast and score it, and what to write."""

from __future__ import annotations

import re
from enum import StrEnum
from functools import cached_property
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from openanomaly.domain.detectors import Detector, needed_context_seconds
from openanomaly.domain.schedule import Schedule
from openanomaly.domain.timeutil import format_duration, parse_duration

Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds, written in YAML as a Prometheus duration such as 30s, 5m or 1d."""

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_PIPELINE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class Mode(StrEnum):
    forecast = "forecast"
    anomaly = "anomaly"
    both = "both"


class Technique(StrEnum):
    interval = "interval"
    zscore = "zscore"


class Direction(StrEnum):
    both = "both"
    above = "above"
    below = "below"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScoringSpec(_Strict):
    technique: Technique = Technique.interval
    band: tuple[float, float] = Field(
        default=(0.1, 0.9), description="lower and upper forecast quantiles of the band"
    )
    band_scale: float = Field(
        default=1.0, gt=0,
        description="widens (>1) or narrows (<1) the band around the median before scoring",
    )
    threshold: float = Field(
        default=1.0, gt=0, description="score above which a point is anomalous"
    )
    zscore_threshold: float = Field(default=3.0, gt=0, description="|z| that maps to score 1")
    noise_floor: float = Field(
        default=4.0, ge=0,
        description="the band's half-width is at least this many times the series' noise "
        "level, estimated from the step-to-step changes of its context (0 turns it off)",
    )
    count_noise: bool = Field(
        default=True,
        description="series whose values are all non-negative whole numbers (counts per "
        "step) get a band at least noise_floor times their counting noise wide: the square "
        "root of the forecast",
    )
    direction: Direction = Direction.both
    min_deviation: float = Field(
        default=0.0, ge=0, description="deviations from the median smaller than this score 0"
    )
    calibration_window: Duration | None = Field(
        default=7 * 86400.0,
        description="calibrate each series' score against its own raw scores over this "
        "window before the points scored (see domain/detection.py); null scores raw",
    )
    calibration_quantile: float = Field(
        default=0.99, gt=0.5, lt=1,
        description="the quantile of the series' recent raw scores that becomes score 1 "
        "while the history is too short for false_alarm_days (or when that is null)",
    )
    false_alarm_days: float | None = Field(
        default=None, gt=0,
        description="score 1 is set where an ordinary point of the series exceeds it about "
        "once per this many days, whatever the step: the quantile of its own raw scores over "
        "calibration_window at that rate, extrapolated by a tail fit where the window is too "
        "short for it (see domain/detection.py); null: calibration_quantile",
    )
    suppression_window: Duration | None = Field(
        default=86400.0,
        description="after an alarm, a point alarms again only if stronger than every point "
        "of this window before it (one incident, one alert); needs calibration_window",
    )
    realarm_margin: float = Field(
        default=1.0, ge=1.0,
        description="after an alarm, a point within suppression_window alarms again only "
        "if this many times stronger than the strongest point before it (1: merely "
        "stronger); above 1, a slowly worsening incident alerts once rather than at each "
        "new peak",
    )

    detectors: tuple[Detector, ...] = Field(
        default=(Detector.frozen,),
        description="detectors beside the forecast residual, folded into the same score "
        "(see domain/detectors.py): frozen, seasonal, drift, variance",
    )
    season: Duration = Field(
        default=86400.0, gt=0,
        description="the period the seasonal detector compares against (needs a context "
        "longer than one season), and how far back the recurring-alarm bar looks",
    )

    forecast_block: int | None = Field(
        default=48, ge=1,
        description="points scored against one forecast, in steps: forecasts are made at "
        "every multiple of this many steps (counted from the epoch) and each scores the "
        "points up to the next, so an incident that unfolds within a block is measured "
        "against what was expected before it began rather than against a forecast that "
        "already follows it; rounded up to whole check windows; null: one forecast just "
        "before each check window",
    )

    recurring_tolerance: Duration | None = Field(
        default=1800.0,
        description="where a point within this much of the same time one season earlier "
        "would have alarmed, a point alarms only if recurring_margin times stronger than "
        "it (a nightly job's spike alarms once, not every night); null: off. Part of the "
        "calibration: off without calibration_window",
    )
    recurring_margin: float = Field(
        default=1.5, ge=1.0,
        description="how many times stronger than an alarm at the same time one season "
        "earlier a point must be to alarm (see recurring_tolerance)",
    )

    reanchor_shifts: bool = Field(
        default=False,
        description="after a confirmed level shift, forecast from the new level (the "
        "context before the shift is moved by the jump)",
    )

    @model_validator(mode="after")
    def _suppression_needs_calibration(self) -> ScoringSpec:
        if self.suppression_window is not None and self.calibration_window is None:
            raise ValueError("suppression_window needs calibration_window")
        return self

    @field_validator("band")
    @classmethod
    def _band_around_median(cls, band: tuple[float, float]) -> tuple[float, float]:
        low, high = band
        if not 0 < low < 0.5 < high < 1:
            raise ValueError(f"band must satisfy 0 < lower < 0.5 < upper < 1, got {band}")
        return band


class OutputSpec(_Strict):
    prefix: str = "openanomaly_"
    write_future: bool = Field(
        default=True, description="write forecasts ahead of now (forecast and both modes)"
    )
    extra_labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("prefix")
    @classmethod
    def _valid_prefix(cls, prefix: str) -> str:
        if prefix and not _METRIC_NAME.match(prefix):
            raise ValueError(f"prefix {prefix!r} is not a valid start of a metric name")
        return prefix

    @field_validator("extra_labels")
    @classmethod
    def _valid_labels(cls, labels: dict[str, str]) -> dict[str, str]:
        for name in labels:
            if not _LABEL_NAME.match(name) or name.startswith("__"):
                raise ValueError(f"extra label {name!r} is not a valid label name")
        return labels


def block_length(forecast_block: int | None, window_steps: int) -> int | None:
    """Points scored against one forecast: ``forecast_block`` rounded up to whole check
    windows, so that no window straddles two blocks (None where that is one window)."""
    if forecast_block is None or forecast_block <= window_steps:
        return None
    return -(-forecast_block // window_steps) * window_steps


class PipelineSpec(_Strict):
    name: str
    query: str = Field(min_length=1, description="PromQL; every series it returns is scored")
    enabled: bool = True
    mode: Mode = Mode.anomaly
    model: str = "fracast"
    step: Duration = 60.0
    context: Duration = Field(default=86400.0, description="history fed to the model")
    horizon: Duration = Field(default=3600.0, description="how far ahead forecasts reach")
    schedule: str = "5m"
    timezone: str = "UTC"
    check_window: Duration | None = Field(
        default=None, description="span scored per anomaly run; defaults to the interval"
    )
    delay: Duration | None = Field(
        default=None, description="wait this long after a slot before running it (late data)"
    )
    scoring: ScoringSpec = Field(default_factory=ScoringSpec)
    output: OutputSpec = Field(default_factory=OutputSpec)
    max_series: int = Field(default=1000, ge=1)

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str) -> str:
        if not _PIPELINE_NAME.match(name):
            raise ValueError(
                f"pipeline name {name!r} may hold letters, digits, '_', '.' and '-' only"
            )
        return name

    @model_validator(mode="after")
    def _consistent(self) -> PipelineSpec:
        schedule = self.schedule_spec
        window = self.check_window
        if window is None:
            if schedule.interval_seconds is None:
                raise ValueError(
                    "a cron schedule needs check_window (the span each run scores, and the "
                    "stretch of forecast each run writes ahead)"
                )
            window = schedule.interval_seconds
            object.__setattr__(self, "check_window", window)
        for field, value in (("context", self.context), ("horizon", self.horizon),
                             ("check_window", window)):
            if value is not None and not _is_multiple(value, self.step):
                raise ValueError(
                    f"{field} ({format_duration(value)}) must be a whole number of steps "
                    f"(step is {format_duration(self.step)})"
                )
        if self.context_steps < 8:
            raise ValueError("context must span at least 8 steps")
        for detector in self.scoring.detectors:
            needed = needed_context_seconds(detector, self.scoring.season, self.step)
            if self.context < needed:
                raise ValueError(
                    f"scoring.detectors: {detector.value} needs a context of at least "
                    f"{format_duration(needed)} (context is {format_duration(self.context)}): "
                    "lengthen context or drop the detector"
                )
        if self.mode == Mode.forecast and not self.output.write_future:
            raise ValueError("mode 'forecast' writes future forecasts: enable output.write_future")
        return self

    @cached_property
    def schedule_spec(self) -> Schedule:
        # Parsed once per spec: schedulers ask for it on every tick of every pipeline.
        return Schedule.parse(self.schedule, self.timezone)

    @property
    def step_ms(self) -> int:
        return round(self.step * 1000)

    @property
    def context_steps(self) -> int:
        return round(self.context / self.step)

    @property
    def horizon_steps(self) -> int:
        return round(self.horizon / self.step)

    @property
    def window_steps(self) -> int:
        assert self.check_window is not None
        return round(self.check_window / self.step)

    @property
    def block_steps(self) -> int | None:
        """Points scored against one forecast where that is more than a check window
        (see ``block_length``); None: one forecast per check window."""
        return block_length(self.scoring.forecast_block, self.window_steps)

    def lead_steps(self, window_start_ms: int) -> int:
        """Steps between the start of the block a check window starts in and the
        window's start: blocks end at multiples of ``block_steps`` steps from the epoch,
        as slots end at multiples of their interval (0 without blocks)."""
        block = self.block_steps
        if block is None:
            return 0
        return (window_start_ms // self.step_ms - 1) % block

    @property
    def check_span_steps(self) -> int:
        """Steps from the first one an anomaly check reads to its window's end: the
        context before the earliest block start the window may lie in, then the window."""
        return self.context_steps + self.window_steps - 1 + (self.block_steps or 1) - 1

    @property
    def delay_ms(self) -> int:
        return round((self.delay or 0.0) * 1000)


def _is_multiple(value: float, step: float) -> bool:
    ratio = value / step
    return abs(ratio - round(ratio)) < 1e-9 and round(ratio) >= 1
