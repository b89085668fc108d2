"""Operator incidents injected into base metric shapes, with their labelled windows.

Every class changes the series from its start row on and never before, so the rows ahead
of it are exactly the control's, and the label says where an operator wants an alert:
the incident itself, or for a lasting change (level shift, new noise level, phase shift)
its first hour, and for a drift the ramp.

``suite`` builds the whole labelled set deterministically from seeds and steps, as
``ReplayInput`` cases that the NAB replay scores exactly as production would.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from openanomaly.domain.metric_shapes import NOISE_LEVELS, SHAPES, Metric
from openanomaly.domain.nab_scoring import first_scored_row
from openanomaly.domain.series import FloatArray

CONTROL = "control"
# A detector is judged on finding these before their ramp ends rather than within a few
# steps: the first rows of a slow change are indistinguishable from noise.
GRADUAL = frozenset({"drift"})

# The shapes where each class is an incident an operator would recognise, and would see
# on a chart: a phase shift is lost in the noise of bursty counts or a mild latency cycle,
# and a step down would take counts or a latency through zero.
APPLIES: dict[str, tuple[str, ...]] = {
    "spike": ("requests", "connections", "counts", "latency", "cpu", "memory", "queue"),
    "step_up": ("requests", "connections", "latency", "cpu", "memory", "queue"),
    "step_down": ("requests", "connections", "cpu", "memory", "queue"),
    "variance_burst": ("requests", "connections", "latency", "cpu", "queue"),
    "variance_change": ("requests", "connections", "latency", "cpu", "queue"),
    "phase_shift": ("requests", "connections"),
    "seasonal_drop": ("requests", "connections", "counts"),
    "surge": ("requests", "connections", "counts"),
    "flatline": ("requests", "connections", "counts", "latency", "cpu"),
    "drift": ("memory", "latency", "cpu", "queue"),
}
CLASSES = tuple(APPLIES)

PHASE_SHIFT_S = 3 * 3600.0
# A lasting change is labelled over its first hour: alerts later on are repeats.
ONSET_S = 3600.0

CASES_PER_CLASS = 4
CONTROL_NOISE = ("low", "high")
DEFAULT_STEPS = (60, 300)


@dataclass(frozen=True)
class Incident:
    kind: str
    values: FloatArray
    windows: tuple[tuple[int, int], ...]
    """Inclusive (first row, last row), as NAB labels them; empty for a control."""


def rows_of(seconds: float, step_seconds: float) -> int:
    return max(1, round(seconds / step_seconds))


# --- the classes: each returns the changed level and noise and its window's last row ---

Change = tuple[FloatArray, FloatArray, int]


def _spike(metric: Metric, start: int, rng: np.random.Generator) -> Change:
    level, noise = metric.level.copy(), metric.noise.copy()
    height = rng.uniform(6, 10) * metric.spread[start]
    value = metric.values()[start]
    # Mostly up (errors, latency, load); a dip only where it stays a valid value.
    down = rng.random() < 0.3 and value - height > metric.floor
    level[start] += -height if down else height
    return level, noise, start


def _step(sign: float) -> Callable[[Metric, int, np.random.Generator], Change]:
    def change(metric: Metric, start: int, rng: np.random.Generator) -> Change:
        level, noise = metric.level.copy(), metric.noise.copy()
        size = rng.uniform(5, 8) * metric.sigma
        if sign < 0:
            # A rate or latency never shifts below its floor: keep the step above it.
            size = min(size, 0.6 * float(np.min(level[start:]) - metric.floor))
        level[start:] += sign * size
        return level, noise, start + rows_of(ONSET_S, metric.step_seconds) - 1
    return change


def _variance_burst(metric: Metric, start: int, rng: np.random.Generator) -> Change:
    end = start + rows_of(1800, metric.step_seconds) - 1
    noise = metric.noise.copy()
    noise[start:end + 1] *= 5
    return metric.level.copy(), noise, end


def _variance_change(metric: Metric, start: int, rng: np.random.Generator) -> Change:
    noise = metric.noise.copy()
    noise[start:] *= 3
    return metric.level.copy(), noise, start + rows_of(ONSET_S, metric.step_seconds) - 1


def _phase_shift(metric: Metric, start: int, rng: np.random.Generator) -> Change:
    """From ``start`` on the series repeats itself ``PHASE_SHIFT_S`` late, as after a
    time zone or batch schedule change."""
    lag = rows_of(PHASE_SHIFT_S, metric.step_seconds)
    level, noise = metric.level.copy(), metric.noise.copy()
    level[start:] = metric.level[start - lag:metric.level.size - lag]
    noise[start:] = metric.noise[start - lag:metric.noise.size - lag]
    return level, noise, start + rows_of(ONSET_S, metric.step_seconds) - 1


def _scaled(factor: float) -> Callable[[Metric, int, np.random.Generator], Change]:
    """A rate multiplied for half an hour (an outage upstream, a retry storm)."""
    def change(metric: Metric, start: int, rng: np.random.Generator) -> Change:
        end = start + rows_of(1800, metric.step_seconds) - 1
        level, noise = metric.level.copy(), metric.noise.copy()
        level[start:end + 1] *= factor
        noise[start:end + 1] *= factor
        return level, noise, end
    return change


def _flatline(metric: Metric, start: int, rng: np.random.Generator) -> Change:
    """A stuck exporter: the last value repeated for an hour."""
    end = start + rows_of(3600, metric.step_seconds) - 1
    level, noise = metric.level.copy(), metric.noise.copy()
    level[start:end + 1] = metric.values()[start - 1]
    noise[start:end + 1] = 0.0
    return level, noise, end


def _drift(metric: Metric, start: int, rng: np.random.Generator) -> Change:
    """A slow ramp over hours (a leak, creeping latency) that stays where it ended."""
    ramp = rows_of(rng.uniform(3, 6) * 3600, metric.step_seconds)
    total = rng.uniform(6, 10) * metric.sigma
    level = metric.level.copy()
    level[start:start + ramp] += total * np.arange(1, ramp + 1) / ramp
    level[start + ramp:] += total
    return level, metric.noise.copy(), start + ramp - 1


_CHANGES: dict[str, Callable[[Metric, int, np.random.Generator], Change]] = {
    "spike": _spike,
    "step_up": _step(1.0),
    "step_down": _step(-1.0),
    "variance_burst": _variance_burst,
    "variance_change": _variance_change,
    "phase_shift": _phase_shift,
    "seasonal_drop": _scaled(0.4),
    "surge": _scaled(2.5),
    "flatline": _flatline,
    "drift": _drift,
}


def inject(kind: str, metric: Metric, start: int, rng: np.random.Generator) -> Incident:
    """``metric`` with an incident of class ``kind`` from row ``start`` on."""
    if kind == CONTROL:
        return Incident(kind, metric.values(), ())
    if kind not in _CHANGES:
        raise ValueError(f"unknown incident class {kind!r}; known: {', '.join(CLASSES)}")
    if not 0 < start < metric.level.size:
        raise ValueError(f"start {start} is outside the series (1..{metric.level.size - 1})")
    level, noise, end = _CHANGES[kind](metric, start, rng)
    end = min(end, metric.level.size - 1)
    return Incident(kind, metric.with_arrays(level, noise).values(), ((start, end),))


def place(kind: str, metric: Metric, rng: np.random.Generator, earliest: int,
          latest: int) -> int:
    """The start row of an incident, in ``[earliest, latest]``. A phase shift starts
    where the late series departs most from the usual one: at a crossing of the two
    curves the shift would be invisible for hours."""
    if kind != "phase_shift":
        return int(rng.integers(earliest, latest + 1))
    lag = rows_of(PHASE_SHIFT_S, metric.step_seconds)
    rows = np.arange(earliest, latest + 1)
    departure = np.abs(metric.level[rows - lag] - metric.level[rows])
    candidates = rows[departure >= 0.8 * departure.max()]
    return int(rng.choice(candidates))


# --- the suite ---------------------------------------------------------------------------

def series_rows(step_seconds: float, context: int = 2048) -> int:
    """Four days of rows; three where three days already hold a full context and NAB's
    probation, since a longer series would only add replay time."""
    three = math.ceil(3 * 86400 / step_seconds)
    if three >= context + 750:
        return three
    return math.ceil(4 * 86400 / step_seconds)


def incident_range(rows: int, step_seconds: float) -> tuple[int, int]:
    """Where incidents start: in the second half, after at least two days and after the
    first scored row, and early enough that the longest one (a 6 h drift) and an hour's
    tolerance after it fit before the end."""
    earliest = max(rows // 2, math.ceil(2 * 86400 / step_seconds), first_scored_row(rows) + 1)
    latest = rows - rows_of(8 * 3600, step_seconds)
    if latest < earliest:
        raise ValueError(f"a step of {step_seconds:g} s leaves no room for incidents")
    return earliest, latest


@dataclass(frozen=True)
class CaseName:
    kind: str
    shape: str
    step_seconds: int
    seed: int
    index: int

    def __str__(self) -> str:
        return f"{self.kind}/{self.shape}/s{self.step_seconds}/seed{self.seed}/{self.index}"

    @classmethod
    def parse(cls, name: str) -> CaseName:
        try:
            kind, shape, step, seed, index = name.split("/")
            return cls(kind, shape, int(step.removeprefix("s")),
                       int(seed.removeprefix("seed")), int(index))
        except ValueError:
            raise ValueError(f"not a suite case name: {name!r}") from None


@dataclass(frozen=True)
class Case:
    name: CaseName
    noise: str
    values: FloatArray
    windows: tuple[tuple[int, int], ...]


def _generator(kind: str, step_seconds: int, seed: int, index: int) -> np.random.Generator:
    # Each case has a generator of its own, so adding a class or a seed to the suite
    # leaves every other case unchanged.
    kind_id = len(CLASSES) if kind == CONTROL else CLASSES.index(kind)
    return np.random.default_rng([seed, step_seconds, kind_id, index])


def base_metric(kind: str, shape: str, noise: str, step_seconds: int, seed: int,
                index: int, rng: np.random.Generator | None = None) -> Metric:
    """The series a case's incident goes into, before it does."""
    rng = rng if rng is not None else _generator(kind, step_seconds, seed, index)
    return SHAPES[shape](series_rows(step_seconds), float(step_seconds), rng,
                         NOISE_LEVELS[noise])


