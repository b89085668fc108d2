"""TimesFM 2.5 (200M, PyTorch) through Google's ``timesfm`` package."""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np

from openanomaly.adapters.models.settings import ModelSettings
from openanomaly.adapters.models.torch_loading import load_hub_model, resolve_device
from openanomaly.domain.errors import ModelError
from openanomaly.domain.forecast import ForecastRequest, QuantileForecast, interpolate_quantiles

NATIVE_QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
MAX_CONTEXT = 16384
PATCH = 32  # input patch; the compiled context is a multiple of it
OUTPUT_PATCH = 128  # the compiled horizon is a multiple of it
MIN_OBSERVED = 3


class TimesFMBackend:
    def __init__(self, name: str, settings: ModelSettings) -> None:
        try:
            import timesfm
            import torch
        except ImportError as exc:
            raise ModelError(
                f"model {name!r} needs the timesfm extra: pip install 'openanomaly[timesfm]'"
            ) from exc
        self.name = name
        self.settings = settings
        self.timesfm = timesfm
        self.model: Any = load_hub_model(
            name, settings,
            lambda source: timesfm.TimesFM_2p5_200M_torch.from_pretrained(
                source, torch_compile=False),
            "timesfm",
        )
        # The package picks cuda:0 whenever it exists; honour the configured device instead.
        device = torch.device(resolve_device(settings.device))
        self.model.model.device = device
        self.model.model.to(device)
        self.max_context = min(settings.max_context or 2048, MAX_CONTEXT)
        self._compiled_horizon = 0
        self._lock = threading.Lock()

    def _compile(self, horizon: int) -> None:
        """Decoding is compiled for a maximum horizon; grow it when a request needs more."""
        wanted = math.ceil(horizon / OUTPUT_PATCH) * OUTPUT_PATCH
        if wanted <= self._compiled_horizon:
            return
        context = math.ceil(self.max_context / PATCH) * PATCH
        self.model.compile(self.timesfm.ForecastConfig(
            max_context=context, max_horizon=wanted, normalize_inputs=True,
            per_core_batch_size=self.settings.batch_size, use_continuous_quantile_head=True,
            force_flip_invariance=True, infer_is_positive=False, fix_quantile_crossing=True,
        ))
        self._compiled_horizon = wanted

    def forecast(self, request: ForecastRequest) -> QuantileForecast:
        context = request.context[:, -self.max_context:]
        out = np.full((context.shape[0], request.horizon, len(NATIVE_QUANTILES)), np.nan)
        usable = np.flatnonzero(np.isfinite(context).sum(axis=1) >= MIN_OBSERVED)
        if usable.size:
            with self._lock:
                self._compile(request.horizon)
                # The package strips leading NaN and interpolates inner gaps itself.
                _, quantiles = self.model.forecast(
                    horizon=request.horizon, inputs=[context[row] for row in usable])
            # Column 0 is the mean; 1..9 are the deciles.
            out[usable] = np.asarray(quantiles, dtype=np.float64)[:usable.size, :, 1:]
        return interpolate_quantiles(NATIVE_QUANTILES, out, request.quantiles, self.name)
