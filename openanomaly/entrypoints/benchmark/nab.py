"""`openanomaly benchmark nab`: the NAB score of a pipeline's scoring, at NAB's tuned
threshold and at the production alert threshold."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from openanomaly.bootstrap import nab_corpus, replay_engine
from openanomaly.config import ModelSettings, parse_model_settings
from openanomaly.domain.cross_validation import HeldOut, cross_validate
from openanomaly.domain.errors import ConfigError
from openanomaly.domain.nab_scoring import PROFILES, LabelledScores, ProfileResult, evaluate
from openanomaly.domain.pipeline import ScoringSpec
from openanomaly.entrypoints.progress import Progress
from openanomaly.ports import ModelEngine
from openanomaly.services.nab_replay import (
    BASELINE,
    Accuracy,
    Replayed,
    ReplayInput,
    block_rows,
    grid_positions,
    replay,
    replay_file,
    window_rows,
)
from openanomaly.yaml_safety import load_yaml


def load_scoring(path: Path | None) -> ScoringSpec:
    """``scoring:`` options of a pipeline, from a YAML file (defaults when none)."""
    if path is None:
        return ScoringSpec()
    try:
        raw = load_yaml(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read pipeline options: {exc}") from None
    try:
        return ScoringSpec.model_validate(raw.get("scoring", raw))
    except ValueError as exc:
        raise ConfigError(f"{path}: invalid scoring options: {exc}") from None


_engine: ModelEngine | None = None


def _start_worker(models: dict[str, ModelSettings], cache: Path | None, threads: int) -> None:
    global _engine
    _share_cores(threads)
    _engine = replay_engine(models, cache)


def _share_cores(threads: int) -> None:
    """Each of several worker processes computes on its share of the cores: a model
    library that takes them all in every process runs slower than one process alone."""
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(threads)


def _replay_one(item: ReplayInput, scoring: ScoringSpec, model: str,
                horizon: int | None, context: int) -> Replayed:
    assert _engine is not None, "_start_worker runs first in every worker process"
    return replay_file(item, scoring, _engine, model, horizon, context)


def replay_corpus(items: list[ReplayInput], models: dict[str, ModelSettings],
                  scoring: ScoringSpec, model: str, horizon: int | None, context: int,
                  jobs: int, cache: Path | None = None) -> list[Replayed]:
    """Replay every file, in ``jobs`` processes (each loads the model once)."""
    with Progress("replay", "file", total=len(items)) as progress:
        if jobs <= 1:
            return replay(items, scoring, replay_engine(models, cache), model, horizon,
                          context, progress=progress.update_to)
        done: dict[int, Replayed] = {}
        threads = max(1, (os.cpu_count() or 1) // jobs)
        with ProcessPoolExecutor(jobs, initializer=_start_worker,
                                 initargs=(models, cache, threads)) as pool:
            futures = {pool.submit(_replay_one, item, scoring, model, horizon, context): i
                       for i, item in enumerate(items)}
            for future in as_completed(futures):
                done[futures[future]] = future.result()
                progress.advance()
        return [done[i] for i in range(len(items))]


def run_nab(
    data: Path, model: str, models: dict[str, ModelSettings], scoring: ScoringSpec,
    horizon: int | None, context: int, out: Path | None, echo: Callable[[str], None],
    jobs: int = 1, cache: Path | None = None,
) -> list[ProfileResult]:
    items = corpus_items(data)
    started = time.perf_counter()
    replayed = replay_corpus(items, models, scoring, model, horizon, context, jobs, cache)
    seconds = time.perf_counter() - started
    files = [r.labelled for r in replayed]
    results = []
    held_out = {}
    echo(f"{'profile':<20} {'NAB (tuned)':>12} {'threshold':>10} {'held out':>9} "
         f"{'deployable':>11} {'(score > ' + format(scoring.threshold, 'g') + ')':>12}")
    for profile in PROFILES:
        tuned = evaluate(files, profile)
        deployable = evaluate(files, profile, threshold=scoring.threshold)
        held_out[profile.name] = cross_validate({model: files}, profile).score
        results += [tuned, deployable]
        echo(f"{profile.name:<20} {tuned.normalised:>12.1f} {tuned.threshold:>10.3g} "
             f"{held_out[profile.name]:>9.1f} {deployable.normalised:>11.1f}")
    echo("(held out: the threshold tuned on all folders but one, scored on that one)")
    accuracy = summarise_accuracy([r.accuracy for r in replayed])
    echo(f"\nforecast accuracy against {BASELINE} (geometric mean over files, < 1 is better):"
         f" MASE ratio {accuracy['relative_mae']:.3f}, quantile loss ratio "
         f"{accuracy['relative_quantile_loss']:.3f}")
    standard, deployable = results[0], results[1]
    echo("\nper file (standard profile): hits / misses / false alarms, tuned | deployable;"
         " MASE and quantile loss ratios")
    for tuned_file, deploy_file, file_result in zip(standard.files, deployable.files,
                                                     replayed, strict=True):
        echo(f"  {tuned_file.name:<58} {tuned_file.hits:>2} / {tuned_file.misses:>2} / "
             f"{tuned_file.false_alarms:>4}  |  {deploy_file.hits:>2} / {deploy_file.misses:>2}"
             f" / {deploy_file.false_alarms:>5}   {file_result.accuracy.relative_mae:6.3f} "
             f"{file_result.accuracy.relative_quantile_loss:6.3f}")
    echo(f"\nreplayed {len(items)} files with {model} in {seconds:.0f}s ({jobs} job(s))")
    if out is not None:
        out.write_text(json.dumps({
            "model": model, "scoring": scoring.model_dump(mode="json"), "horizon": horizon,
            "context": context, "seconds": seconds, "jobs": jobs, "accuracy": accuracy,
            "held_out": held_out,
            "results": [{"profile": r.profile, "threshold": r.threshold, "score": r.normalised,
                         "files": [vars(f) for f in r.files]} for r in results],
        }, indent=2, default=str))
    return results


def blocks_text(horizon: int | None) -> str:
    """The replay's blocks, for a results page."""
    if horizon is not None:
        return f"{horizon} rows"
    default = ScoringSpec().forecast_block
    return ("rows that a pipeline on the default 5-minute schedule scores against one "
            f"forecast (the configuration's `forecast_block`, {default} unless set, rounded "
            "up to whole check windows: "
            f"{block_rows(ScoringSpec(), window_rows(60.0))} rows at steps of 60 s)")


