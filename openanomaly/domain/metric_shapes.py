"""Base shapes of infrastructure metrics, for the labelled incident suite.

Each shape is a pure function of (rows, step in seconds, random generator, noise level)
and returns a ``Metric``: the noise-free signal and the noise kept apart, so that an
incident can change one without the other (a level shift moves the signal, a variance
burst scales the noise) and the untouched rows stay bit-identical to the control.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from openanomaly.domain.series import FloatArray

DAY_S = 86400.0

# Multipliers of each shape's ordinary noise: a quiet, a typical and a noisy series.
NOISE_LEVELS = {"low": 0.5, "mid": 1.0, "high": 2.0}


@dataclass(frozen=True)
class Metric:
    """A metric before its incident: ``values`` is ``level + noise`` held in bounds."""

    shape: str
    level: FloatArray
    noise: FloatArray
    spread: FloatArray
    """The noise's standard deviation at each row: the unit of an incident's size."""
    step_seconds: float
    floor: float = 0.0
    ceiling: float = np.inf
    integer: bool = False
    """Counts per step: values are whole numbers."""
    daily: bool = False
    """The level follows a daily cycle (phase shifts and seasonal drops make sense)."""

    @property
    def sigma(self) -> float:
        """How far the noise itself strays: the unit of changes that last (level shifts,
        drifts). For a random walk that is its wander, not its step-to-step change."""
        return float(np.std(self.noise))

    def values(self) -> FloatArray:
        out = np.clip(self.level + self.noise, self.floor, self.ceiling)
        return np.rint(out) if self.integer else out

    def with_arrays(self, level: FloatArray, noise: FloatArray) -> Metric:
        return replace(self, level=level, noise=noise)


def _hours(t: FloatArray) -> FloatArray:
    return (t % DAY_S) / 3600.0


def daily_cycle(t: FloatArray, peak_hour: float) -> FloatArray:
    """A busy day and a quiet night in [-1, 1]: a skewed curve, not a pure sine, peaking
    near ``peak_hour``."""
    angle = 2 * np.pi * (_hours(t) - peak_hour) / 24.0
    curve = np.cos(angle) + 0.35 * np.cos(2 * angle + 0.6)
    return np.asarray(curve / 1.35)


def _times(n: int, step_seconds: float) -> FloatArray:
    return np.arange(n, dtype=np.float64) * step_seconds


def request_rate(n: int, step_seconds: float, rng: np.random.Generator,
                 noise: float = 1.0) -> Metric:
    """Requests per second of a service: a strong daily cycle, a slight weekly one, and
    noise that grows with the square root of the rate, as counting noise does."""
    t = _times(n, step_seconds)
    base = rng.uniform(50, 500)
    amplitude = rng.uniform(0.4, 0.7)
    weekly = 1 + 0.05 * np.sin(2 * np.pi * t / (7 * DAY_S) + rng.uniform(0, 2 * np.pi))
    level = base * (1 + amplitude * daily_cycle(t, rng.uniform(12, 18))) * weekly
    spread = 0.03 * noise * np.sqrt(level * base)
    return Metric("requests", level, rng.normal(0.0, 1.0, n) * spread, spread, step_seconds,
                  daily=True)


def active_connections(n: int, step_seconds: float, rng: np.random.Generator,
                       noise: float = 1.0) -> Metric:
    """Open connections of an internal service: busy in business hours, quiet outside,
    with steep morning and evening edges, and a small noise relative to the level."""
    t = _times(n, step_seconds)
    hours = _hours(t)
    opens, closes = rng.uniform(7, 9), rng.uniform(18, 21)
    business = (1 / (1 + np.exp(-(hours - opens) / 0.5))) * (
        1 / (1 + np.exp(-(closes - hours) / 0.5)))
    base = rng.uniform(200, 2000)
    level = base * (0.25 + 0.75 * business)
    spread = 0.015 * noise * level
    return Metric("connections", level, rng.normal(0.0, 1.0, n) * spread, spread,
                  step_seconds, daily=True)


def bursty_counts(n: int, step_seconds: float, rng: np.random.Generator,
                  noise: float = 1.0) -> Metric:
    """Events counted per step (errors, jobs): a gamma-Poisson mixture, so counts come in
    bursts beyond Poisson's noise; a noisier level means burstier counts."""
    t = _times(n, step_seconds)
    rate = rng.uniform(8, 30) * (1 + 0.5 * daily_cycle(t, rng.uniform(12, 18)))
    # The gamma's shape: smaller is burstier (variance rate + rate**2 / shape).
    shape = 40.0 / noise**2
    counts = rng.poisson(rate * rng.gamma(shape, 1.0 / shape, n)).astype(np.float64)
    spread = np.sqrt(rate + rate**2 / shape)
    return Metric("counts", rate, counts - rate, spread, step_seconds, integer=True,
                  daily=True)


