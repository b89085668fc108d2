"""Dynamic batching: concurrent forecast requests for one model share engine calls."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass

import numpy as np

from openanomaly.domain.errors import ModelError
from openanomaly.domain.forecast import ForecastRequest, QuantileForecast
from openanomaly.entrypoints.model_server.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass
class _Job:
    request: ForecastRequest
    future: asyncio.Future[QuantileForecast]
    enqueued: float

    @property
    def series(self) -> int:
        return int(self.request.context.shape[0])

    @property
    def steps(self) -> int:
        return int(self.request.context.shape[1])


class ModelBatcher:
    """Merges concurrent requests for one model into shared engine calls, one call at a time.

    One call at a time per model keeps a GPU's memory to one batch; requests that arrive
    while a call runs gather for the next one. A request whose caller stopped waiting (its
    future is cancelled) is dropped before its call starts; a call that runs is not
    interrupted.
    """

    def __init__(
        self,
        model: str,
        forecast: Callable[[ForecastRequest], QuantileForecast],
        metrics: Metrics,
        wait_s: float,
        max_series: int,
        pad_across_lengths: bool,
    ) -> None:
        self.model = model
        self._forecast = forecast
        self._metrics = metrics
        self.wait_s = wait_s
        self.max_series = max_series
        self.pad_across_lengths = pad_across_lengths
        self._jobs: deque[_Job] = deque()
        self._queued_series = 0
        self._running: list[_Job] = []
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def forecast(self, request: ForecastRequest) -> QuantileForecast:
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run_forever(), name=f"batcher-{self.model}")
        job = _Job(request, loop.create_future(), loop.time())
        self._jobs.append(job)
        self._queued_series += job.series
        self._arrived.set()
        return await job.future

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        stopped = ModelError("the model server is shutting down; retry on another server")
        for job in [*self._running, *self._jobs]:
            if not job.future.done():
                job.future.set_exception(stopped)
        self._jobs.clear()

    async def _run_forever(self) -> None:
        while True:
            while not self._jobs:
                self._arrived.clear()
                await self._arrived.wait()
            await self._wait_for_company()
            self._running = self._take()
            try:
                for group in self._groups(self._running):
                    # Requests that timed out while an earlier group ran have left.
                    waiting = [job for job in group if not job.future.done()]
                    if waiting:
                        await self._run(waiting)
            finally:
                self._running = []

    async def _wait_for_company(self) -> None:
        loop = asyncio.get_running_loop()
        # The window starts when the oldest job arrived: jobs that queued behind a running
        # call have already waited.
        deadline = self._jobs[0].enqueued + self.wait_s
        while self._queued_series < self.max_series:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._arrived.wait()
            except TimeoutError:
                return

    def _take(self) -> list[_Job]:
        taken: list[_Job] = []
        series = 0
        while self._jobs:
            job = self._jobs[0]
            if taken and series + job.series > self.max_series:
                break
            self._jobs.popleft()
            self._queued_series -= job.series
            if job.future.done():  # its client went away
                continue
            taken.append(job)
            series += job.series
        return taken

    def _groups(self, jobs: list[_Job]) -> list[list[_Job]]:
        groups: dict[tuple[object, ...], list[_Job]] = {}
        for job in jobs:
            request = job.request
            width = None if self.pad_across_lengths else job.steps
            key = (request.horizon, request.quantiles, request.step_seconds, width)
            groups.setdefault(key, []).append(job)
        return list(groups.values())

    async def _run(self, jobs: list[_Job]) -> None:
        series = sum(job.series for job in jobs)
        started = time.perf_counter()
        try:
            # Padding a large merge is numpy work too: keep it off the event loop.
            forecast = await asyncio.to_thread(lambda: self._forecast(_merge(jobs)))
        except ModelError as exc:
            # The model or its settings, shared by every job of the group: all fail alike.
            _fail(jobs, exc)
            return
        except Exception as exc:
            if len(jobs) == 1:
                _fail(jobs, exc)
                return
            # Maybe one request's data trips the model: isolate it instead of failing all.
            log.warning("merged batch failed; running its requests one by one",
                        extra={"model": self.model, "requests": len(jobs), "error": repr(exc)})
            for job in jobs:
                if not job.future.done():
                    await self._run([job])
            return
        self._metrics.observe_batch(self.model, len(jobs), series, time.perf_counter() - started)
        row = 0
        for job in jobs:
            values = forecast.values[row:row + job.series]
            row += job.series
            if not job.future.done():
                job.future.set_result(QuantileForecast(forecast.quantiles, values))


def _merge(jobs: list[_Job]) -> ForecastRequest:
    if len(jobs) == 1:
        return jobs[0].request
    width = max(job.steps for job in jobs)
    context = np.full((sum(job.series for job in jobs), width), np.nan)
    row = 0
    for job in jobs:
        context[row:row + job.series, width - job.steps:] = job.request.context
        row += job.series
    first = jobs[0].request
    return ForecastRequest(context, first.horizon, first.quantiles, first.step_seconds)


def _fail(jobs: list[_Job], exc: BaseException) -> None:
    for job in jobs:
        if not job.future.done():
            job.future.set_exception(exc)
