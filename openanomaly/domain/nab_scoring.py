"""The Numenta Anomaly Benchmark's scoring, written from its published description.

Alarms inside a labelled window earn up to ``tp`` (earlier is worth more, only the first
alarm of a window counts); a window without an alarm costs ``fn``; an alarm outside every
window costs up to ``fp``, less when it follows a window closely. One threshold per
profile is tuned over all files, and the sum is normalised between a detector that never
alarms (0) and one that alarms at each window's first row (100).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Profile:
    name: str
    tp: float
    fn: float
    fp: float


PROFILES = (
    Profile("standard", 1.0, 1.0, 0.11),
    Profile("reward_low_FP_rate", 1.0, 1.0, 0.22),
    Profile("reward_low_FN_rate", 1.0, 2.0, 0.11),
)


@dataclass(frozen=True)
class LabelledScores:
    """One file: a score per row and its windows as inclusive (first row, last row)."""

    name: str
    scores: npt.NDArray[np.float64]
    windows: tuple[tuple[int, int], ...]

    @property
    def probation(self) -> int:
        return probation_rows(self.scores.size)


@dataclass(frozen=True)
class FileOutcome:
    name: str
    raw: float
    hits: int
    misses: int
    false_alarms: int


@dataclass(frozen=True)
class ProfileResult:
    profile: str
    threshold: float
    raw: float
    normalised: float
    files: tuple[FileOutcome, ...]


def probation_rows(rows: int) -> int:
    return min(math.floor(0.15 * rows), 750)


def first_scored_row(rows: int) -> int:
    """After NAB's probation, and never before the model has a few rows of context."""
    return max(probation_rows(rows), 8)


def scaled_sigmoid(x: float) -> float:
    if x > 3:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * x)) - 1.0


def _row_values(
    labelled: LabelledScores, profile: Profile
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """For every row: the index of the window holding it (-1 outside all), and what an
    alarm there is worth (the tp credit inside a window, the fp cost outside)."""
    return _row_table(labelled.scores.size, labelled.windows, profile)


@functools.lru_cache(maxsize=1024)
def _row_table(
    rows: int, windows: tuple[tuple[int, int], ...], profile: Profile
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    # Depends on the file's shape and labels only, not its scores: built once per file and
    # profile, however many thresholds and configurations are scored against it.
    window_of = np.full(rows, -1, dtype=np.int64)
    value = np.zeros(rows)
    top = scaled_sigmoid(-1.0)
    previous_end: int | None = None
    previous_width = 0
    ends = sorted(enumerate(windows), key=lambda item: item[1][0])
    cursor = 0
    for row in range(rows):
        while cursor < len(ends) and ends[cursor][1][1] < row:
            previous_end = ends[cursor][1][1]
            previous_width = ends[cursor][1][1] - ends[cursor][1][0] + 1
            cursor += 1
        if cursor < len(ends) and ends[cursor][1][0] <= row <= ends[cursor][1][1]:
            index, (first, last) = ends[cursor]
            width = last - first + 1
            window_of[row] = index
            value[row] = profile.tp * scaled_sigmoid(-(last - row + 1) / width) / top
        elif previous_end is None:
            value[row] = -profile.fp
        else:
            spread = max(previous_width - 1, 1)
            value[row] = profile.fp * scaled_sigmoid(abs(row - previous_end) / spread)
    window_of.setflags(write=False)
    value.setflags(write=False)
    return window_of, value


def score_file(labelled: LabelledScores, threshold: float, profile: Profile) -> FileOutcome:
    window_of, value = _row_values(labelled, profile)
    start = labelled.probation
    alarms = np.flatnonzero(labelled.scores[start:] >= threshold) + start
    raw = 0.0
    hit: set[int] = set()
    false_alarms = 0
    for row in alarms:
        window = int(window_of[row])
        if window < 0:
            raw += float(value[row])
            false_alarms += 1
        elif window not in hit:
            hit.add(window)
            raw += float(value[row])
    misses = len(labelled.windows) - len(hit)
    raw -= profile.fn * misses
    return FileOutcome(labelled.name, raw, len(hit), misses, false_alarms)


def best_threshold(files: Sequence[LabelledScores], profile: Profile) -> tuple[float, float]:
    """The threshold that maximises the summed raw score, by one sweep over all scored rows
    from the highest score down (alarms switch on one by one; only a window's earliest
    alarm counts). Returns (threshold, raw score); inf means never alarm."""
    total = -profile.fn * sum(len(f.windows) for f in files)
    scores, rows_value, windows = [], [], []
    offset = 0
    for labelled in files:
        window_of, value = _row_values(labelled, profile)
        start = labelled.probation
        scores.append(labelled.scores[start:])
        rows_value.append(value[start:])
        windows.append(np.where(window_of[start:] >= 0, window_of[start:] + offset, -1))
        offset += len(labelled.windows)
    all_scores = np.concatenate(scores) if scores else np.zeros(0)
    all_values = np.concatenate(rows_value) if rows_value else np.zeros(0)
    all_windows = np.concatenate(windows) if windows else np.zeros(0, dtype=np.int64)
    # Within a file rows keep their order, so the row position decides which alarm of a
    # window is earliest.
    positions = np.concatenate([np.arange(s.size) for s in scores]) if scores else np.zeros(0)
    finite = np.isfinite(all_scores)
    order = np.argsort(-np.where(finite, all_scores, -np.inf), kind="stable")
    earliest: dict[int, tuple[int, float]] = {}
    best = (math.inf, total)
    index = 0
    while index < order.size and finite[order[index]]:
        level = all_scores[order[index]]
        while index < order.size and finite[order[index]] and all_scores[order[index]] == level:
            row = order[index]
            window = int(all_windows[row])
            if window < 0:
                total += float(all_values[row])
            else:
                current = earliest.get(window)
                if current is None:
                    total += profile.fn + float(all_values[row])
                    earliest[window] = (int(positions[row]), float(all_values[row]))
                elif positions[row] < current[0]:
                    total += float(all_values[row]) - current[1]
                    earliest[window] = (int(positions[row]), float(all_values[row]))
            index += 1
        if total > best[1]:
            best = (float(level), total)
    return best


def normalise(raw: float, windows: int, profile: Profile) -> float:
    null, perfect = -profile.fn * windows, profile.tp * windows
    return 100.0 * (raw - null) / (perfect - null) if perfect != null else 0.0


def evaluate(files: Sequence[LabelledScores], profile: Profile,
             threshold: float | None = None) -> ProfileResult:
    """NAB's score for one profile: tuned threshold unless one is given (the deployable
    operating point uses the production alert threshold)."""
    if threshold is None:
        threshold, _ = best_threshold(files, profile)
    outcomes = tuple(score_file(f, threshold, profile) for f in files)
    raw = sum(o.raw for o in outcomes)
    windows = sum(len(f.windows) for f in files)
    return ProfileResult(profile.name, threshold, raw, normalise(raw, windows, profile),
                         outcomes)
