"""The ``openanomaly`` command."""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
import yaml
from pydantic import ValidationError

from openanomaly import __version__
from openanomaly.bootstrap import (
    bootstrap,
    build_store,
    build_telemetry,
    build_user_store,
    check_models_installed,
    check_prometheus_tls,
    health_server,
    password_hasher,
)
from openanomaly.config import (
    CONFIG_ENV,
    AppConfig,
    ModelServerSettings,
    ModelSettings,
    default_models,
    load_config,
    load_pipelines_file,
)
from openanomaly.domain.errors import ConfigError, OpenAnomalyError
from openanomaly.domain.redaction import redact
from openanomaly.domain.store import Role
from openanomaly.domain.timeutil import format_duration, from_ms, parse_time
from openanomaly.entrypoints.logging_setup import setup_logging
from openanomaly.entrypoints.progress import backfill_with_bar
from openanomaly.services.accounts import create_user, issue_token
from openanomaly.services.pipeline_admin import apply_pipelines, check_models, export_document
from openanomaly.services.query_check import check_queries

log = logging.getLogger("openanomaly.cli")
F = TypeVar("F", bound=Callable[..., Any])
LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]
PASSWORD_ENV = "OPENANOMALY_PASSWORD"


def _friendly_errors(func: F) -> F:
    """Project errors end the command with their message, never a traceback:
    exit 2 for configuration errors, 1 for everything else."""
    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            click.echo(f"error: {redact(str(exc))}", err=True)
            sys.exit(2)
        except OpenAnomalyError as exc:
            click.echo(f"error: {redact(str(exc))}", err=True)
            sys.exit(1)
    return wrapper  # type: ignore[return-value]


def _config(ctx: click.Context) -> AppConfig:
    config = load_config(ctx.obj["config_path"])
    setup_logging(ctx.obj.get("log_level") or config.logging.level, config.logging.format)
    return config


def _optional_config(ctx: click.Context) -> AppConfig | None:
    """The configuration when its file exists: benchmarks also run without one."""
    return _config(ctx) if Path(ctx.obj["config_path"]).exists() else None


def _replay_models(ctx: click.Context) -> dict[str, ModelSettings]:
    """The models a benchmark replay may use: the configuration's, or the defaults."""
    config = _optional_config(ctx)
    setup_logging("WARNING")
    return config.models if config is not None else default_models()


def _known_model(model: str, models: dict[str, ModelSettings]) -> None:
    if model not in models:
        raise click.BadParameter(f"unknown model {model!r}; known: {', '.join(sorted(models))}")


_replay_horizon_option = click.option(
    "--horizon", default=None, type=click.IntRange(1),
    help="Rows forecast at once before the replay advances [default: the scoring's "
    "forecast_block (each configuration's), as a pipeline scores them].")
_forecast_cache_option = click.option(
    "--forecast-cache", "forecast_cache", type=click.Path(path_type=Path, file_okay=False),
    default=None, help="Keep forecasts in this folder and reuse them in later runs that "
    "replay the same contexts with the same model settings (scoring changes only).")


def _now_ms() -> int:
    return int(time.time() * 1000)


def _time(text: str) -> int:
    try:
        return parse_time(text, _now_ms())
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="openanomaly")
@click.option("--config", "-c", "config_path", type=click.Path(path_type=Path),
              envvar=CONFIG_ENV, default="config.yaml", show_default=True,
              help=f"Configuration file (or set {CONFIG_ENV}).")
@click.option("--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False), default=None,
              help="Overrides logging.level of the config.")
@click.pass_context
def cli(ctx: click.Context, config_path: Path, log_level: str | None) -> None:
    """OpenAnomaly: zero-shot anomaly detection for Prometheus metrics.

    Reads each pipeline's series with PromQL, forecasts them with a pre-trained model,
    scores the actual values against the forecast, and writes forecasts and anomaly
    scores back with remote write. Alert on: openanomaly_anomaly_score > 1
    """
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path
    ctx.obj["log_level"] = log_level.upper() if log_level else None


@cli.command("check-config")
@click.option("--connect", is_flag=True,
              help="Also check that Prometheus answers and evaluate each pipeline's query "
              "once (exit 1 when one fails).")
