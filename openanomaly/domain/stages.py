"""Where a run's time goes, stage by stage and part by part.

A run times its own stages (query, history, inference, scoring, write). Code further down,
such as the database adapter, marks the parts of a stage (waiting for the database,
decoding its answer, encoding a write) with ``part``: while a ``StageClock`` is timing a
stage, the part's time is added under ``"<stage>.<part>"``; otherwise ``part`` only
runs its block. That keeps the adapters free of any timing argument.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass
class StageClock:
    stages: dict[str, float] = field(default_factory=dict)
    """Seconds per stage."""
    parts: dict[str, float] = field(default_factory=dict)
    """Seconds per marked part of a stage, keyed ``stage.part``; the rest of a stage's time
    is its own work."""

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        token = _timing.set((self, name))
        started = time.perf_counter()
        try:
            yield
        finally:
            _add(self.stages, name, time.perf_counter() - started)
            _timing.reset(token)


_timing: ContextVar[tuple[StageClock, str] | None] = ContextVar("openanomaly_stage",
                                                                default=None)


def _add(into: dict[str, float], key: str, seconds: float) -> None:
    into[key] = into.get(key, 0.0) + seconds


@contextmanager
def part(name: str) -> Iterator[None]:
    """Time this block as part ``name`` of the stage being timed, if any."""
    current = _timing.get()
    if current is None:
        yield
        return
    clock, stage = current
    started = time.perf_counter()
    try:
        yield
    finally:
        _add(clock.parts, f"{stage}.{name}", time.perf_counter() - started)
