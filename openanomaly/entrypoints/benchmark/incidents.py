"""`openanomaly benchmark incidents`: a labelled synthetic suite of operator incidents,
replayed through the same production scoring as the NAB benchmark, reported per class."""

from __future__ import annotations

import contextlib
import json
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from openanomaly.config import ModelSettings
from openanomaly.domain.incident_scoring import FA_PER_DAY_GOAL, QUICK_STEPS, ClassSummary
from openanomaly.domain.incidents import CASES_PER_CLASS, CONTROL, Case
from openanomaly.entrypoints.benchmark.nab import (
    Configuration,
    blocks_text,
    replay_corpus,
    run_time_text,
)
from openanomaly.services.incident_bench import TOLERANCE_S, SuiteResult, run_suite
from openanomaly.services.nab_replay import Replayed, ReplayInput


@dataclass(frozen=True)
class Measured:
    configuration: Configuration
    threshold: float
    result: SuiteResult
    seconds: float


@dataclass(frozen=True)
class SuiteOptions:
    seeds: list[int]
    steps: list[int]
    horizon: int | None
    context: int
    jobs: int
    threshold: float | None
    """None: each configuration's own ``scoring.threshold``."""


def run_incidents(
    cases: list[Case], configurations: Sequence[Configuration],
    models: dict[str, ModelSettings], options: SuiteOptions, cache: Path | None,
    echo: Callable[[str], None],
) -> list[Measured]:
    """Replay the suite for each configuration and print its table as it completes."""
    measured = []
    with contextlib.ExitStack() as stack:
        folder = cache
        if folder is None and len(configurations) > 1:
            # Configurations that share a model share its forecasts.
            folder = Path(stack.enter_context(
                tempfile.TemporaryDirectory(prefix="openanomaly-forecasts-")))
        for configuration in configurations:
            threshold = (options.threshold if options.threshold is not None
                         else configuration.scoring.threshold)

            def replay(items: list[ReplayInput], c: Configuration = configuration,
                       ) -> list[Replayed]:
                return replay_corpus(items, models, c.scoring, c.model, options.horizon,
                                     options.context, options.jobs, folder)

            began = time.perf_counter()
            result = run_suite(cases, replay, threshold)
            seconds = time.perf_counter() - began
            measured.append(Measured(configuration, threshold, result, seconds))
            echo(f"\n{configuration.name} (model {configuration.model}, alarm: score > "
                 f"{threshold:g}), {len(cases)} cases in {seconds:.0f} s")
            for line in table(result.rows):
                echo(line)
            echo(result.headline.text())
    return measured


# --- the table ---------------------------------------------------------------------------

HEADER = ("class", "cases", "found", f"≤{QUICK_STEPS} steps", "median delay", "max delay",
          "FA/series-day", "goal")


def _delay(steps: float, minutes: float) -> str:
    if math.isnan(steps):
        return "-"
    return f"{steps:g} ({minutes:g} min)"


def _cells(row: ClassSummary) -> tuple[str, ...]:
    fa = "-" if math.isnan(row.fa_per_day) else f"{row.fa_per_day:.2f}"
    if not row.labelled:
        goal = "met" if row.meets_goal else "missed"
        name = "controls" if row.kind == CONTROL else row.kind
        return (name, str(row.cases), "-", "-", "-", "-", fa, goal)
    if row.kind == "all":
        goal = ""
    elif row.meets_goal:
        goal = "met"
    else:
        goal = f"missed ({row.in_time}/{row.cases} in time)"
    return (row.kind, str(row.cases), str(row.found), str(row.quick),
            _delay(row.median_delay, row.median_delay_minutes),
            _delay(row.max_delay, row.max_delay_minutes), fa, goal)