@click.pass_context
@_friendly_errors
def check_config(ctx: click.Context, connect: bool) -> None:
    """Validate the configuration file and list its pipelines."""
    config = _config(ctx)
    check_models_installed(config)
    check_prometheus_tls(config)
    default_url = config.defaulted_prometheus_url
    if default_url is not None:
        click.echo(f"warning: {ctx.obj['config_path']} sets no prometheus.url; using the "
                   f"default {default_url}", err=True)
    click.echo(f"{ctx.obj['config_path']}: OK")
    click.echo(f"prometheus: {redact(config.prometheus.url)}")
    click.echo(f"models: {', '.join(sorted(config.models))}")
    click.echo(f"pipelines: {len(config.pipelines)}")
    for spec in config.pipelines:
        state = "" if spec.enabled else " (disabled)"
        click.echo(
            f"  {spec.name}{state}: mode={spec.mode} model={spec.model} "
            f"step={format_duration(spec.step)} context={format_duration(spec.context)} "
            f"horizon={format_duration(spec.horizon)} schedule={spec.schedule_spec}"
        )
    if connect:
        _check_connection(config)


def _check_connection(config: AppConfig) -> None:
    """Ping Prometheus, then evaluate every pipeline's query once, as a run would."""
    app = bootstrap(config)
    try:
        app.tsdb.ping()
        click.echo("prometheus: reachable")
        now = _now_ms()
        checks = check_queries(app.store.list_pipelines(), app.tsdb, now)
    finally:
        app.close()
    click.echo(f"queries at {from_ms(now).isoformat()}:")
    for check in checks:
        if check.error is not None:
            click.echo(f"  {check.pipeline}: error: {check.error}")
        elif check.empty:
            click.echo(f"  {check.pipeline}: warning: no series now; its runs find no data "
                       "until the query returns some")
        else:
            click.echo(f"  {check.pipeline}: {check.series} series")
    failed = [check.pipeline for check in checks if check.error is not None]
    if failed:
        click.echo(f"error: the query of {len(failed)} of {len(checks)} pipeline(s) failed: "
                   f"{', '.join(failed)}", err=True)
        sys.exit(1)


@cli.command()
@click.pass_context
@_friendly_errors
def run(ctx: click.Context) -> None:
    """Run every enabled pipeline on its schedule, in this process, until stopped.

    SIGINT or SIGTERM stops the scheduler; running pipelines finish first. The service's
    own metrics, /healthz and /readyz are served on metrics.host:metrics.port.
    """
    config = _config(ctx)
    if config.scheduler.kind == "celery":
        # Running both would run every slot twice.
        raise ConfigError("scheduler.kind is celery: start `openanomaly beat` and "
                          "`openanomaly worker` instead of `openanomaly run`, or set "
                          "scheduler.kind: embedded")
    telemetry = build_telemetry()
    app = bootstrap(config, telemetry=telemetry)
    try:
        endpoint = health_server(config, telemetry.registry, app.ready)
    except ConfigError:
        app.close()
        raise
    scheduler = app.scheduler()

    def stop(signum: int, _frame: object) -> None:
        log.info("signal received; shutting down", extra={"signal": signal.Signals(signum).name})
        scheduler.stop()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        scheduler.run(app.run)
    finally:
        if endpoint is not None:
            endpoint.close()
        app.close()


@cli.command("run-once")
@click.argument("pipeline")
@click.option("--at", "at", default="now", show_default=True,
              help="Slot time: RFC 3339, Unix seconds, 'now' or 'now-1h'.")
@click.pass_context
@_friendly_errors
def run_once(ctx: click.Context, pipeline: str, at: str) -> None:
    """Run PIPELINE once for one slot and print what it did.

    The slot is the schedule's slot at or before --at. A slot already written keeps its
    first samples (the run says already_written where the database refuses them).
    """
    app = bootstrap(_config(ctx))
    asked = _time(at)
    try:
        spec = app.store.get_pipeline(pipeline)
        result = app.run(spec, asked)
    finally:
        app.close()
    if result.at_ms != asked and at != "now":
        click.echo(f"{from_ms(asked).isoformat()} is not on the schedule's grid: ran its slot "
                   f"at or before it, as the scheduler does", err=True)
    click.echo(
        f"{result.pipeline} at {from_ms(result.at_ms).isoformat()}: {result.status}, "
        f"{result.series} series, {result.anomalous_points} anomalous points, "
        f"max score {result.max_score:.2f}, {result.samples_written} samples written "
        f"in {result.seconds:.2f}s"
    )
    if result.skipped:
        click.echo(f"  {result.skipped} series skipped: too little history in the context "
                   "for the model")
    if result.stale:
        click.echo(f"  {result.stale} series stale: no value in the check window (the "
                   "source stopped); nothing written for them")
    for labels in result.anomalous_series:
        click.echo(f"  anomalous: {_selector(labels)}")


