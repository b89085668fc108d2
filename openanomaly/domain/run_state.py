"""What the last runs of a pipeline did: the status the API and the UI show.

Every process that runs slots (the embedded scheduler, a Celery worker, `run-once`, the
API's run) folds each run into its pipeline's ``RunState`` in the store, so an ``api``
process anywhere sees whether a pipeline is healthy without asking the process that ran it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass(frozen=True)
class RunState:
    pipeline: str
    slot_ms: int
    """The slot of the run that finished last."""
    finished_ms: int
    seconds: float
    ok: bool
    error: str
    """Why the last run failed ("" when it succeeded)."""
    series: int = 0
    anomalous_points: int = 0
    max_score: float | None = None
    last_ok_slot_ms: int | None = None
    """The latest slot that ran to the end, whatever ran after it."""
    last_anomaly_ms: int | None = None
    """The slot of the latest run that found anomalous points."""
    last_anomaly_score: float | None = None
    failures: int = 0
    """Failed runs in a row, up to the last one."""
    status: str = "ok"
    """The last run's own status (ok, partial, stale, no_data, already_written; failed)."""

    @property
    def health(self) -> str:
        return "ok" if self.ok else "failing"

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> RunState:
        fields = cls.__dataclass_fields__
        return cls(**{key: value for key, value in document.items() if key in fields})


def health(enabled: bool, last: RunState | None) -> str:
    """What the UI and the API call a pipeline: disabled, never run, ok or failing."""
    if not enabled:
        return "disabled"
    return "never run" if last is None else last.health


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def after_success(previous: RunState | None, pipeline: str, slot_ms: int, finished_ms: int,
                  seconds: float, series: int, anomalous_points: int,
                  max_score: float | None, status: str = "ok") -> RunState:
    """``previous`` with one more successful run folded in."""
    anomaly = anomalous_points > 0
    last_ok = slot_ms if previous is None or previous.last_ok_slot_ms is None \
        else max(slot_ms, previous.last_ok_slot_ms)
    state = RunState(pipeline, slot_ms, finished_ms, seconds, True, "", series,
                     anomalous_points, _finite(max_score), last_ok, failures=0,
                     status=status)
    if anomaly:
        return replace(state, last_anomaly_ms=slot_ms, last_anomaly_score=_finite(max_score))
    if previous is not None:
        return replace(state, last_anomaly_ms=previous.last_anomaly_ms,
                       last_anomaly_score=previous.last_anomaly_score)
    return state


def after_failure(previous: RunState | None, pipeline: str, slot_ms: int, finished_ms: int,
                  seconds: float, error: str) -> RunState:
    """``previous`` with one more failed run folded in; what succeeded before is kept."""
    if previous is None:
        return RunState(pipeline, slot_ms, finished_ms, seconds, False, error, failures=1,
                        status="failed")
    return replace(previous, slot_ms=slot_ms, finished_ms=finished_ms, seconds=seconds,
                   ok=False, error=error, series=0, anomalous_points=0, max_score=None,
                   failures=previous.failures + 1, status="failed")
