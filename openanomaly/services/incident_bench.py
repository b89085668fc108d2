"""The incident suite through the NAB replay: every case scored by the production scoring,
then judged as an operator would judge its alerts (domain/incident_scoring.py)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from openanomaly.domain.incident_scoring import (
    CaseOutcome,
    ClassSummary,
    Headline,
    headline,
    score_case,
    summarise,
)
from openanomaly.domain.incidents import CLASSES, CONTROL, GRADUAL, Case
from openanomaly.services.nab_replay import Replayed, ReplayInput

# Alarms this long after a window still belong to its incident: a forecast made before
# the incident needs a block or two to catch up with it.
TOLERANCE_S = 3600.0

Replay = Callable[[list[ReplayInput]], list[Replayed]]


def replay_inputs(cases: Sequence[Case]) -> list[ReplayInput]:
    return [ReplayInput(str(c.name), c.values, c.windows, float(c.name.step_seconds))
            for c in cases]


def tolerance_rows(step_seconds: float, tolerance_s: float = TOLERANCE_S) -> int:
    return math.ceil(tolerance_s / step_seconds)


@dataclass(frozen=True)
class SuiteResult:
    outcomes: list[CaseOutcome]
    rows: list[ClassSummary]
    by_step: dict[int, list[ClassSummary]]
    headline: Headline


def assess(cases: Sequence[Case], replayed: Sequence[Replayed], threshold: float,
           tolerance_s: float = TOLERANCE_S) -> SuiteResult:
    """Judge each case's replayed scores and summarise per class, overall and per step."""
    if len(cases) != len(replayed):
        raise ValueError(f"{len(cases)} cases but {len(replayed)} replays")
    outcomes = []
    for case, result in zip(cases, replayed, strict=True):
        step = float(case.name.step_seconds)
        outcomes.append(score_case(
            str(case.name), case.name.kind, result.labelled.scores, case.windows, step,
            threshold, tolerance_rows(step, tolerance_s), case.name.kind in GRADUAL))
    rows = summarise(outcomes, CLASSES, CONTROL)
    steps = sorted({c.name.step_seconds for c in cases})
    by_step = {step: summarise([o for o in outcomes if o.step_seconds == step], CLASSES,
                               CONTROL) for step in steps}
    return SuiteResult(outcomes, rows, by_step, headline(rows, CONTROL))


def run_suite(cases: Sequence[Case], replay: Replay, threshold: float,
              tolerance_s: float = TOLERANCE_S) -> SuiteResult:
    """Replay every case (``replay`` runs them through the model, in processes or not)
    and assess the scores."""
    return assess(cases, replay(replay_inputs(cases)), threshold, tolerance_s)
