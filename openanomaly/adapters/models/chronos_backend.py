"""Chronos models through the ``chronos-forecasting`` package: Chronos-Bolt, Chronos-2 and
the original Chronos T5 family (which samples, so it is seeded per series)."""

from __future__ import annotations

import numpy as np

from openanomaly.adapters.models.batched import BatchedQuantileBackend
from openanomaly.adapters.models.settings import ChronosSettings
from openanomaly.adapters.models.torch_loading import load_hub_model, resolve_device, torch_dtype
from openanomaly.domain.series import FloatArray


class ChronosBackend(BatchedQuantileBackend):
    MIN_OBSERVED = 3

    def __init__(self, name: str, settings: ChronosSettings) -> None:
        import torch  # here: loaded with the first model that uses it
        from chronos import BaseChronosPipeline

        super().__init__(name, settings.batch_size)
        self.settings = settings
        self.torch = torch
        device = resolve_device(settings.device)
        self.pipeline = load_hub_model(
            name, settings.source,
            lambda source: BaseChronosPipeline.from_pretrained(
                source, device_map=device, dtype=torch_dtype(settings.dtype)),
        )
        self.kind = type(self.pipeline).__name__
        self.samples = self.kind == "ChronosPipeline"  # the T5 family draws sample paths
        native = getattr(self.pipeline, "quantiles", None)
        self.native_quantiles = (
            None if self.samples or native is None else tuple(float(q) for q in native)
        )
        try:
            model_limit = int(self.pipeline.model_context_length)
        except (AttributeError, NotImplementedError):
            model_limit = 2048
        self.max_context = min(settings.max_context or model_limit, model_limit)

    def _rows_per_call(self, usable: int) -> int:
        # Sampling models run one series at a time with the same seed, so a series'
        # forecast never depends on its batch neighbours.
        return 1 if self.samples else self.batch_size

    def _predict(self, context: FloatArray, horizon: int,
                 levels: tuple[float, ...]) -> np.ndarray:
        torch = self.torch
        # Trim the common leading gap so a batch is no longer than its longest series.
        observed = np.isfinite(context).any(axis=0)
        start = int(np.argmax(observed)) if observed.any() else 0
        tensor = torch.tensor(context[:, start:], dtype=torch.float32)
        if self.kind == "Chronos2Pipeline":
            quantiles, _ = self.pipeline.predict_quantiles(
                tensor[:, None, :], prediction_length=horizon, quantile_levels=list(levels))
            return np.stack([q[0].float().cpu().numpy() for q in quantiles]).astype(np.float64)
        if self.samples:
            torch.manual_seed(self.settings.seed)
            quantiles, _ = self.pipeline.predict_quantiles(
                tensor, prediction_length=horizon, quantile_levels=list(levels),
                num_samples=self.settings.num_samples, limit_prediction_length=False)
        else:
            quantiles, _ = self.pipeline.predict_quantiles(
                tensor, prediction_length=horizon, quantile_levels=list(levels),
                limit_prediction_length=False)
        return np.asarray(quantiles.float().cpu().numpy(), dtype=np.float64)