@cli.command()
@click.argument("pipeline")
@click.option("--from", "start", required=True, help="Start: RFC 3339, Unix seconds or 'now-2d'.")
@click.option("--to", "end", default="now", show_default=True, help="End, same formats.")
@click.pass_context
@_friendly_errors
def backfill(ctx: click.Context, pipeline: str, start: str, end: str) -> None:
    """Replay PIPELINE's anomaly check over history and write the scores.

    Writing history needs Prometheus' storage.tsdb.out_of_order_time_window to reach back
    to --from.
    """
    start_ms, end_ms = _time(start), _time(end)
    if end_ms <= start_ms:
        raise click.BadParameter("--to must be after --from")
    app = bootstrap(_config(ctx))
    try:
        spec = app.store.get_pipeline(pipeline)
        result = backfill_with_bar(app, spec, start_ms, end_ms)
    finally:
        app.close()
    click.echo(
        f"{result.pipeline}: {result.series} series, {result.scored_points} points scored, "
        f"{result.anomalous_points} anomalous, {result.samples_written} samples written "
        f"in {result.seconds:.1f}s"
    )


@cli.command()
@click.option("--demo-config", type=click.Path(path_type=Path), default=None,
              help="Pipelines to run (default: examples/demo.yaml).")
@click.option("--keep-running", is_flag=True,
              help="Leave Prometheus running at the end, until Ctrl-C, to explore the results.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Where the demo's Prometheus keeps its data (default: a temporary folder).")
@_friendly_errors
def demo(demo_config: Path | None, keep_running: bool, data_dir: Path | None) -> None:
    """Run the whole loop on synthetic metrics with injected anomalies.

    Starts a local Prometheus, writes days of realistic metrics with a spike, a level
    shift, a drop to zero and a seasonal break, runs the demo pipelines with the Fracast
    model, and prints injected against detected anomalies.
    """
    from openanomaly.entrypoints.demo import run_demo

    setup_logging("WARNING")
    sys.exit(run_demo(demo_config, keep_running=keep_running, data_dir=data_dir))


@cli.command("serve-model")
@click.option("--host", default=None, help="Overrides model_server.host.")
@click.option("--port", type=int, default=None, help="Overrides model_server.port (0: any free).")
@click.option("--tls-cert", type=click.Path(dir_okay=False), default=None,
              help="PEM certificate (chain) to serve HTTPS with; overrides "
              "model_server.tls_cert_file.")
@click.option("--tls-key", type=click.Path(dir_okay=False), default=None,
              help="Its PEM private key; overrides model_server.tls_key_file.")
@click.option("--tls-client-ca", type=click.Path(dir_okay=False), default=None,
              help="PEM CA bundle: only clients with a certificate it signed are served; "
              "overrides model_server.tls_client_ca_file.")
@click.option("--insecure", is_flag=True,
              help="Serve other machines (a --host other than loopback) without a token or "
              "client certificates.")
@click.pass_context
@_friendly_errors
def serve_model(ctx: click.Context, host: str | None, port: int | None, tls_cert: str | None,
                tls_key: str | None, tls_client_ca: str | None, insecure: bool) -> None:
    """Serve the configured models over HTTP for remote engines (GPU machines).

    Endpoints: /v1/models, /v1/models/NAME/forecast, /healthz, /readyz, /metrics and the
    OpenAPI description at /openapi.json. Stops on SIGINT or SIGTERM. Refuses to listen
    on an address other machines reach without model_server.token or --tls-client-ca,
    unless --insecure.
    """
    from openanomaly.entrypoints.model_server import serve

    config = _with_model_server(_config(ctx), tls_cert_file=tls_cert, tls_key_file=tls_key,
                                tls_client_ca_file=tls_client_ca)
    serve(config, host=host, port=port, insecure=insecure)


def _problems(exc: ValidationError) -> str:
    """A validation error's messages on one line, without pydantic's prefix."""
    return "; ".join(error["msg"].removeprefix("Value error, ") for error in exc.errors())


def _with_model_server(config: AppConfig, **options: str | None) -> AppConfig:
    """``config`` with the model_server keys given on the command line, checked together
    with the ones of the file (a certificate needs its key)."""
    given = {key: value for key, value in options.items() if value is not None}
    if not given:
        return config
    try:
        settings = ModelServerSettings.model_validate(
            {**config.model_server.model_dump(), **given})
    except ValidationError as exc:
        raise ConfigError(f"serve-model: {_problems(exc)}") from None
    return config.model_copy(update={"model_server": settings})


@cli.group()
def benchmark() -> None:
    """Benchmarks that print what they measure."""


