"""Leave-one-folder-out cross-validation of NAB scores."""

import numpy as np
import pytest

from openanomaly.domain.cross_validation import cross_validate, folder_of
from openanomaly.domain.nab_scoring import PROFILES, LabelledScores, evaluate

STANDARD = PROFILES[0]
WINDOW = ((150, 159),)


def file_with(name, level_in_window, level_elsewhere=0.0, n=200):
    """A file whose window scores ``level_in_window`` and whose other rows score
    ``level_elsewhere`` (after the probation rows)."""
    scores = np.full(n, level_elsewhere)
    scores[150:160] = level_in_window
    return LabelledScores(name, scores, WINDOW)


def test_folder_is_the_first_part_of_the_path():
    assert folder_of("realAWSCloudwatch/ec2.csv") == "realAWSCloudwatch"
    assert folder_of("flat.csv") == ""


def test_one_candidate_at_a_fixed_threshold_scores_as_in_sample():
    files = [file_with("a/1.csv", 2.0), file_with("b/1.csv", 0.5), file_with("c/1.csv", 3.0)]
    held_out = cross_validate({"only": files}, STANDARD, threshold=1.0)
    assert held_out.score == pytest.approx(evaluate(files, STANDARD, 1.0).normalised)
    assert [pick[0] for pick in held_out.picks] == ["a", "b", "c"]


def test_a_threshold_tuned_on_other_folders_can_miss_on_the_held_out_one():
    # Folders a and b put their windows at 5 over a background of 1; folder c's window
    # scores 1.5. In sample, one threshold at 1.5 catches all three without a false alarm;
    # tuned on a and b alone, the highest threshold that catches theirs (5) misses c's.
    files = [file_with("a/1.csv", 5.0, 1.0), file_with("b/1.csv", 5.0, 1.0),
             file_with("c/1.csv", 1.5, 0.0)]
    in_sample = evaluate(files, STANDARD)
    held_out = cross_validate({"only": files}, STANDARD)
    assert held_out.score < in_sample.normalised
    (_, _, threshold_for_c), = [p for p in held_out.picks if p[0] == "c"]
    assert threshold_for_c > 1.5


def test_the_configuration_is_chosen_without_the_held_out_folder():
    # "steady" catches every window; "lucky" misses a and b but is perfect on c: chosen
    # on a and b, "steady" is picked for c too.
    steady = [file_with("a/1.csv", 2.0), file_with("b/1.csv", 2.0), file_with("c/1.csv", 2.0)]
    lucky = [file_with("a/1.csv", 0.1), file_with("b/1.csv", 0.1), file_with("c/1.csv", 9.0)]
    held_out = cross_validate({"steady": steady, "lucky": lucky}, STANDARD, threshold=1.0)
    assert {pick[1] for pick in held_out.picks} == {"steady"}
    assert held_out.score == pytest.approx(evaluate(steady, STANDARD, 1.0).normalised)


def test_no_candidates_is_an_error():
    with pytest.raises(ValueError, match="no candidates"):
        cross_validate({}, STANDARD)
