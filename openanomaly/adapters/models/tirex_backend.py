"""TiRex (NX-AI's xLSTM forecaster) through the ``tirex-ts`` package.

Its weights are under the NXAI Community License: read it before production use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from openanomaly.adapters.models.settings import ModelSettings
from openanomaly.adapters.models.torch_loading import load_hub_model, resolve_device
from openanomaly.domain.errors import ModelError
from openanomaly.domain.forecast import ForecastRequest, QuantileForecast, interpolate_quantiles

NATIVE_QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
MIN_OBSERVED = 3


class TiRexBackend:
    def __init__(self, name: str, settings: ModelSettings) -> None:
        try:
            import tirex
            from tirex.models.tirex import TiRexZero
        except ImportError as exc:
            raise ModelError(
                f"model {name!r} needs the tirex extra: pip install 'openanomaly[tirex]'"
            ) from exc
        self.name = name
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

        self.model = load_hub_model(name, settings, load, "tirex")
        self.max_context = settings.max_context or 2048

    def forecast(self, request: ForecastRequest) -> QuantileForecast:
        context = request.context[:, -self.max_context:]
        out = np.full((context.shape[0], request.horizon, len(NATIVE_QUANTILES)), np.nan)
        usable = np.flatnonzero(np.isfinite(context).sum(axis=1) >= MIN_OBSERVED)
        if usable.size:
            quantiles, _ = self.model.forecast(
                context[usable].astype(np.float32), prediction_length=request.horizon,
                output_type="numpy", batch_size=self.settings.batch_size)
            out[usable] = np.asarray(quantiles, dtype=np.float64)
        return interpolate_quantiles(NATIVE_QUANTILES, out, request.quantiles, self.name)
