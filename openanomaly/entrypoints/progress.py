"""A progress bar for long replays, on stderr and only when it is a terminal."""

from __future__ import annotations

import sys

from openanomaly.bootstrap import App
from openanomaly.domain.pipeline import PipelineSpec
from openanomaly.services.runs import RunResult


def backfill_with_bar(app: App, spec: PipelineSpec, start_ms: int, end_ms: int) -> RunResult:
    from tqdm import tqdm

    with tqdm(total=None, unit="slot", desc=f"backfill {spec.name}", file=sys.stderr,
              disable=None) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)
        return app.backfill(spec, start_ms, end_ms, progress)