def run_time_text(seconds: float, jobs: int, cached: bool) -> str:
    """The closing line of a results page: how long it took, and on what."""
    text = (f"Run time {seconds / 60:.1f} min in all, {jobs} job(s), on {platform.machine()} "
            f"with {os.cpu_count()} CPUs ({platform.processor() or platform.platform()}), "
            f"Python {platform.python_version()}.")
    if cached:
        # Forecasts a cache already held cost nothing: the times then measure scoring.
        text += (" Forecasts were read from a `--forecast-cache` where earlier runs had "
                 "left them, so those configurations' times are mostly scoring.")
    return text


def corpus_items(data: Path) -> list[ReplayInput]:
    """The NAB files of ``data``, each with its step and its rows' places on the grid."""
    items = []
    for f in nab_corpus(data):
        step = step_seconds(f.timestamps_ms)
        items.append(ReplayInput(f.name, f.values, f.windows, step,
                                 grid_positions(f.timestamps_ms, step * 1000)))
    return items


def step_seconds(timestamps_ms: np.ndarray) -> float:
    """The file's usual step: the median gap between rows (gaps and repeats aside)."""
    gaps = np.diff(timestamps_ms)
    gaps = gaps[gaps > 0]
    return float(np.median(gaps)) / 1000 if gaps.size else 300.0


def summarise_accuracy(items: list[Accuracy]) -> dict[str, float]:
    """Geometric means of the per-file ratios: one file's scale does not dominate."""
    summary = {}
    for key in ("relative_mae", "relative_quantile_loss"):
        ratios = np.array([getattr(a, key) for a in items])
        ratios = ratios[np.isfinite(ratios) & (ratios > 0)]
        summary[key] = float(np.exp(np.mean(np.log(ratios)))) if ratios.size else float("nan")
    return summary


# --- docs/benchmarks.md --------------------------------------------------------------------

PUBLISHED = (  # from the data folder's README: NAB's per-file results on the same 34 files
    ("Numenta HTM", 73.6, 66.2, 77.0),
    ("CAD OSE", 71.6, 67.9, 74.6),
    ("ARTime", 71.1, 62.2, 76.0),
    ("KNN CAD", 61.0, 51.1, 66.0),
    ("Random Cut Forest", 54.0, 41.6, 60.9),
    ("Twitter ADVec", 43.5, 30.6, 50.4),
    ("Windowed Gaussian", 35.0, 16.7, 42.7),
)