def build_case(kind: str, shape: str, noise: str, step_seconds: int, seed: int,
               index: int) -> Case:
    rng = _generator(kind, step_seconds, seed, index)
    metric = base_metric(kind, shape, noise, step_seconds, seed, index, rng)
    rows = metric.level.size
    start = 0
    if kind != CONTROL:
        start = place(kind, metric, rng, *incident_range(rows, step_seconds))
    incident = inject(kind, metric, start, rng)
    return Case(CaseName(kind, shape, step_seconds, seed, index), noise, incident.values,
                incident.windows)


def plan(seeds: Iterable[int], steps: Iterable[int] = DEFAULT_STEPS,
         classes: Sequence[str] = CLASSES,
         controls: bool = True) -> list[tuple[str, str, str, int, int, int]]:
    """What ``suite`` builds: (class, shape, noise, step, seed, index) per case. Each
    class cycles over its shapes, starting at a different one per seed."""
    noise_names = tuple(NOISE_LEVELS)
    out = []
    for step in steps:
        for seed in seeds:
            for kind in classes:
                shapes = APPLIES[kind]
                for index in range(CASES_PER_CLASS):
                    shape = shapes[(seed + index) % len(shapes)]
                    noise = noise_names[(seed + index % len(shapes) + index // len(shapes)) % 3]
                    out.append((kind, shape, noise, step, seed, index))
            if controls:
                combos = [(s, n) for s in SHAPES for n in CONTROL_NOISE]
                out += [(CONTROL, s, n, step, seed, i) for i, (s, n) in enumerate(combos)]
    return out


def suite(seeds: Iterable[int], steps: Iterable[int] = DEFAULT_STEPS,
          classes: Sequence[str] = CLASSES, controls: bool = True) -> list[Case]:
    """Every class on several shapes, at every step, for every seed, plus controls."""
    for kind in classes:
        if kind not in APPLIES:
            raise ValueError(f"unknown incident class {kind!r}; known: {', '.join(CLASSES)}")
    return [build_case(*planned) for planned in plan(list(seeds), list(steps), classes,
                                                     controls)]