def table(rows: Sequence[ClassSummary]) -> list[str]:
    """A Markdown table, padded so that it also reads well on a terminal."""
    body = [HEADER, *(_cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in body) for i in range(len(HEADER))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return [line(HEADER), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
            *(line(cells) for cells in body[1:])]


# --- JSON and the page ---------------------------------------------------------------------

def _finite(value: Any) -> Any:
    """JSON has no NaN: a missing figure is null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _summary_json(row: ClassSummary) -> dict[str, Any]:
    return {**asdict(row), "fa_per_day": row.fa_per_day, "meets_goal": row.meets_goal}


def write_json(path: Path, measured: Sequence[Measured], cases: int, options: SuiteOptions,
               command: str, seconds: float) -> None:
    document = {
        "command": command, "cases": cases, "seeds": options.seeds, "steps": options.steps,
        "horizon": options.horizon, "context": options.context, "jobs": options.jobs,
        "tolerance_s": TOLERANCE_S, "quick_steps": QUICK_STEPS,
        "fa_per_day_goal": FA_PER_DAY_GOAL, "seconds": seconds,
        "configurations": [{
            "name": m.configuration.name, "model": m.configuration.model,
            "scoring": m.configuration.scoring.model_dump(mode="json"),
            "threshold": m.threshold, "seconds": m.seconds,
            "headline": {**asdict(m.result.headline), "all_met": m.result.headline.all_met,
                         "text": m.result.headline.text()},
            "classes": [_summary_json(r) for r in m.result.rows],
            "by_step": {str(step): [_summary_json(r) for r in rows]
                        for step, rows in m.result.by_step.items()},
            "cases": [{**asdict(o), "delay_minutes": o.delay_minutes}
                      for o in m.result.outcomes],
        } for m in measured],
    }
    path.write_text(json.dumps(_finite(document), indent=2) + "\n")


def _scoring_text(configuration: Configuration) -> str:
    changed = configuration.scoring.model_dump(mode="json", exclude_defaults=True)
    if not changed:
        return "the pipeline's default scoring"
    return f"scoring options `{json.dumps(changed, sort_keys=True)}` (the rest default)"


def markdown(measured: Sequence[Measured], cases: int, options: SuiteOptions, command: str,
             seconds: float, sections: bool, cached: bool = False) -> str:
    """The results page; ``sections``: one titled section per configuration."""
    steps = ", ".join(f"{s} s" for s in options.steps)
    seeds = ", ".join(str(s) for s in options.seeds)
    lines = [
        "# Detection of operator incidents",
        "",
        "<!-- Generated by the command below; do not edit by hand. -->",
        "",
        "Reproduce with:",
        "",
        f"`{command}`",
        "",
        f"{cases} synthetic series of infrastructure metrics (request rates, open "
        "connections, bursty counts, latencies, a CPU gauge, a garbage-collected heap, a "
        "queue depth), each "
        f"with one labelled incident or none (controls): {CASES_PER_CLASS} cases per class "
        f"on different shapes and noise levels, at steps of {steps}, seed(s) {seeds}. Each "
        "series is replayed causally through the production scoring, as `benchmark nab` "
        f"replays NAB: every block of {blocks_text(options.horizon)} is forecast from at most "
        f"the {options.context} rows before it and scored with the pipeline's options, "
        "calibrated one 5-minute check window at a time, as a pipeline on the default "
        "schedule is.",
        "",
        "- **found**: a row of the incident's window, or of the "
        f"{TOLERANCE_S / 60:g} minutes after it, scores above the alarm threshold.",
        f"- **≤{QUICK_STEPS} steps**, **delay**: steps (and minutes) from the incident's "
        "first row to its first alarm, over the incidents found.",
        "- **FA/series-day**: alarm events (a run of rows above the threshold is one "
        "event, as it is one firing alert) that start outside the windows and their "
        "tolerance, per day of scored series.",
        f"- **goal**: every case of a class alarmed within {QUICK_STEPS} steps (a drift: "
        f"before its ramp ends); controls at most {FA_PER_DAY_GOAL:g} false alarms per "
        "series-day.",
        "",
    ]
    for m in measured:
        if sections:
            lines += [f"## {m.configuration.name}", ""]
        lines += [
            f"Model `{m.configuration.model}`, alarm at `anomaly_score > {m.threshold:g}`, "
            f"{_scoring_text(m.configuration)}; replayed in {m.seconds:.0f} s.",
            "",
            f"**{m.result.headline.text()}**",
            "",
            *table(m.result.rows),
            "",
        ]
        if len(m.result.by_step) > 1:
            for step, rows in m.result.by_step.items():
                lines += [f"At a step of {step} s:", "", *table(rows), ""]
    lines += [run_time_text(seconds, options.jobs, cached), ""]
    return "\n".join(lines)
