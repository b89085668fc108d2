"""Progress of long work (backfill, the NAB replay): a bar on a terminal; elsewhere (a job
runner, a container log) a log line every few seconds with done/total, rate and time left,
so a long run is never silent."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TextIO

from openanomaly.bootstrap import App
from openanomaly.domain.pipeline import PipelineSpec
from openanomaly.services.runs import RunResult

log = logging.getLogger(__name__)


class Progress:
    def __init__(self, task: str, unit: str, total: int | None = None, every_s: float = 10.0,
                 stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.task, self.unit, self.total = task, unit, total
        self.every_s, self.clock = every_s, clock
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self._bar: Any = None
        self._started = self._logged = 0.0

    def __enter__(self) -> Progress:
        self._started = self._logged = self.clock()
        if self.stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, unit=self.unit, desc=self.task,
                             file=self.stream)
        return self

    def update_to(self, done: int, total: int | None = None) -> None:
        if total is not None:
            self.total = total
        self.done = done
        if self._bar is not None:
            self._bar.total = self.total
            self._bar.update(done - self._bar.n)
        elif self.clock() - self._logged >= self.every_s:
            self._log("progress")

    def advance(self, count: int = 1) -> None:
        self.update_to(self.done + count)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.close()
        elif kind is None:
            self._log("finished")

    def _log(self, event: str) -> None:
        now = self.clock()
        self._logged = now
        elapsed = max(now - self._started, 1e-9)
        rate = self.done / elapsed
        fields: dict[str, Any] = {"task": self.task, "done": self.done, "total": self.total,
                                  "unit": self.unit, "rate_per_s": round(rate, 2),
                                  "elapsed_s": round(elapsed, 1)}
        if self.total and rate > 0 and event == "progress":
            fields["left_s"] = round((self.total - self.done) / rate, 1)
        log.info(f"{self.task}: {event}", extra=fields)


def backfill_with_bar(app: App, spec: PipelineSpec, start_ms: int, end_ms: int) -> RunResult:
    with Progress(f"backfill {spec.name}", "slot") as progress:
        return app.backfill(spec, start_ms, end_ms, progress.update_to)
