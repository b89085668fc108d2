"""Long work reports progress off a terminal: a log line every few seconds, then one at
the end, with done/total, rate and time left."""

from __future__ import annotations

import io
import logging

from openanomaly.entrypoints.progress import Progress


def test_off_a_terminal_progress_is_logged_every_few_seconds(caplog):
    now = [0.0]
    with caplog.at_level(logging.INFO, logger="openanomaly.entrypoints.progress"), \
            Progress("backfill cpu", "slot", every_s=10, stream=io.StringIO(),
                     clock=lambda: now[0]) as progress:
        for done in range(1, 61):
            now[0] += 1.0
            progress.update_to(done, 60)
    lines = [record for record in caplog.records if record.name.endswith("progress")]
    assert [r.getMessage() for r in lines] == ["backfill cpu: progress"] * 6 + [
        "backfill cpu: finished"]
    first = lines[0]
    assert (first.done, first.total, first.rate_per_s, first.left_s) == (10, 60, 1.0, 50.0)
    assert lines[-1].done == 60 and not hasattr(lines[-1], "left_s")
