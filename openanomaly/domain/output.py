"""The output contract: names and labels of the series this project writes."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from openanomaly.domain.errors import PipelineError
from openanomaly.domain.pipeline import PipelineSpec
from openanomaly.domain.series import FloatArray, IntArray, Series

ANOMALY_SCORE = "anomaly_score"
# The interval score before calibration, kept so later runs can calibrate against it.
RAW_SCORE = "raw_score"
YHAT = "yhat"
# The actual value each score was computed against: dashboards plot it beside the band
# without repeating the pipeline's query.
ACTUAL = "y"
YHAT_LOWER = "yhat_lower"
YHAT_UPPER = "yhat_upper"
FORECAST = "forecast"

# Labels this project sets itself; a source label of the same name is kept as exported_<name>.
OWN_LABELS = ("source_metric", "pipeline", "model", "quantile")


def output_labels(source: Mapping[str, str], spec: PipelineSpec) -> dict[str, str]:
    """Labels of every output series derived from one source series (without __name__)."""
    ours = {"pipeline": spec.name, "model": spec.model, **spec.output.extra_labels}
    if "__name__" in source:
        ours["source_metric"] = source["__name__"]
    reserved = set(OWN_LABELS) | set(ours)
    labels: dict[str, str] = {}
    for name, value in source.items():
        if name == "__name__":
            continue
        key = name
        while key in reserved or key in labels:
            key = f"exported_{key}"
        labels[key] = value
    labels.update(ours)
    return labels


def check_unique(label_sets: list[dict[str, str]], spec: PipelineSpec) -> None:
    """Two source series must never write to the same output series."""
    seen: dict[tuple[tuple[str, str], ...], int] = {}
    for index, labels in enumerate(label_sets):
        key = tuple(sorted(labels.items()))
        if key in seen:
            raise PipelineError(
                f"pipeline {spec.name!r}: source series {seen[key]} and {index} map to the same "
                f"output labels {dict(key)}; make the query return distinct label sets"
            )
        seen[key] = index


def named(prefix: str, metric: str, labels: Mapping[str, str], **more: str) -> dict[str, str]:
    return {"__name__": f"{prefix}{metric}", **labels, **more}


def rows_to_series(
    prefix: str, metric: str, label_sets: list[dict[str, str]], timestamps_ms: IntArray,
    values: FloatArray, **more: str,
) -> list[Series]:
    """One output series per row of ``values`` (n_series, n_steps) on ``timestamps_ms``."""
    return [
        Series(named(prefix, metric, labels, **more), timestamps_ms,
               np.asarray(row, dtype=np.float64))
        for labels, row in zip(label_sets, values, strict=True)
    ]