def _ints(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise click.BadParameter(f"expected positive integers, got {text!r}")
    return values


@benchmark.command("models")
@click.option("--models", "names", default="fracast,seasonal_naive,autoets,chronos-bolt-tiny",
              show_default=True, help="Comma-separated model names (configured or presets).")
@click.option("--batch", default="1,64,512", show_default=True, help="Batch sizes.")
@click.option("--context", default="512", show_default=True, help="Context lengths in steps.")
@click.option("--horizon", default=64, show_default=True, type=click.IntRange(1))
@click.option("--device", default=None, help="cpu, cuda, mps or auto for every torch model.")
@click.option("--repeat", default=3, show_default=True, type=click.IntRange(1))
@click.option("--out", type=click.Path(path_type=Path), default=Path("bench-models.json"),
              show_default=True, help="JSON results.")
@click.pass_context
@_friendly_errors
def bench_models(ctx: click.Context, names: str, batch: str, context: str, horizon: int,
                 device: str | None, repeat: int, out: Path) -> None:
    """Load time, latency and series per second of each model on synthetic contexts.

    Presets without reachable weights (chronos-bolt-tiny/mini/small/base, chronos-2,
    chronos-t5-tiny/small) run as randomly initialised models of the published size.
    """
    from openanomaly.entrypoints.benchmark.models import run_bench

    config = _optional_config(ctx)
    setup_logging("WARNING")
    run_bench([n.strip() for n in names.split(",") if n.strip()], _ints(batch),
              _ints(context), horizon, device, repeat, config, out)


@benchmark.command("model-server")
@click.option("--model", default="chronos-bolt-small", show_default=True,
              help="A configured model or a preset (random weights of the published size "
              "where the hub cannot be reached).")
@click.option("--batch", default=512, show_default=True, type=click.IntRange(1),
              help="Series per forward pass: the raw batch, and the server's largest.")
@click.option("--context", default=512, show_default=True, type=click.IntRange(8))
@click.option("--horizon", default=64, show_default=True, type=click.IntRange(1))
@click.option("--clients", default=4, show_default=True, type=click.IntRange(1),
              help="Concurrent clients; each sends BATCH/CLIENTS series a request.")
@click.option("--seconds", default=20.0, show_default=True, type=click.FloatRange(1),
              help="How long the clients send.")
@click.option("--batch-wait-ms", default=5.0, show_default=True, type=click.FloatRange(0),
              help="The server's dynamic batching wait.")
@click.option("--device", default=None, help="cpu, cuda, mps or auto.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False),
              default=Path("bench-model-server.json"), show_default=True, help="JSON results.")
@click.pass_context
@_friendly_errors
def bench_model_server(ctx: click.Context, model: str, batch: int, context: int,
                       horizon: int, clients: int, seconds: float, batch_wait_ms: float,
                       device: str | None, out: Path) -> None:
    """Series per second through serve-model against the raw forward pass.

    Measures the model's forward pass on batches of BATCH series in this process, then
    starts serve-model with the model alone and sends it requests from CLIENTS concurrent
    clients (binary frames over HTTP, merged by the server's dynamic batching) for
    SECONDS, and prints both rates and their ratio.
    """
    from openanomaly.entrypoints.benchmark.serving import ServingOptions, run_serving

    config = _optional_config(ctx)
    setup_logging("WARNING")
    run_serving(ServingOptions(model, batch, context, horizon, clients, seconds,
                               batch_wait_ms, device), config, out, click.echo)


@benchmark.command("e2e")
@click.option("--series", type=click.IntRange(1), default=None,
              help="Series in the fleet (or --preset).")
@click.option("--preset", type=click.Choice(["1k", "10k", "100k"]), default=None,
              help="A fleet of 1,000, 10,000 or 100,000 series.")
@click.option("--model", default="fracast", show_default=True,
              help="A configured model or a preset (chronos-bolt-tiny: random weights of "
              "the published size).")
@click.option("--runs", default=3, show_default=True, type=click.IntRange(2),
              help="Consecutive 5-minute slots run; the last is the steady state.")
@click.option("--context", default="1d", show_default=True,
              help="The pipeline's context (steps of one minute).")
@click.option("--device", default=None, help="cpu, cuda, mps or auto for a torch model.")
@click.option("--prometheus-url", default=None,
              help="Use this Prometheus (remote-write receiver on, out-of-order window of a "
              "day or more) instead of starting a local one.")
@click.option("--context-cache/--no-context-cache", default=True, show_default=True,
              help="Runs read only the steps since the previous run, as a live process "
              "does; --no-context-cache reads the whole context every run.")
@click.option("--celery-workers", type=click.IntRange(1), default=None,
              help="Run the slots through this many `openanomaly worker` processes "
              "(sharded) instead of in this process; needs the distributed extra.")
@click.option("--shard-series", type=click.IntRange(1), default=2500, show_default=True,
              help="With --celery-workers: series per shard.")
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True,
              help="With --celery-workers: threads per worker for the model.")
