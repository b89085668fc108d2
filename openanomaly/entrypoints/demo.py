"""`openanomaly demo`: the whole loop on a local Prometheus and synthetic metrics."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from openanomaly.bootstrap import bootstrap, demo_prometheus, stop_process
from openanomaly.config import AppConfig, load_config
from openanomaly.domain.errors import OpenAnomalyError
from openanomaly.domain.run_state import RunState
from openanomaly.domain.synthetic import SyntheticSeries, demo_dataset, to_series
from openanomaly.domain.timeutil import align_down, from_ms
from openanomaly.entrypoints.progress import backfill_with_bar
from openanomaly.ports import TSDBClient

STEP_S = 300
DAYS = 7.0
ANOMALY_DAYS = 1.0
DETECTION_STEPS = 2  # an injected anomaly counts as detected within this many steps


@dataclass
class Detection:
    series: str
    kind: str
    injected_ms: int
    detected_ms: int | None
    peak_score: float

    @property
    def delay_steps(self) -> int | None:
        if self.detected_ms is None:
            return None
        return (self.detected_ms - self.injected_ms) // (STEP_S * 1000)


def default_demo_config() -> Path:
    beside_package = Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"
    return beside_package if beside_package.exists() else Path("examples/demo.yaml")


def write_dataset(tsdb: TSDBClient, end_ms: int) -> tuple[list[SyntheticSeries], int]:
    dataset, start_ms = demo_dataset(end_ms, STEP_S, DAYS, ANOMALY_DAYS)
    tsdb.write(to_series(dataset, start_ms, STEP_S))
    return dataset, start_ms


def source_key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """Identity of a source series as seen in output labels."""
    name = labels.get("source_metric") or labels.get("__name__", "")
    rest = [(k, v) for k, v in labels.items() if k in ("service", "instance", "region")]
    return (("name", name), *sorted(rest))


def read_scores(
    tsdb: TSDBClient, start_ms: int, end_ms: int, prefix: str = "openanomaly_"
) -> dict[tuple[tuple[str, str], ...], tuple[np.ndarray, np.ndarray]]:
    found = tsdb.query_range(f"{prefix}anomaly_score", start_ms, end_ms, STEP_S * 1000)
    return {source_key(dict(s.labels)): (s.timestamps_ms, s.values) for s in found}


def evaluate(
    dataset: Sequence[SyntheticSeries], start_ms: int,
    scores: dict[tuple[tuple[str, str], ...], tuple[np.ndarray, np.ndarray]],
    threshold: float = 1.0,
) -> tuple[list[Detection], dict[str, tuple[int, int]]]:
    """Injected anomalies against detections, and per series (alarms outside injections,
    scored points)."""
    detections: list[Detection] = []
    alarms: dict[str, tuple[int, int]] = {}
    step_ms = STEP_S * 1000
    for one in dataset:
        name = _display(one.labels)
        timestamps, values = scores.get(source_key(one.labels), (np.array([]), np.array([])))
        outside = np.ones(timestamps.size, dtype=bool)
        for injection in one.injections:
            begin = start_ms + injection.start * step_ms
            span = (timestamps >= begin) & (timestamps < begin + injection.length * step_ms)
            outside &= ~span
            early = (timestamps >= begin) & (timestamps <= begin + DETECTION_STEPS * step_ms)
            hits = timestamps[early & (values > threshold)]
            peak = float(np.nanmax(values[span])) if span.any() else float("nan")
            detections.append(Detection(name, injection.kind, begin,
                                        int(hits[0]) if hits.size else None, peak))
        finite = np.isfinite(values) & outside
        alarms[name] = (int((values[finite] > threshold).sum()), int(finite.sum()))
    return detections, alarms


def _display(labels: dict[str, str]) -> str:
    rest = ",".join(f'{k}="{v}"' for k, v in labels.items() if k not in ("__name__", "env"))
    return f"{labels['__name__']}{{{rest}}}"


def ensure_prometheus() -> str:
    found = shutil.which("prometheus")
    if found:
        click.echo(f"Using Prometheus at {found}")
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        click.echo("Prometheus is not installed: installing the Debian package 'prometheus'...")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-q", "prometheus"], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        found = shutil.which("prometheus")
        if found:
            return found
    raise click.ClickException(
        "the demo needs a Prometheus binary: install it with 'sudo apt-get install prometheus' "
        "(or put 'prometheus' on PATH) and run the demo again"
    )


def run_demo(config_path: Path | None, keep_running: bool = False,
             data_dir: Path | None = None) -> int:
    started = time.perf_counter()
    binary = ensure_prometheus()
    # Without --data-dir the data lives in a temporary folder removed at the end.
    with demo_prometheus(data_dir, binary) as prometheus:
        click.echo(f"Started Prometheus at {prometheus.url} (data in {prometheus.data_dir})")
        # The config's own override points any demo config at the Prometheus just started.
        config = load_config(config_path or default_demo_config(), environ={
            **os.environ, "OPENANOMALY__PROMETHEUS__URL": prometheus.url})
        app = bootstrap(config)
        try:
            end_ms = align_down(int(time.time() * 1000), STEP_S * 1000)
            dataset, start_ms = write_dataset(app.tsdb, end_ms)
            click.echo(f"Wrote {len(dataset)} synthetic series, {DAYS:g} days at 5m steps, "
                       f"with {sum(len(s.injections) for s in dataset)} injected anomalies")
            check_from = end_ms - int(ANOMALY_DAYS * 86400 * 1000)
            for spec in app.store.list_pipelines():
                click.echo(f"Backfilling pipeline {spec.name!r} over the last "
                           f"{ANOMALY_DAYS:g} day with model {spec.model}...")
                backfill_with_bar(app, spec, check_from - spec.step_ms, end_ms - spec.step_ms)
                app.run(spec, end_ms)  # the live slot: also writes forecasts ahead
            scores = read_scores(app.tsdb, check_from, end_ms)
            run_states = list(app.run_log.run_states().values()) if app.run_log else []
        except OpenAnomalyError as exc:
            click.echo(f"error: {exc}", err=True)
            return 1
        finally:
            app.close()
        detections, alarms = evaluate(dataset, start_ms, scores)
        _print_report(detections, alarms, prometheus.url, time.perf_counter() - started,
                      keep_running, data_dir)
        if keep_running:
            keep_serving(config, prometheus.url, run_states)
    return 0 if all(d.detected_ms is not None for d in detections) else 1


def keep_serving(config: AppConfig, prometheus_url: str, run_states: list[RunState]) -> None:
    """Leave Prometheus and the web UI running until Ctrl-C; the UI shows the demo's
    pipelines with the status of their live runs (``run_states``)."""
    from openanomaly.entrypoints.demo_ui import ADMIN, start_ui

    folder = Path(tempfile.mkdtemp(prefix="openanomaly-demo-web-"))
    try:
        process, url, password = start_ui(config, prometheus_url, folder, run_states)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    # Ctrl-C and SIGTERM (a container stopping) end the demo; installed explicitly, since a
    # process started in the background by a shell inherits SIGINT ignored.
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, _interrupt)
    try:
        # Inside the try: Ctrl-C right after the password is printed still stops the UI.
        click.echo(f"\nPrometheus keeps running at {prometheus_url}.")
        click.echo(f"The web UI runs at {url}: sign in as {ADMIN} with the one-time password "
                   f"{password}")
        click.echo("Ctrl-C to stop.")
        sys.stdout.flush()
        while process.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        stop_process(process, timeout=30)
        shutil.rmtree(folder, ignore_errors=True)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _print_report(detections: list[Detection], alarms: dict[str, tuple[int, int]],
                  url: str, seconds: float, keep_running: bool,
                  data_dir: Path | None) -> None:
    click.echo("\nInjected anomalies against detections (score > 1 within "
               f"{DETECTION_STEPS} steps of the start):\n")
    header = (f"{'series':<58} {'anomaly':<15} {'injected (UTC)':<15} {'detected':<9} "
              f"{'delay':>5} {'peak':>6}")
    click.echo(header)
    click.echo("-" * len(header))
    for d in detections:
        when = from_ms(d.injected_ms).strftime("%m-%d %H:%M")
        found = "yes" if d.detected_ms is not None else "MISSED"
        delay = f"{d.delay_steps}" if d.delay_steps is not None else "-"
        click.echo(f"{d.series:<58} {d.kind:<15} {when:<15} {found:<9} {delay:>5} "
                   f"{d.peak_score:>6.1f}")
    click.echo("\nAlarms outside the injected anomalies (score > 1):")
    for name, (count, total) in alarms.items():
        share = 100 * count / total if total else 0.0
        click.echo(f"  {name:<58} {count:>4} of {total} points ({share:.1f}%)")
    caught = sum(d.detected_ms is not None for d in detections)
    click.echo(f"\nDetected {caught} of {len(detections)} injected anomalies in {seconds:.0f}s.")
    if not keep_running:
        # The Prometheus stops with this command: point at what is left, not at its URL.
        kept = (f"its data is kept in {data_dir}" if data_dir is not None
                else "its temporary data is removed")
        click.echo("\nThe demo's Prometheus stops now and " + kept + ". To explore the "
                   "results in Prometheus and the web UI, run `openanomaly demo "
                   "--keep-running` (what `make demo` runs).")
        sys.stdout.flush()
        return
    click.echo(f"\nLook at the results in Prometheus ({url}) with PromQL such as:")
    for query in ("openanomaly_anomaly_score > 1",
                  'openanomaly_anomaly_score{source_metric="demo_active_connections"}',
                  'openanomaly_yhat_lower{pipeline="http-requests"}',
                  'openanomaly_forecast{pipeline="http-requests",quantile="0.5"}'):
        click.echo(f"  {query}")
    sys.stdout.flush()
