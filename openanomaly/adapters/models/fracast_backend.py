"""Fracast-0: a compact foundation model whose weights ship inside the ``fracast`` package."""

from __future__ import annotations

import numpy as np

from openanomaly.adapters.models.batched import BatchedQuantileBackend
from openanomaly.adapters.models.settings import FracastSettings
from openanomaly.adapters.models.torch_loading import resolve_device
from openanomaly.domain.errors import ModelError
from openanomaly.domain.series import FloatArray


class FracastBackend(BatchedQuantileBackend):
    # Fracast refuses contexts with fewer finite points than this.
    MIN_OBSERVED = 8

    def __init__(self, name: str, settings: FracastSettings) -> None:
        from fracast import FracastModel  # here: loaded with the first model that uses it

        super().__init__(name, settings.batch_size)
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

    def _predict(self, context: FloatArray, horizon: int,
                 levels: tuple[float, ...]) -> np.ndarray:
        # Each row is normalised and run independently inside the model, so a series'
        # forecast does not depend on which other series share its batch.
        return self.model.forecast_batch(context.astype(np.float32), horizon=horizon)