@dataclass(frozen=True)
class Configuration:
    name: str
    model: str
    scoring: ScoringSpec


def load_configurations(
    path: Path, models: dict[str, ModelSettings],
) -> tuple[list[Configuration], dict[str, ModelSettings]]:
    """The configurations file: ``models`` (added to ``models``) and ``configurations``."""
    try:
        raw = load_yaml(path.read_text()) or {}
        extra = {name: parse_model_settings(body)
                 for name, body in (raw.get("models") or {}).items()}
        all_models = {**models, **extra}
        found = []
        for index, item in enumerate(raw.get("configurations") or []):
            if item["model"] not in all_models:
                raise ConfigError(f"{path}: configurations[{index}] names unknown model "
                                  f"{item['model']!r}")
            found.append(Configuration(str(item["name"]), str(item["model"]),
                                       ScoringSpec.model_validate(item.get("scoring") or {})))
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the configurations: {exc}") from None
    if not found:
        raise ConfigError(f"{path}: no configurations listed")
    return found, all_models


@dataclass(frozen=True)
class ReportRow:
    configuration: Configuration
    tuned: list[float]
    """NAB's tuned threshold, per profile, tuned on all files (in sample)."""
    held_out: list[float]
    """The threshold tuned on the other folders, per profile (leave one folder out)."""
    deployable: list[float]
    """``score > threshold`` per profile: nothing tuned on the files."""
    accuracy: dict[str, float]
    seconds: float


def write_report(
    data: Path, configurations_path: Path, models: dict[str, ModelSettings],
    horizon: int | None,
    context: int, jobs: int, out: Path, command: str, echo: Callable[[str], None],
    cache: Path | None = None,
) -> None:
    """Replay every configuration and write the comparison page, in sample and
    cross-validated over the data's folders."""
    configurations, all_models = load_configurations(configurations_path, models)
    items = corpus_items(data)
    rows = []
    scored: dict[str, list[LabelledScores]] = {}
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        # Configurations that share a model share its forecasts.
        folder = cache or Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="openanomaly-forecasts-")))
        for configuration in configurations:
            echo(f"{configuration.name} ({configuration.model})")
            began = time.perf_counter()
            replayed = replay_corpus(items, all_models, configuration.scoring,
                                     configuration.model, horizon, context, jobs, folder)
            files = [r.labelled for r in replayed]
            scored[configuration.name] = files
            threshold = configuration.scoring.threshold
            row = ReportRow(
                configuration,
                [evaluate(files, p).normalised for p in PROFILES],
                [cross_validate({configuration.name: files}, p).score for p in PROFILES],
                [evaluate(files, p, threshold=threshold).normalised for p in PROFILES],
                summarise_accuracy([r.accuracy for r in replayed]),
                time.perf_counter() - began)
            rows.append(row)
            echo(f"  standard {row.tuned[0]:.1f} (held out {row.held_out[0]:.1f}), "
                 f"deployable {row.deployable[0]:.1f}")
    thresholds = {c.scoring.threshold for c in configurations}
    deploy_at = thresholds.pop() if len(thresholds) == 1 else 1.0
    chosen = {
        "tuned": [cross_validate(scored, p) for p in PROFILES],
        "deployable": [cross_validate(scored, p, deploy_at) for p in PROFILES],
    }
    total = time.perf_counter() - started
    out.write_text(_markdown(rows, chosen, len(items), data, horizon, context,
                             run_time_text(total, jobs, cache is not None), command))
    echo(f"wrote {out}")


def _lever_gains(rows: list[ReportRow]) -> list[str]:
    """Each configuration's gain over the pipeline default's row (the first with default
    scoring), standard profile: what a lever is worth in sample, held out, deployed."""
    default = next((r for r in rows if r.configuration.scoring == ScoringSpec()), None)
    if default is None:
        return []
    lines = [
        "",
        "## What each lever gains",
        "",
        f"Against *{default.configuration.name}* ({default.configuration.model}), standard "
        "profile, in points: in sample (tuned on all files), held out (tuned on the other "
        "folders) and deployable (`score > 1`). A lever that gains in sample but not held "
        "out was fitted to these files.",
        "",
        "| configuration | in sample | held out | deployable |",
        "|---|---|---|---|",
    ]
    for row in rows:
        if row is default:
            continue
        lines.append(f"| {row.configuration.name} | {row.tuned[0] - default.tuned[0]:+.1f} "
                     f"| {row.held_out[0] - default.held_out[0]:+.1f} "
                     f"| {row.deployable[0] - default.deployable[0]:+.1f} |")
    return lines