@click.option("--share-contexts/--no-share-contexts", default=True, show_default=True,
              help="With --celery-workers: workers share each pipeline's context in Redis "
              "(scheduler.share_contexts).")
@click.option("--redis-url", default=None,
              help="With --celery-workers: a Redis database no other worker uses, instead "
              "of starting a local redis-server.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False),
              default=Path("bench-e2e.json"), show_default=True, help="JSON results.")
@click.pass_context
@_friendly_errors
def bench_e2e(ctx: click.Context, series: int | None, preset: str | None, model: str,
              runs: int, context: str, device: str | None, prometheus_url: str | None,
              context_cache: bool, celery_workers: int | None, shard_series: int,
              threads: int, share_contexts: bool, redis_url: str | None, out: Path) -> None:
    """Series scored per 5-minute cycle, end to end, and where the time goes.

    Writes a fleet of node-exporter-like series (daily cycles, noise, gaps) into
    Prometheus, runs one pipeline over all of them at consecutive slots through the
    production path, and prints the steady-state run's time per stage (query: the
    database's answer, decoding, alignment; inference; scoring; calibration read-back;
    write: encoding, sending), series per second, the overhead ratio (everything but the
    model's forward pass / the forward pass) and the peak memory. With --celery-workers,
    the slots go through Celery workers, sharded, and each slot's wall time, reading
    time, busy time and forward passes are printed instead.
    """
    from openanomaly.domain.timeutil import parse_duration
    from openanomaly.entrypoints.benchmark.e2e import PRESETS, E2EOptions, run_e2e
    from openanomaly.entrypoints.demo import ensure_prometheus

    if (series is None) == (preset is None):
        raise click.UsageError("give either --series N or --preset 1k|10k|100k")
    count = series if series is not None else PRESETS[str(preset)]
    config = _optional_config(ctx)
    setup_logging("WARNING")
    try:
        options = E2EOptions(count, model, runs, context_s=parse_duration(context),
                             device=device, prometheus_url=prometheus_url,
                             context_cache=context_cache)
        options.pipeline()  # the pipeline the benchmark runs: refuses a context off the grid
    except ValidationError as exc:
        raise click.BadParameter(_problems(exc), param_hint="--context") from None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--context") from None
    binary = ensure_prometheus() if prometheus_url is None else "prometheus"
    if celery_workers is None:
        run_e2e(options, config, out, click.echo, binary)
        return
    from openanomaly.entrypoints.benchmark.e2e_celery import CeleryOptions, run_e2e_celery

    run_e2e_celery(options, CeleryOptions(celery_workers, shard_series, threads, redis_url,
                                          share_contexts), config, out, click.echo, binary)


@cli.command()
@click.option("--concurrency", type=click.IntRange(1), default=None,
              help="Worker processes (default: the number of CPUs).")
@click.option("--log-level", "log_level", type=click.Choice(LOG_LEVELS, case_sensitive=False),
              default=None, help="Overrides logging.level of the config.")
@click.pass_context
@_friendly_errors
def worker(ctx: click.Context, concurrency: int | None, log_level: str | None) -> None:
    """Run a Celery worker that executes scheduled pipeline runs from Redis.

    Uses redis.url of the config as broker. Stops after the running tasks on SIGTERM.
    """
    from openanomaly.entrypoints.celery_app import start_worker

    config = _config(ctx)
    level = (log_level or ctx.obj.get("log_level") or config.logging.level).upper()
    start_worker(config, concurrency=concurrency, log_level=level)


@benchmark.command("nab")
@click.option("--data", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="A NAB folder holding data/ and labels/combined_windows.json.")
@click.option("--pipeline-options", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="YAML with the pipeline's scoring options (default: defaults).")
@click.option("--model", default="fracast", show_default=True)
@_replay_horizon_option
@click.option("--context", default=2048, show_default=True, type=click.IntRange(8))
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(1),
              help="Files replayed in parallel processes (each loads the model).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("nab-results.json"),
              show_default=True)
