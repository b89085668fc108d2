"""Series as they cross the TSDB port, and batches of series aligned on a step grid."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Series:
    """One labelled series: timestamps in ms (ascending) and float values (NaN allowed)."""

    labels: Mapping[str, str]
    timestamps_ms: IntArray
    values: FloatArray

    def __post_init__(self) -> None:
        if self.timestamps_ms.shape != self.values.shape or self.values.ndim != 1:
            raise ValueError(
                f"timestamps and values must be 1-D of equal length, got "
                f"{self.timestamps_ms.shape} and {self.values.shape}"
            )

    @property
    def name(self) -> str:
        return self.labels.get("__name__", "")

    def where(self, keep: npt.NDArray[np.bool_]) -> Series:
        """The samples where ``keep`` is true."""
        return Series(self.labels, self.timestamps_ms[keep], self.values[keep])

    @classmethod
    def of(
        cls, labels: Mapping[str, str], timestamps_ms: Sequence[int] | IntArray,
        values: Sequence[float] | FloatArray,
    ) -> Series:
        return cls(
            dict(labels),
            np.asarray(timestamps_ms, dtype=np.int64),
            np.asarray(values, dtype=np.float64),
        )


@dataclass(frozen=True)
class SeriesBatch:
    """Series on one regular grid: ``values[i, j]`` is series ``i`` at ``timestamps_ms[j]``,
    NaN where the series had no sample at that step (a gap, never a zero)."""

    labels: list[dict[str, str]]
    timestamps_ms: IntArray
    values: FloatArray = field(repr=False)

    @property
    def n_series(self) -> int:
        return len(self.labels)


def grid(start_ms: int, end_ms: int, step_ms: int) -> IntArray:
    """The timestamps start, start+step, ... up to and including end."""
    count = (end_ms - start_ms) // step_ms + 1
    return start_ms + step_ms * np.arange(max(count, 0), dtype=np.int64)


def align(series: Sequence[Series], start_ms: int, end_ms: int, step_ms: int) -> SeriesBatch:
    """Place series on the grid [start, end] by step; samples off the grid are ignored and
    steps with no sample become NaN."""
    timestamps = grid(start_ms, end_ms, step_ms)
    values = np.full((len(series), timestamps.size), np.nan)
    for row, one in enumerate(series):
        offset = one.timestamps_ms - start_ms
        on_grid = (offset % step_ms == 0) & (offset >= 0) & (one.timestamps_ms <= end_ms)
        values[row, offset[on_grid] // step_ms] = one.values[on_grid]
    return SeriesBatch([dict(s.labels) for s in series], timestamps, values)