def _markdown(rows: list[ReportRow], chosen: dict[str, list[HeldOut]], files: int,
              data: Path, horizon: int | None, context: int, run_time: str,
              command: str) -> str:
    def pair(row: ReportRow, index: int) -> str:
        return f"{row.tuned[index]:.1f} / {row.held_out[index]:.1f}"

    lines = [
        "# Detection quality on NAB",
        "",
        "<!-- Generated by the command below; do not edit by hand. -->",
        "",
        f"`{command}`",
        "",
        f"{files} labelled files of the Numenta Anomaly Benchmark ({data.name}), replayed "
        f"causally through the production scoring: every block of {blocks_text(horizon)} "
        f"is forecast from the {context} rows before it, on the file's step grid (missing "
        "steps are gaps), and scored with the pipeline's options, calibrated one 5-minute "
        "check window at a time (one row at steps of 5 minutes and more), as a pipeline on "
        "the default schedule is; the first 15 % of each "
        "file is context only. Scores are NAB's, normalised so that a detector that never "
        "alarms scores 0 and a perfect one 100.",
        "",
        "- **NAB in / held out**: one threshold per profile tuned as NAB does, *in sample* "
        "over all files, then *held out*: tuned on all folders but one and applied to the "
        "one left out, for each folder in turn (the held-out raw scores are summed and "
        "normalised over all windows).",
        "- **deployable**: the production alert threshold (`anomaly_score > 1`), nothing "
        "tuned on the files.",
        "- **MASE / QL ratio**: geometric means over files of the model's MASE and "
        "quantile loss (0.1/0.5/0.9) divided by seasonal naive's (below 1 is better).",
        "",
        "| configuration | model | NAB standard in / held out | NAB low FP in / held out "
        "| NAB low FN in / held out | deployable standard | deployable low FP "
        "| deployable low FN | MASE ratio | QL ratio | time |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.configuration.name} | {row.configuration.model} | "
            + " | ".join(pair(row, i) for i in range(len(PROFILES))) + " | "
            + " | ".join(f"{v:.1f}" for v in row.deployable)
            + f" | {row.accuracy['relative_mae']:.3f} "
            f"| {row.accuracy['relative_quantile_loss']:.3f} | {row.seconds:.0f} s |")
    lines += _lever_gains(rows)
    lines += [
        "",
        "## Choosing the configuration by cross-validation",
        "",
        "For each folder, the configuration (and for NAB's columns its threshold) that "
        "scores best on the other folders is scored on that folder: what choosing among the "
        "configurations above is worth on data the choice has not seen.",
        "",
        "| choice | standard | low FP | low FN |",
        "|---|---|---|---|",
        "| tuned threshold, best configuration (held out) | "
        + " | ".join(f"{h.score:.1f}" for h in chosen["tuned"]) + " |",
        "| `score > 1`, best configuration (held out) | "
        + " | ".join(f"{h.score:.1f}" for h in chosen["deployable"]) + " |",
        "",
        "Chosen per held-out folder (standard profile):",
        "",
        "| held-out folder | tuned threshold: configuration (threshold) | `score > 1`: "
        "configuration |",
        "|---|---|---|",
        *(f"| {t[0]} | {t[1]} ({t[2]:.3g}) | {d[1]} |"
          for t, d in zip(chosen["tuned"][0].picks, chosen["deployable"][0].picks,
                          strict=True)),
        "",
        "Published detectors on the same files (from the data folder's README; NAB's "
        "tuned thresholds, in sample):",
        "",
        "| detector | standard | low FP | low FN |",
        "|---|---|---|---|",
        *(f"| {name} | {s:.1f} | {fp:.1f} | {fn:.1f} |" for name, s, fp, fn in PUBLISHED),
        "",
        "The incidents an operator is paged for (flatlines, seasonal drops, drifts, ...), "
        "on a labelled synthetic suite: [incidents.md](incidents.md).",
        "",
        run_time,
        "",
    ]
    return "\n".join(lines)
