"""`openanomaly benchmark nab`: the NAB score of a pipeline's scoring, at NAB's tuned
threshold and at the production alert threshold."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from openanomaly.adapters.datasets.nab import load_corpus
from openanomaly.adapters.models.local_engine import LocalModelEngine
from openanomaly.adapters.models.settings import ModelSettings
from openanomaly.domain.errors import ConfigError
from openanomaly.domain.nab_scoring import PROFILES, ProfileResult, evaluate
from openanomaly.domain.pipeline import ScoringSpec
from openanomaly.services.nab_benchmark import ReplayInput, replay


def load_scoring(path: Path | None) -> ScoringSpec:
    """``scoring:`` options of a pipeline, from a YAML file (defaults when none)."""
    if path is None:
        return ScoringSpec()
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read pipeline options: {exc}") from None
    try:
        return ScoringSpec.model_validate(raw.get("scoring", raw))
    except ValueError as exc:
        raise ConfigError(f"{path}: invalid scoring options: {exc}") from None


def run_nab(
    data: Path, model: str, models: dict[str, ModelSettings], scoring: ScoringSpec,
    horizon: int, context: int, out: Path | None, echo: Callable[[str], None],
) -> list[ProfileResult]:
    from tqdm import tqdm

    corpus = load_corpus(data)
    engine = LocalModelEngine(models)
    started = time.perf_counter()
    with tqdm(total=len(corpus), unit="file", desc="replay", file=sys.stderr,
              disable=None) as bar:
        replayed = replay([ReplayInput(f.name, f.values, f.windows) for f in corpus], scoring,
                          engine, model, horizon, context,
                          progress=lambda done, _total: bar.update(done - bar.n))
    seconds = time.perf_counter() - started
    files = [r.labelled for r in replayed]
    results = []
    echo(f"{'profile':<20} {'NAB (tuned)':>12} {'threshold':>10} "
         f"{'deployable':>11} {'(score > ' + format(scoring.threshold, 'g') + ')':>12}")
    for profile in PROFILES:
        tuned = evaluate(files, profile)
        deployable = evaluate(files, profile, threshold=scoring.threshold)
        results += [tuned, deployable]
        echo(f"{profile.name:<20} {tuned.normalised:>12.1f} {tuned.threshold:>10.3g} "
             f"{deployable.normalised:>11.1f}")
    standard, deployable = results[0], results[1]
    echo("\nper file (standard profile): hits / misses / false alarms, tuned | deployable")
    for tuned_file, deploy_file in zip(standard.files, deployable.files, strict=True):
        echo(f"  {tuned_file.name:<58} {tuned_file.hits:>2} / {tuned_file.misses:>2} / "
             f"{tuned_file.false_alarms:>4}  |  {deploy_file.hits:>2} / {deploy_file.misses:>2}"
             f" / {deploy_file.false_alarms:>5}")
    echo(f"\nreplayed {len(corpus)} files with {model} in {seconds:.0f}s")
    if out is not None:
        out.write_text(json.dumps({
            "model": model, "scoring": scoring.model_dump(mode="json"), "horizon": horizon,
            "context": context, "seconds": seconds,
            "results": [{"profile": r.profile, "threshold": r.threshold, "score": r.normalised,
                         "files": [vars(f) for f in r.files]} for r in results],
        }, indent=2, default=str))
    return results
