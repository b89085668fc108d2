"""A model engine that keeps its forecasts on disk, for benchmarks that replay the same
contexts many times.

Benchmarks compare scoring options on the same files: the forecasts do not change between
those runs, only what is done with them. The key is everything a forecast depends on (the
model's name and settings, the contexts' bytes, the horizon, the quantiles and the step),
so a changed context or setting is a miss, never a stale answer; ``REVISION`` changes
when a backend's code changes what it forecasts for the same settings.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np

from openanomaly.domain.forecast import ForecastRequest, QuantileForecast
from openanomaly.ports import ModelEngine

# 2: Fracast's bands keep widening past its native 48-step block.
REVISION = "2"


class CachingEngine:
    def __init__(self, inner: ModelEngine, folder: Path, salts: dict[str, str]) -> None:
        """``salts``: per model name, a text that changes when its settings do."""
        self.inner = inner
        self.folder = folder
        self.salts = salts
        self.hits = 0
        self.misses = 0

    def forecast(self, model: str, request: ForecastRequest) -> QuantileForecast:
        path = self.folder / f"{self._key(model, request)}.npy"
        try:
            values = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            values = None
        if values is not None and values.shape[:2] == (request.context.shape[0],
                                                        request.horizon):
            self.hits += 1
            return QuantileForecast(request.quantiles, values)
        self.misses += 1
        found = self.inner.forecast(model, request)
        self._store(path, found.values)
        return found

    def _key(self, model: str, request: ForecastRequest) -> str:
        digest = hashlib.sha256()
        context = np.ascontiguousarray(request.context, dtype=np.float64)
        for part in (REVISION, model, self.salts.get(model, ""), str(context.shape),
                     str(request.horizon), repr(request.quantiles),
                     repr(float(request.step_seconds))):
            digest.update(part.encode())
            digest.update(b"\0")
        digest.update(context.tobytes())
        return digest.hexdigest()

    def _store(self, path: Path, values: np.ndarray) -> None:
        # Written beside and renamed, so parallel replays never read half a file.
        self.folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as out:
                np.save(out, values, allow_pickle=False)
            os.replace(temporary, path)
        except OSError:
            Path(temporary).unlink(missing_ok=True)
