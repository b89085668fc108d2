"""TiRex (NX-AI's xLSTM forecaster) through the ``tirex-ts`` package.

Its weights are under the NXAI Community License: read it before production use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from openanomaly.adapters.models.batched import BatchedQuantileBackend
from openanomaly.adapters.models.settings import TiRexSettings
from openanomaly.adapters.models.torch_loading import load_hub_model, resolve_device
from openanomaly.domain.series import FloatArray

NATIVE_QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


class TiRexBackend(BatchedQuantileBackend):
    MIN_OBSERVED = 3

    def __init__(self, name: str, settings: TiRexSettings) -> None:
        import tirex  # here: loaded with the first model that uses it
        from tirex.models.tirex import TiRexZero

        super().__init__(name, settings.batch_size)
        self.settings = settings
        device = resolve_device(settings.device)

        def load(source: str) -> Any:
            local = Path(source)
            if local.exists():
                # The package's load_model() only takes hub ids; a local checkpoint goes
                # straight to the model class's own from_pretrained.
                checkpoint = local / "model.ckpt" if local.is_dir() else local
                return TiRexZero.from_pretrained(str(checkpoint), backend="torch", device=device)
            return tirex.load_model(source, device=device, backend="torch")

        self.model = load_hub_model(name, settings.source, load)
        self.max_context = settings.max_context or 2048
        self.native_quantiles = NATIVE_QUANTILES

    def _rows_per_call(self, usable: int) -> int:
        return usable  # the package splits them into batches of batch_size itself

    def _predict(self, context: FloatArray, horizon: int,
                 levels: tuple[float, ...]) -> np.ndarray:
        quantiles, _ = self.model.forecast(
            context.astype(np.float32), prediction_length=horizon, output_type="numpy",
            batch_size=self.batch_size)
        return np.asarray(quantiles, dtype=np.float64)
