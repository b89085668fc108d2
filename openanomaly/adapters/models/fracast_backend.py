"""Fracast-0: a compact foundation model whose weights ship inside the ``fracast`` package."""

from __future__ import annotations

import logging

import numpy as np

from openanomaly.adapters.models.settings import ModelSettings
from openanomaly.adapters.models.torch_loading import resolve_device
from openanomaly.domain.errors import ModelError
from openanomaly.domain.forecast import ForecastRequest, QuantileForecast, interpolate_quantiles

log = logging.getLogger(__name__)

# Fracast refuses contexts with fewer finite points than this.
MIN_OBSERVED = 8


class FracastBackend:
    def __init__(self, name: str, settings: ModelSettings) -> None:
        try:
            from fracast import FracastModel
        except ImportError as exc:
            raise ModelError(
                "the fracast package is missing: pip install fracast (its weights ship inside it)"
            ) from exc
        self.name = name
        self.settings = settings
        try:
            self.model = FracastModel.from_pretrained(
                settings.source, weights=settings.weights, device=resolve_device(settings.device)
            )
        except (OSError, RuntimeError, ValueError) as exc:
            raise ModelError(
                f"model {name!r}: cannot load Fracast weights from "
                f"{settings.source or 'the fracast package'}: {exc}"
            ) from exc
        self.max_context = min(settings.max_context or self.model.context_length,
                               self.model.context_length)
        self.native_quantiles = tuple(self.model.quantiles)

    def forecast(self, request: ForecastRequest) -> QuantileForecast:
        context = request.context[:, -self.max_context:]
        n_series = context.shape[0]
        native = np.full(
            (n_series, request.horizon, len(self.native_quantiles)), np.nan, dtype=np.float64
        )
        usable = np.isfinite(context).sum(axis=1) >= MIN_OBSERVED
        rows = np.flatnonzero(usable)
        size = self.settings.batch_size
        for first in range(0, rows.size, size):
            chunk = rows[first:first + size]
            # Each row is normalised and run independently inside the model, so a series'
            # forecast does not depend on which other series share its batch.
            block = self.model.forecast_batch(
                context[chunk].astype(np.float32), horizon=request.horizon
            )
            native[chunk] = block
        return interpolate_quantiles(self.native_quantiles, native, request.quantiles, self.name)