def latency(n: int, step_seconds: float, rng: np.random.Generator,
            noise: float = 1.0) -> Metric:
    """A latency in seconds: positive, a mild daily cycle (slower when busy) and
    right-skewed noise, since slow requests have no upper bound and fast ones have one."""
    t = _times(n, step_seconds)
    level = rng.uniform(0.05, 0.3) * (1 + 0.15 * daily_cycle(t, rng.uniform(12, 18)))
    log_sigma = 0.08 * noise
    skewed = np.exp(rng.normal(0.0, log_sigma, n) - log_sigma**2 / 2) - 1
    spread = level * log_sigma
    return Metric("latency", level, level * skewed, spread, step_seconds, daily=True)


def cpu_gauge(n: int, step_seconds: float, rng: np.random.Generator,
              noise: float = 1.0) -> Metric:
    """CPU utilisation in percent: a flat level that wanders a little over hours, with
    white noise on top."""
    t = _times(n, step_seconds)
    hours = t / 3600.0
    wander = 0.8 * np.sin(2 * np.pi * hours / rng.uniform(7, 13) + rng.uniform(0, 2 * np.pi))
    level = rng.uniform(20, 55) + wander
    spread = np.full(n, rng.uniform(0.6, 1.2) * noise)
    return Metric("cpu", level, rng.normal(0.0, 1.0, n) * spread, spread, step_seconds,
                  ceiling=100.0)


def memory_sawtooth(n: int, step_seconds: float, rng: np.random.Generator,
                    noise: float = 1.0) -> Metric:
    """Heap bytes of a garbage-collected process: it grows between collections, drops
    back at each, and the floor itself creeps up slowly."""
    t = _times(n, step_seconds)
    base = rng.uniform(1e9, 4e9)
    period = rng.uniform(2, 6) * 3600.0
    growth = rng.uniform(0.05, 0.15) * base
    phase = rng.uniform(0, period)
    level = base * (1 + 0.02 * t / DAY_S) + growth * (((t + phase) % period) / period)
    spread = np.full(n, 0.002 * base * noise)
    return Metric("memory", level, rng.normal(0.0, 1.0, n) * spread, spread, step_seconds)


def queue_depth(n: int, step_seconds: float, rng: np.random.Generator,
                noise: float = 1.0) -> Metric:
    """Items waiting in a queue: a random walk pulled back slowly to its usual depth
    (an AR(1) close to a unit root). The spread is the step-to-step innovation."""
    mean = rng.uniform(50, 300)
    innovation = 0.02 * mean * noise
    shocks = rng.normal(0.0, innovation, n)
    walk = mean_reverting_walk(shocks, 0.98)
    return Metric("queue", np.full(n, mean), walk, np.full(n, innovation), step_seconds)


def mean_reverting_walk(shocks: FloatArray, pull: float, chunk: int = 256) -> FloatArray:
    """``walk[i] = pull * walk[i - 1] + shocks[i]``, vectorised within chunks: in closed
    form each chunk is a cumulative sum scaled by powers of ``pull``, and chunks stay
    short so those powers keep their precision."""
    out = np.empty_like(shocks)
    powers = pull ** np.arange(chunk, dtype=np.float64)
    carry = 0.0
    for start in range(0, shocks.size, chunk):
        part = shocks[start:start + chunk]
        scale = powers[:part.size]
        out[start:start + part.size] = scale * (pull * carry + np.cumsum(part / scale))
        carry = float(out[start + part.size - 1])
    return out


Shape = Callable[[int, float, np.random.Generator, float], Metric]

SHAPES: dict[str, Shape] = {
    "requests": request_rate,
    "connections": active_connections,
    "counts": bursty_counts,
    "latency": latency,
    "cpu": cpu_gauge,
    "memory": memory_sawtooth,
    "queue": queue_depth,
}
