"""Fracast-0: a compact foundation model whose weights ship inside the ``fracast`` package.

The model forecasts a native block of 48 steps. Longer horizons continue from the median
forecast fed back as if observed, as the package itself does; but a block forecast from
that context carries only its own uncertainty, a band as narrow as one step ahead, where
the points beyond the first block are uncertain by the first block's error as well. Here
each continued block's quantiles keep the uncertainty of the block before it: their
distances from the median add in quadrature to those at the end of that block, so bands
widen past the first block instead of pinching to a one-step band.
"""

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
        native = self.model.horizon
        source = context.astype(np.float32)
        block = self.model.forecast_batch(source, horizon=min(horizon, native))
        from_median = np.asarray(levels) - 0.5
        middle = int(np.argmin(np.abs(from_median)))
        # -1 below the median, +1 above: the side of the median each level lies on.
        side = np.sign(from_median)
        blocks = [block]
        produced = block.shape[1]
        while produced < horizon:
            source = np.concatenate([source[:, -self.max_context:],
                                     block[:, :, middle].astype(np.float32)], axis=1)
            ahead = self.model.forecast_batch(source, horizon=min(horizon - produced, native))
            median = ahead[:, :, middle:middle + 1]
            carried = block[:, -1, :] - block[:, -1, middle:middle + 1]
            spread = np.hypot(ahead - median, carried[:, None, :])
            block = median + side * spread
            blocks.append(block)
            produced += block.shape[1]
        return np.concatenate(blocks, axis=1)
