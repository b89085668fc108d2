"""How an operator would judge the alerts on one labelled incident, and per class.

An alert fires where the score crosses the threshold; a run of rows above it is one alarm
*event*, as ``anomaly_score > 1`` is one firing alert. An incident is found when any row
of its window, or of the tolerance after it, scores above the threshold; the delay is
the steps from the incident's first row to that alarm. Every event that starts outside
the windows and their tolerance is a false alarm.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from openanomaly.domain.series import FloatArray

# The goal: every incident alarmed within this many steps of its first row (a gradual
# one before its ramp ends), and no more false alarms than this per series and day.
QUICK_STEPS = 5
FA_PER_DAY_GOAL = 0.2


@dataclass(frozen=True)
class CaseOutcome:
    name: str
    kind: str
    step_seconds: float
    window: tuple[int, int] | None
    found: bool
    delay: int | None
    """Steps from the window's first row to the first alarm (None: not found)."""
    in_time: bool
    """Found within QUICK_STEPS, or for a gradual incident before its window ends."""
    false_alarms: int
    scored_days: float

    @property
    def delay_minutes(self) -> float | None:
        return None if self.delay is None else self.delay * self.step_seconds / 60.0


def above(scores: FloatArray, threshold: float) -> np.ndarray:
    """Rows that alarm; a missing score (NaN) never does."""
    with np.errstate(invalid="ignore"):
        return np.asarray(np.nan_to_num(scores, nan=-np.inf) > threshold)


def event_starts(scores: FloatArray, threshold: float) -> np.ndarray:
    """Rows where an alarm starts: above the threshold, the row before not."""
    alarms = above(scores, threshold)
    before = np.concatenate(([False], alarms[:-1]))
    return np.flatnonzero(alarms & ~before)


def score_case(
    name: str, kind: str, scores: FloatArray, windows: Sequence[tuple[int, int]],
    step_seconds: float, threshold: float = 1.0, tolerance: int = 0,
    gradual: bool = False,
) -> CaseOutcome:
    """One case: ``windows`` holds at most one inclusive (first, last) row pair, none for
    a control; ``tolerance`` rows after a window still count as alarms on it."""
    if len(windows) > 1:
        raise ValueError(f"{name}: one labelled window per case, got {len(windows)}")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0 rows, got {tolerance}")
    alarms = above(scores, threshold)
    covered = np.zeros(scores.size, dtype=bool)
    window = found_at = None
    if windows:
        start, end = (int(v) for v in windows[0])
        window = (start, end)
        covered[start:end + tolerance + 1] = True
        hits = np.flatnonzero(alarms[start:end + tolerance + 1])
        found_at = int(hits[0]) if hits.size else None
    starts = event_starts(scores, threshold)
    false_alarms = int(np.count_nonzero(~covered[starts]))
    scored_days = int(np.count_nonzero(np.isfinite(scores))) * step_seconds / 86400.0
    in_time = False
    if window is not None and found_at is not None:
        in_time = found_at <= (window[1] - window[0] if gradual else QUICK_STEPS)
    return CaseOutcome(name, kind, step_seconds, window, found_at is not None, found_at,
                       in_time, false_alarms, scored_days)


@dataclass(frozen=True)
class ClassSummary:
    kind: str
    cases: int
    found: int
    quick: int
    """Found within QUICK_STEPS."""
    in_time: int
    """Found within the goal's time (QUICK_STEPS; a gradual class: before its ramp ends)."""
    median_delay: float
    max_delay: float
    median_delay_minutes: float
    max_delay_minutes: float
    false_alarms: int
    scored_days: float
    labelled: bool
    """False for the controls (and an aggregate of them): nothing to find."""

    @property
    def fa_per_day(self) -> float:
        return self.false_alarms / self.scored_days if self.scored_days > 0 else math.nan

    @property
    def meets_goal(self) -> bool:
        """A class: every case in time. Controls: few enough false alarms."""
        if self.labelled:
            return self.cases > 0 and self.in_time == self.cases
        return self.fa_per_day <= FA_PER_DAY_GOAL


def _median(values: list[float]) -> float:
    return float(np.median(values)) if values else math.nan


def _max(values: list[float]) -> float:
    return float(max(values)) if values else math.nan


def summarise_class(kind: str, outcomes: Sequence[CaseOutcome]) -> ClassSummary:
    delays = [float(o.delay) for o in outcomes if o.delay is not None]
    minutes = [o.delay_minutes for o in outcomes if o.delay_minutes is not None]
    return ClassSummary(
        kind, len(outcomes), sum(o.found for o in outcomes),
        sum(o.delay is not None and o.delay <= QUICK_STEPS for o in outcomes),
        sum(o.in_time for o in outcomes),
        _median(delays), _max(delays), _median(minutes), _max(minutes),
        sum(o.false_alarms for o in outcomes), sum(o.scored_days for o in outcomes),
        labelled=any(o.window is not None for o in outcomes))


def summarise(outcomes: Sequence[CaseOutcome], order: Iterable[str],
              control: str = "control") -> list[ClassSummary]:
    """One row per class in ``order`` (classes without cases are left out), then the
    controls, then every case together under "all"."""
    rows = []
    for kind in [*order, control]:
        mine = [o for o in outcomes if o.kind == kind]
        if mine:
            rows.append(summarise_class(kind, mine))
    if outcomes:
        rows.append(summarise_class("all", outcomes))
    return rows


@dataclass(frozen=True)
class Headline:
    met: tuple[str, ...]
    missed: tuple[str, ...]
    controls_fa_per_day: float
    controls_met: bool

    @property
    def all_met(self) -> bool:
        return not self.missed and self.controls_met

    def text(self) -> str:
        classes = len(self.met) + len(self.missed)
        found = (f"{len(self.met)} of {classes} classes alarmed in time in every case "
                 f"(within {QUICK_STEPS} steps; drift before its ramp ends)")
        if self.missed:
            found += f"; missed by {', '.join(self.missed)}"
        verdict = "met" if self.controls_met else "missed"
        return (f"{found}. Controls: {self.controls_fa_per_day:.2f} false alarms per "
                f"series-day (goal <= {FA_PER_DAY_GOAL}): {verdict}.")


def headline(rows: Sequence[ClassSummary], control: str = "control") -> Headline:
    classes = [r for r in rows if r.labelled and r.kind != "all"]
    controls = next((r for r in rows if r.kind == control), None)
    fa = controls.fa_per_day if controls is not None else math.nan
    return Headline(tuple(r.kind for r in classes if r.meets_goal),
                    tuple(r.kind for r in classes if not r.meets_goal), fa,
                    controls is not None and controls.meets_goal)
