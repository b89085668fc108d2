"""Replay labelled series causally through the production scoring, for the NAB benchmark.

Each file is cut into blocks of ``horizon`` rows after its probation period; every block is
forecast from at most ``context`` rows before it (never from the rows it is judged on) and
scored with the pipeline's domain scoring, exactly as a scheduled anomaly check would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from openanomaly.domain.forecast import ForecastRequest
from openanomaly.domain.nab_scoring import LabelledScores, probation_rows
from openanomaly.domain.pipeline import ScoringSpec
from openanomaly.domain.scoring import band_quantiles, noise_level, score
from openanomaly.domain.series import FloatArray
from openanomaly.ports import ModelEngine


@dataclass(frozen=True)
class ReplayInput:
    name: str
    values: FloatArray
    windows: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Replayed:
    labelled: LabelledScores
    median: FloatArray  # the median forecast of each scored row (NaN elsewhere)


def replay_file(
    item: ReplayInput, scoring: ScoringSpec, engine: ModelEngine, model: str,
    horizon: int, context: int, step_seconds: float = 300.0,
) -> Replayed:
    values = item.values
    rows = values.size
    start = max(probation_rows(rows), 8)
    origins = list(range(start, rows, horizon))
    contexts = np.full((len(origins), context), np.nan)
    actuals = np.full((len(origins), horizon), np.nan)
    for index, origin in enumerate(origins):
        past = values[max(0, origin - context):origin]
        contexts[index, context - past.size:] = past
        ahead = values[origin:origin + horizon]
        actuals[index, :ahead.size] = ahead
    forecast = engine.forecast(model, ForecastRequest(
        contexts, horizon, band_quantiles(scoring), step_seconds))
    scored = score(scoring, actuals, forecast, noise_level(contexts))
    scores = np.full(rows, np.nan)
    median = np.full(rows, np.nan)
    flat_scores = scored.score.reshape(-1)[:rows - start]
    scores[start:] = flat_scores
    median[start:] = scored.yhat.reshape(-1)[:rows - start]
    return Replayed(LabelledScores(item.name, scores, item.windows), median)


def replay(
    items: Sequence[ReplayInput], scoring: ScoringSpec, engine: ModelEngine, model: str,
    horizon: int = 48, context: int = 2048,
    progress: Callable[[int, int], None] | None = None,
) -> list[Replayed]:
    out = []
    for index, item in enumerate(items):
        out.append(replay_file(item, scoring, engine, model, horizon, context))
        if progress:
            progress(index + 1, len(items))
    return out
