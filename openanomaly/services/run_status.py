"""Folding each run into its pipeline's RunState, the status the API and the UI show."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from openanomaly.domain.errors import ModelError, TSDBError
from openanomaly.domain.redaction import redact
from openanomaly.domain.run_state import RunState, after_failure, after_success
from openanomaly.ports import RunLog, Telemetry
from openanomaly.services.runs import RunResult

log = logging.getLogger(__name__)

T = TypeVar("T")


def _now_ms() -> int:
    return int(time.time() * 1000)


def recorded(run_log: RunLog | None, pipeline: str, slot_ms: int,
             run: Callable[[], RunResult], clock: Callable[[], int] = _now_ms,
             telemetry: Telemetry | None = None) -> RunResult:
    """``run()``, with its outcome, duration and error recorded in ``run_log`` and counted
    by ``telemetry``.

    The run's own error propagates unchanged; a store that cannot take the record only
    costs a warning, never the run that already wrote its outputs.
    """
    result = failure_recorded(run_log, pipeline, slot_ms, run, clock, telemetry)
    if telemetry is not None:
        telemetry.observe_run(pipeline, result.status, result.seconds, result.stage_seconds,
                              result.series, result.samples_written)
    record_success(run_log, result, clock)
    return result


def failure_recorded(run_log: RunLog | None, pipeline: str, slot_ms: int,
                     work: Callable[[], T], clock: Callable[[], int] = _now_ms,
                     telemetry: Telemetry | None = None) -> T:
    """``work()``; should it fail, the failure is recorded as ``recorded`` records it."""
    started = time.monotonic()
    try:
        return work()
    except Exception as exc:
        error = redact(f"{type(exc).__name__}: {exc}")
        _record(run_log, pipeline, lambda previous: after_failure(
            previous, pipeline, slot_ms, clock(), time.monotonic() - started, error))
        if telemetry is not None:
            telemetry.observe_run(pipeline, "failed", time.monotonic() - started, {}, 0, 0)
            telemetry.observe_error(_component(exc), type(exc).__name__)
        raise


def record_success(run_log: RunLog | None, result: RunResult,
                   clock: Callable[[], int] = _now_ms) -> None:
    _record(run_log, result.pipeline, lambda previous: after_success(
        previous, result.pipeline, result.at_ms, clock(), result.seconds, result.series,
        result.anomalous_points, result.max_score, result.status))


def _component(error: BaseException) -> str:
    """Which part failed, for the errors metric."""
    if isinstance(error, TSDBError):
        return "tsdb"
    if isinstance(error, ModelError):
        return "model"
    return "run"


def _record(run_log: RunLog | None, pipeline: str,
            fold: Callable[[RunState | None], RunState]) -> None:
    if run_log is None:
        return
    try:
        run_log.record_run(fold(run_log.run_state(pipeline)))
    except Exception as exc:  # the store is down: the run itself is not affected
        log.warning("could not record the run's status",
                    extra={"pipeline": pipeline, "error": str(exc)})
