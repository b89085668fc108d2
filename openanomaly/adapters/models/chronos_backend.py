"""Chronos models through the ``chronos-forecasting`` package: Chronos-Bolt, Chronos-2 and
the original Chronos T5 family (which samples, so it is seeded per series)."""

from __future__ import annotations

import logging

import numpy as np

from openanomaly.adapters.models.settings import ModelSettings
from openanomaly.adapters.models.torch_loading import load_hub_model, resolve_device, torch_dtype
from openanomaly.domain.errors import ModelError
from openanomaly.domain.forecast import ForecastRequest, QuantileForecast, interpolate_quantiles

log = logging.getLogger(__name__)

MIN_OBSERVED = 3


class ChronosBackend:
    def __init__(self, name: str, settings: ModelSettings) -> None:
        try:
            import torch
            from chronos import BaseChronosPipeline
        except ImportError as exc:
            raise ModelError(
                f"model {name!r} needs the chronos extra: pip install 'openanomaly[chronos]'"
            ) from exc
        self.name = name
        self.settings = settings
        self.torch = torch
        device = resolve_device(settings.device)
        self.pipeline = load_hub_model(
            name, settings,
            lambda source: BaseChronosPipeline.from_pretrained(
                source, device_map=device, dtype=torch_dtype(settings.dtype)),
            "chronos",
        )
        self.kind = type(self.pipeline).__name__
        self.samples = self.kind == "ChronosPipeline"  # the T5 family draws sample paths
        native = getattr(self.pipeline, "quantiles", None)
        self.native_quantiles: tuple[float, ...] | None = (
            None if self.samples or native is None else tuple(float(q) for q in native)
        )
        try:
            model_limit = int(self.pipeline.model_context_length)
        except (AttributeError, NotImplementedError):
            model_limit = 2048
        self.max_context = min(settings.max_context or model_limit, model_limit)

    def forecast(self, request: ForecastRequest) -> QuantileForecast:
        context = request.context[:, -self.max_context:]
        levels = self.native_quantiles or tuple(request.quantiles)
        out = np.full((context.shape[0], request.horizon, len(levels)), np.nan)
        usable = np.flatnonzero(np.isfinite(context).sum(axis=1) >= MIN_OBSERVED)
        # Sampling models run one series at a time with the same seed, so a series'
        # forecast never depends on its batch neighbours.
        size = 1 if self.samples else self.settings.batch_size
        for first in range(0, usable.size, size):
            rows = usable[first:first + size]
            out[rows] = self._predict(context[rows], request.horizon, list(levels))
        return interpolate_quantiles(levels, out, request.quantiles, self.name)

    def _predict(self, context: np.ndarray, horizon: int, levels: list[float]) -> np.ndarray:
        torch = self.torch
        # Trim the common leading gap so a batch is no longer than its longest series.
        observed = np.isfinite(context).any(axis=0)
        start = int(np.argmax(observed)) if observed.any() else 0
        tensor = torch.tensor(context[:, start:], dtype=torch.float32)
        if self.kind == "Chronos2Pipeline":
            quantiles, _ = self.pipeline.predict_quantiles(
                tensor[:, None, :], prediction_length=horizon, quantile_levels=levels)
            return np.stack([q[0].float().cpu().numpy() for q in quantiles]).astype(np.float64)
        if self.samples:
            torch.manual_seed(self.settings.seed)
            quantiles, _ = self.pipeline.predict_quantiles(
                tensor, prediction_length=horizon, quantile_levels=levels,
                num_samples=self.settings.num_samples, limit_prediction_length=False)
        else:
            quantiles, _ = self.pipeline.predict_quantiles(
                tensor, prediction_length=horizon, quantile_levels=levels,
                limit_prediction_length=False)
        return np.asarray(quantiles.float().cpu().numpy(), dtype=np.float64)