@_forecast_cache_option
@click.pass_context
@_friendly_errors
def bench_nab(ctx: click.Context, data: Path, pipeline_options: Path | None, model: str,
              horizon: int | None, context: int, jobs: int, out: Path,
              forecast_cache: Path | None) -> None:
    """NAB score of the production scoring: NAB's tuned threshold and the deployable one.

    Replays each labelled file causally (forecast HORIZON rows from the CONTEXT rows before
    them, score, advance) and prints the standard, low-FP and low-FN scores, then hits,
    misses and false alarms per file.
    """
    from openanomaly.entrypoints.benchmark.nab import load_scoring, run_nab

    models = _replay_models(ctx)
    _known_model(model, models)
    run_nab(data, model, models, load_scoring(pipeline_options), horizon, context, out,
            click.echo, jobs, forecast_cache)


@benchmark.command("nab-report")
@click.option("--data", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="A NAB folder holding data/ and labels/combined_windows.json.")
@click.option("--configurations", type=click.Path(path_type=Path, dir_okay=False),
              default=Path("benchmarks/nab_configurations.yaml"), show_default=True,
              help="YAML listing the detector configurations to compare.")
@_replay_horizon_option
@click.option("--context", default=2048, show_default=True, type=click.IntRange(8))
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(1))
@click.option("--out", type=click.Path(path_type=Path), default=Path("docs/benchmarks.md"),
              show_default=True)
@_forecast_cache_option
@click.pass_context
@_friendly_errors
def bench_nab_report(ctx: click.Context, data: Path, configurations: Path,
                     horizon: int | None,
                     context: int, jobs: int, out: Path, forecast_cache: Path | None) -> None:
    """Replay every configuration of CONFIGURATIONS on NAB and write the results page:
    in sample and cross-validated, leaving out one folder of the data at a time.

    Configurations that share a model share its forecasts (kept in a temporary folder, or
    in --forecast-cache)."""
    from openanomaly.entrypoints.benchmark.nab import write_report

    models = _replay_models(ctx)
    command = ("openanomaly benchmark nab-report " + " ".join(
        [f"--data {data}", f"--configurations {configurations}", f"--jobs {jobs}",
         f"--out {out}"]))
    write_report(data, configurations, models, horizon, context, jobs, out, command,
                 click.echo, forecast_cache)


def _steps(text: str) -> list[int]:
    from openanomaly.domain.incidents import incident_range, series_rows

    steps = _ints(text)
    for step in steps:
        try:
            incident_range(series_rows(step), step)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    return steps


def _classes(text: str | None) -> list[str]:
    from openanomaly.domain.incidents import CLASSES

    if text is None:
        return list(CLASSES)
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in CLASSES]
    if unknown or not names:
        raise click.BadParameter(f"unknown incident class(es) {', '.join(unknown) or text!r}; "
                                 f"known: {', '.join(CLASSES)}")
    return names


@benchmark.command("incidents")
@click.option("--model", default="fracast", show_default=True)
@click.option("--config", "--pipeline-options", "pipeline_options",
              type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="YAML with the pipeline's scoring options (default: defaults).")
@click.option("--configurations", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="YAML listing configurations to compare, as for nab-report "
              "(then --model and --config are not used).")
@click.option("--seeds", default="1", show_default=True,
              help="Comma-separated seeds: each builds the whole suite anew.")
@click.option("--steps", default="60,300", show_default=True,
              help="Comma-separated steps in seconds: each builds the whole suite anew.")
@click.option("--classes", default=None,
              help="Comma-separated incident classes (default: all); controls always run.")
@_replay_horizon_option
@click.option("--context", default=2048, show_default=True, type=click.IntRange(8))
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(1),
              help="Series replayed in parallel processes (each loads the model).")
