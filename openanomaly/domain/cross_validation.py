"""Leave-one-folder-out cross-validation of NAB scores.

A threshold or a configuration chosen on the files it is then scored on looks better than
it will on new data. Here every choice is made on all folders but one and scored on the
one left out; the held-out raw scores of all folders are summed and normalised over all
windows, so the figure reads like NAB's own and can sit beside the in-sample one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from openanomaly.domain.nab_scoring import LabelledScores, Profile, evaluate, normalise


def folder_of(name: str) -> str:
    """A NAB file's folder: the first part of its path under data/."""
    return name.split("/", 1)[0] if "/" in name else ""


@dataclass(frozen=True)
class HeldOut:
    score: float
    """Normalised NAB score of the held-out folders, summed over all folds."""
    picks: tuple[tuple[str, str, float], ...]
    """Per fold: (held-out folder, the configuration chosen without it, its threshold)."""


def _split(files: Sequence[LabelledScores], folder: str,
           ) -> tuple[list[LabelledScores], list[LabelledScores]]:
    train = [f for f in files if folder_of(f.name) != folder]
    test = [f for f in files if folder_of(f.name) == folder]
    return train, test


def cross_validate(candidates: Mapping[str, Sequence[LabelledScores]], profile: Profile,
                   threshold: float | None = None) -> HeldOut:
    """For each folder: choose the candidate (and, when ``threshold`` is None, NAB's tuned
    threshold) with the best score on the other folders, then score it on that folder.

    ``candidates`` maps a configuration's name to its scores on the same files, in the same
    order. With one candidate and a fixed threshold this is the in-sample score.
    """
    names = list(candidates)
    if not names:
        raise ValueError("no candidates to cross-validate")
    reference = candidates[names[0]]
    folders = sorted({folder_of(f.name) for f in reference})
    raw = 0.0
    picks = []
    for folder in folders:
        best: tuple[float, str, float] | None = None
        for name in names:
            train, _ = _split(candidates[name], folder)
            if not train:  # one folder only: nothing to learn from
                continue
            result = evaluate(train, profile, threshold)
            if best is None or result.normalised > best[0]:
                best = (result.normalised, name, result.threshold)
        if best is None:
            best = (0.0, names[0], threshold if threshold is not None else float("inf"))
        _, chosen, chosen_threshold = best
        _, test = _split(candidates[chosen], folder)
        raw += evaluate(test, profile, chosen_threshold).raw
        picks.append((folder, chosen, chosen_threshold))
    windows = sum(len(f.windows) for f in reference)
    return HeldOut(normalise(raw, windows, profile), tuple(picks))
