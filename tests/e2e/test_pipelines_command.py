"""`openanomaly pipelines list | import | export` as processes, on a SQLite store."""

import signal
import subprocess
import time

from openanomaly.adapters.config.sqlite_store import SqliteStore
from openanomaly.config import load_pipelines_file
from tests.e2e.test_cli import (
    CLI,
    openanomaly,
    recent_history,
    valid_config,
    wait_for_scores,
    write_config,
)

PIPELINES = """\
pipelines:
  - name: cpu
    query: rate(node_cpu_seconds_total{mode="user"}[5m])
    step: 1m
    context: 6h
    scoring:
      suppression_window: 2h
  - name: http
    query: sum by (service) (rate(http_requests_total[5m]))
    model: seasonal_naive
"""


def sqlite_config(tmp_path):
    return write_config(tmp_path, f"store:\n  kind: sqlite\n"
                                  f"  sqlite_path: {tmp_path / 'state' / 'store.db'}\n")


def test_import_creates_then_updates_only_what_changed_and_export_reads_back(tmp_path):
    config = sqlite_config(tmp_path)
    file = tmp_path / "pipelines.yaml"
    file.write_text(PIPELINES)
    done = openanomaly("pipelines", "import", str(file), config=config)
    assert done.returncode == 0, done.stderr
    assert f"{file}: 2 created, 0 updated, 0 unchanged" in done.stdout

    file.write_text(PIPELINES.replace("context: 6h", "context: 12h"))
    done = openanomaly("pipelines", "import", str(file), config=config)
    assert "0 created, 1 updated, 1 unchanged" in done.stdout and "updated: cpu" in done.stdout
    listed = openanomaly("pipelines", "list", config=config).stdout.splitlines()
    assert listed[0].startswith("cpu  v2  enabled  mode=anomaly model=fracast")
    assert listed[1].startswith("http  v1  enabled")

    exported = tmp_path / "exported.yaml"
    done = openanomaly("pipelines", "export", "--out", str(exported), config=config)
    assert done.returncode == 0, done.stderr
    text = exported.read_text()
    assert "context: 12h" in text and "suppression_window: 2h" in text, text
    assert load_pipelines_file(exported) == load_pipelines_file(file)


def test_a_bad_pipeline_changes_nothing_and_says_what_to_fix(tmp_path):
    config = sqlite_config(tmp_path)
    file = tmp_path / "pipelines.yaml"
    file.write_text(PIPELINES)
    openanomaly("pipelines", "import", str(file), config=config)
    file.write_text(PIPELINES.replace("context: 6h", "context: 12h")
                    .replace("step: 1m", "step: 1 minute"))
    done = openanomaly("pipelines", "import", str(file), config=config)
    assert done.returncode == 2
    assert "pipelines[0] (cpu).step" in done.stderr and "Traceback" not in done.stderr
    file.write_text(PIPELINES.replace("model: seasonal_naive", "model: gpt"))
    done = openanomaly("pipelines", "import", str(file), config=config)
    assert done.returncode == 2 and "pipeline 'http': unknown model 'gpt'" in done.stderr
    store = SqliteStore(tmp_path / "state" / "store.db")
    assert [(p.spec.name, p.version, p.spec.context) for p in store.list_stored()] == [
        ("cpu", 1, 6 * 3600.0), ("http", 1, 86400.0)]


def test_pipelines_in_the_config_file_are_read_only(tmp_path):
    config = write_config(tmp_path, "pipelines:\n  - name: up\n    query: up\n")
    file = tmp_path / "pipelines.yaml"
    file.write_text(PIPELINES)
    done = openanomaly("pipelines", "import", str(file), config=config)
    assert done.returncode == 2
    assert f"pipelines come from {config} and are read-only here" in done.stderr


def test_inline_pipelines_with_a_database_store_are_refused(tmp_path):
    config = write_config(tmp_path, "store:\n  kind: sqlite\n"
                                    "pipelines:\n  - name: up\n    query: up\n")
    done = openanomaly("check-config", config=config)
    assert done.returncode == 2
    assert "move them there with `openanomaly pipelines import FILE`" in done.stderr


def test_a_pipeline_imported_while_run_is_running_is_scheduled_without_a_restart(
        tmp_path, prometheus, prom_client, unique):
    metric = unique("e2e_store")
    prom_client.write([recent_history(metric, minutes=30)])
    config = write_config(tmp_path, f"prometheus:\n  url: {prometheus.url}\n"
                                    f"store:\n  kind: sqlite\n"
                                    f"  sqlite_path: {tmp_path / 'store.db'}\n")
    process = subprocess.Popen([*CLI, "--config", str(config), "run"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2)  # running, with no pipeline yet
        pipelines = tmp_path / "pipelines.yaml"
        # The pipelines part of the CLI tests' config, as a file of its own.
        listed = valid_config(prometheus.url, metric).split("pipelines:\n", 1)[1]
        pipelines.write_text("pipelines:\n" + listed)
        done = openanomaly("pipelines", "import", str(pipelines), config=config)
        assert done.returncode == 0, done.stderr
        assert wait_for_scores(prom_client, metric), "the imported pipeline did not run within 60 s"
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