@click.option("--threshold", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Alarm where the score exceeds this [default: the scoring's threshold, "
              "1.0 unless configured].")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write every figure, per class, per step and per case, as JSON.")
@click.option("--markdown", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the results page (Markdown) here.")
@_forecast_cache_option
@click.pass_context
@_friendly_errors
def bench_incidents(ctx: click.Context, model: str, pipeline_options: Path | None,
                    configurations: Path | None, seeds: str, steps: str, classes: str | None,
                    horizon: int | None, context: int, jobs: int, threshold: float | None,
                    out: Path | None, markdown: Path | None,
                    forecast_cache: Path | None) -> None:
    """Detection of labelled operator incidents: spikes, level shifts, variance changes,
    phase shifts, drops, surges, flatlines and drifts injected into synthetic
    infrastructure metrics, plus controls without incidents.

    Every series is replayed through the production scoring as `benchmark nab` replays
    NAB; the table gives per class the incidents found, found within 5 steps, the delays
    and the false alarms per series-day, and whether the class meets the goal.
    """
    from openanomaly.domain.incidents import suite
    from openanomaly.entrypoints.benchmark import incidents as bench
    from openanomaly.entrypoints.benchmark.nab import (
        Configuration,
        load_configurations,
        load_scoring,
    )

    models = _replay_models(ctx)
    options = bench.SuiteOptions(_ints(seeds), _steps(steps), horizon, context, jobs,
                                 threshold)
    chosen = _classes(classes)
    if configurations is not None:
        for name in ("model", "pipeline_options"):
            if ctx.get_parameter_source(name) != click.core.ParameterSource.DEFAULT:
                raise click.BadParameter(f"--{name.replace('_', '-')} does not go with "
                                         "--configurations: each configuration names its "
                                         "model and scoring")
        runs, models = load_configurations(configurations, models)
    else:
        _known_model(model, models)
        runs = [Configuration(model, model, load_scoring(pipeline_options))]
    command = _incidents_command(ctx)
    started = time.perf_counter()
    cases = suite(options.seeds, options.steps, chosen)
    click.echo(f"{len(cases)} cases ({len(chosen)} classes and controls, seeds {seeds}, "
               f"steps {steps} s)", err=True)
    measured = bench.run_incidents(cases, runs, models, options, forecast_cache, click.echo)
    seconds = time.perf_counter() - started
    click.echo(f"\nreplayed {len(cases)} cases x {len(runs)} configuration(s) in "
               f"{seconds:.0f} s ({jobs} job(s))")
    if out is not None:
        bench.write_json(out, measured, len(cases), options, command, seconds)
    if markdown is not None:
        markdown.write_text(bench.markdown(measured, len(cases), options, command, seconds,
                                           sections=configurations is not None,
                                           cached=forecast_cache is not None))
        click.echo(f"wrote {markdown}", err=True)


def _incidents_command(ctx: click.Context) -> str:
    """The command line that reproduces this run: every option that was given, except
    where the JSON and the forecasts are kept, which change nothing measured."""
    words = ["openanomaly", "benchmark", "incidents"]
    for param in ctx.command.params:
        if param.name in (None, "out", "forecast_cache") or not param.opts:
            continue
        if ctx.get_parameter_source(param.name) == click.core.ParameterSource.DEFAULT:
            continue
        words += [param.opts[0], str(ctx.params[param.name])]
    return " ".join(words)


@cli.command()
@click.option("--log-level", "log_level", type=click.Choice(LOG_LEVELS, case_sensitive=False),
              default=None, help="Overrides logging.level of the config.")
@click.pass_context
@_friendly_errors
def beat(ctx: click.Context, log_level: str | None) -> None:
    """Run Celery beat with RedBeat: put each enabled pipeline's runs on the Redis queue.

    Run two or more for high availability: one leader holds a Redis lock, the others wait
    and take over within about scheduler.lock_timeout after it stops renewing it. The
    leader syncs the pipelines into RedBeat when it takes over, when the pipelines file
    changes and every scheduler.reconcile_interval seconds. Stops on SIGTERM.
    """
    from openanomaly.entrypoints.celery_app import start_beat

    config = _config(ctx)
    level = (log_level or ctx.obj.get("log_level") or config.logging.level).upper()
    start_beat(config, level)


@cli.command()
@click.pass_context
@_friendly_errors
def status(ctx: click.Context) -> None:
    """Beat leader lock, queue length, workers seen, and per pipeline the last completed
    slot and last error, as recorded in Redis by the distributed deployment."""
    import redis

    from openanomaly.entrypoints.status import report

    config = _config(ctx)
    try:
        report(config, click.echo)
    except redis.RedisError as exc:
        click.echo(redact(f"error: cannot read Redis at {config.redis.url}: {exc}"), err=True)
        sys.exit(1)


@cli.group()
def pipelines() -> None:
    """List pipelines, and move them between YAML files and a database store."""


@pipelines.command("list")
@click.pass_context
@_friendly_errors
def pipelines_list(ctx: click.Context) -> None:
    """The pipelines of the configured store (store.kind), with their versions."""
    store = build_store(_config(ctx))
    for stored in store.list_stored():
        spec = stored.spec
        state = "enabled" if spec.enabled else "disabled"
        click.echo(f"{spec.name}  v{stored.version}  {state}  mode={spec.mode} "
                   f"model={spec.model} schedule={spec.schedule_spec}")


@pipelines.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.pass_context
@_friendly_errors
def pipelines_import(ctx: click.Context, file: Path) -> None:
    """Create or update the store's pipelines from FILE (a list of pipelines, or a
    'pipelines:' list). Every pipeline is checked first: a bad one changes nothing."""
    config = _config(ctx)
    specs = load_pipelines_file(file)
    check_models(specs, config.models)
    report = apply_pipelines(build_store(config), specs)
    click.echo(f"{file}: {len(report.created)} created, {len(report.updated)} updated, "
               f"{len(report.unchanged)} unchanged")
    for what, names in (("created", report.created), ("updated", report.updated)):
        for name in names:
            click.echo(f"  {what}: {name}")


@pipelines.command("export")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write to this file instead of standard output.")
@click.pass_context
@_friendly_errors
def pipelines_export(ctx: click.Context, out: Path | None) -> None:
    """Write the store's pipelines as YAML that `pipelines import` (or pipelines_file)
    reads back."""
    store = build_store(_config(ctx))
    text = yaml.safe_dump({"pipelines": [export_document(s) for s in store.list_pipelines()]},
                          sort_keys=False, allow_unicode=True)
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        click.echo(f"wrote {len(store.list_pipelines())} pipeline(s) to {out}", err=True)


@cli.command()
@click.argument("name")
@click.option("--role", type=click.Choice([str(r) for r in Role]), default="viewer",
              show_default=True, help="viewer reads; editor also changes pipelines and "
              "runs them; admin also manages users and tokens.")
@click.pass_context
@_friendly_errors
def createuser(ctx: click.Context, name: str, role: str) -> None:
    """Create user NAME in the database store (store.kind sqlite or mongo).

    The password is read from $OPENANOMALY_PASSWORD when set (automation), else asked for
    twice on the terminal. There is no default user and no default password.
    """
    config = _config(ctx)
    store = build_user_store(config)
    password = os.environ.get(PASSWORD_ENV)
    if password is None:
        if not sys.stdin.isatty():
            raise ConfigError(f"no terminal to ask for the password: set {PASSWORD_ENV}")
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    user = create_user(store, password_hasher(), name, role, password)
    click.echo(f"created user {user.name} ({user.role})")


@cli.command()
@click.option("--workers", type=click.IntRange(1), default=2, show_default=True,
              help="gunicorn worker processes.")
@click.option("--host", default=None, help="Overrides django.host.")
@click.option("--port", type=int, default=None, help="Overrides django.port.")
@click.pass_context
@_friendly_errors
def api(ctx: click.Context, workers: int, host: str | None, port: int | None) -> None:
    """Serve the REST API (/api/, OpenAPI at /api/openapi.json) until SIGTERM.

    Needs a database store (store.kind sqlite or mongo) holding users, and
    django.secret_key. Stateless: run as many as needed behind a load balancer.
    """
    from openanomaly.entrypoints.web.server import serve

    config = _config(ctx)
    serve(config, workers, host or config.django.host,
          config.django.port if port is None else port)


@cli.group()
def tokens() -> None:
    """API tokens (Authorization: Bearer) of the database store's users."""


@tokens.command("create")
@click.argument("user")
@click.argument("name")
@click.pass_context
@_friendly_errors
def tokens_create(ctx: click.Context, user: str, name: str) -> None:
    """A new token NAME for USER, printed once: it is stored only as a digest."""
    record, token = issue_token(build_user_store(_config(ctx)), user, name)
    click.echo(f"token {record.id} ({record.name}) for {record.user}; it is shown only now:",
               err=True)
    click.echo(token)


@tokens.command("list")
@click.argument("user", required=False)
@click.pass_context
@_friendly_errors
def tokens_list(ctx: click.Context, user: str | None) -> None:
    """Tokens of USER (or of everyone): id, user, name, created, last used."""
    for token in build_user_store(_config(ctx)).list_tokens(user):
        used = (from_ms(token.last_used_ms).isoformat() if token.last_used_ms is not None
                else "never")
        click.echo(f"{token.id}  {token.user}  {token.name}  created "
                   f"{from_ms(token.created_ms).isoformat()}  last used {used}")


@tokens.command("revoke")
@click.argument("token_id")
@click.pass_context
@_friendly_errors
def tokens_revoke(ctx: click.Context, token_id: str) -> None:
    """Revoke a token by its id (see `tokens list`); it stops working at once."""
    build_user_store(_config(ctx)).revoke_token(token_id)
    click.echo(f"revoked token {token_id}")


def _selector(labels: dict[str, str]) -> str:
    name = labels.get("__name__", "")
    rest = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{name}{{{rest}}}"


def main() -> None:
    # `kill -USR1 PID` prints every thread's stack to stderr: a hung process explains itself.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    cli(obj={})


if __name__ == "__main__":
    main()
