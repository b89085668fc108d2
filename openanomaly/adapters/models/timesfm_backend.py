"""TimesFM 2.5 (200M, PyTorch) through Google's ``timesfm`` package."""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np

from openanomaly.adapters.models.batched import BatchedQuantileBackend
from openanomaly.adapters.models.settings import TimesFMSettings
from openanomaly.adapters.models.torch_loading import load_hub_model, resolve_device
from openanomaly.domain.series import FloatArray

NATIVE_QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
MAX_CONTEXT = 16384
PATCH = 32  # input patch; the compiled context is a multiple of it
OUTPUT_PATCH = 128  # the compiled horizon is a multiple of it


class TimesFMBackend(BatchedQuantileBackend):
    MIN_OBSERVED = 3

    def __init__(self, name: str, settings: TimesFMSettings) -> None:
        import timesfm  # here: loaded with the first model that uses it
        import torch

        super().__init__(name, settings.batch_size)
        self.settings = settings
        self.timesfm = timesfm
        self.model: Any = load_hub_model(
            name, settings.source,
            lambda source: timesfm.TimesFM_2p5_200M_torch.from_pretrained(
                source, torch_compile=False),
        )
        # The package picks cuda:0 whenever it exists; honour the configured device instead.
        device = torch.device(resolve_device(settings.device))
        self.model.model.device = device
        self.model.model.to(device)
        self.max_context = min(settings.max_context or 2048, MAX_CONTEXT)
        self.native_quantiles = NATIVE_QUANTILES
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
            per_core_batch_size=self.batch_size, use_continuous_quantile_head=True,
            force_flip_invariance=True, infer_is_positive=False, fix_quantile_crossing=True,
        ))
        self._compiled_horizon = wanted

    def _rows_per_call(self, usable: int) -> int:
        return usable  # the package splits them into batches of batch_size itself

    def _predict(self, context: FloatArray, horizon: int,
                 levels: tuple[float, ...]) -> np.ndarray:
        with self._lock:
            self._compile(horizon)
            # The package strips leading NaN and interpolates inner gaps itself.
            _, quantiles = self.model.forecast(horizon=horizon, inputs=list(context))
        # Column 0 is the mean; 1..9 are the deciles.
        return np.asarray(quantiles, dtype=np.float64)[:context.shape[0], :, 1:]
