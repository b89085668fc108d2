"""The NAB scorer's self-checks on the real development corpus."""

from pathlib import Path

import numpy as np
import pytest

from openanomaly.adapters.datasets.nab import load_corpus
from openanomaly.domain.nab_scoring import PROFILES, LabelledScores, evaluate

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "data" / "nab-dev"


@pytest.fixture(scope="module")
def corpus():
    if not CORPUS.is_dir():
        pytest.skip(f"NAB development data not found at {CORPUS}")
    return load_corpus(CORPUS)


def test_corpus_loads_with_windows_as_rows(corpus):
    assert len(corpus) == 34
    assert sum(len(f.windows) for f in corpus) == 50  # every labelled window maps to rows
    for one in corpus:
        assert one.values.size == one.timestamps_ms.size > 1000
        for first, last in one.windows:
            assert 0 <= first <= last < one.values.size


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_perfect_and_null_detectors_on_the_real_labels(corpus, profile):
    perfect, null = [], []
    for one in corpus:
        scores = np.zeros(one.values.size)
        for first, _ in one.windows:
            scores[first] = 1.0
        perfect.append(LabelledScores(one.name, scores, one.windows))
        null.append(LabelledScores(one.name, np.zeros(one.values.size), one.windows))
    assert evaluate(perfect, profile).normalised == pytest.approx(100.0)
    assert evaluate(null, profile).normalised == pytest.approx(0.0)
