"""The demo's web UI: `openanomaly demo --keep-running` also serves the control plane on the
demo's data, with the demo pipelines in a SQLite store and a one-time admin password."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import yaml

from openanomaly.bootstrap import (
    build_store,
    build_user_store,
    free_port,
    password_hasher,
    stop_with_parent,
)
from openanomaly.config import AppConfig
from openanomaly.domain.errors import ConfigError
from openanomaly.domain.run_state import RunState
from openanomaly.services.accounts import create_user
from openanomaly.services.pipeline_admin import apply_pipelines

ADMIN = "admin"


def start_ui(demo: AppConfig, prometheus_url: str, folder: Path,
             run_states: Sequence[RunState] = ()) -> tuple[subprocess.Popen[str], str, str]:
    """Start `openanomaly api` on the demo's pipelines; returns the process, its URL and
    the admin's password (made up now, printed once, never stored in clear)."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    settings = {
        "prometheus": {"url": prometheus_url},
        "store": {"kind": "sqlite", "sqlite_path": str(folder / "openanomaly.db")},
        "django": {"secret_key": secrets.token_urlsafe(32), "port": port},
        "logging": {"level": "WARNING"},
    }
    ui = AppConfig.model_validate(settings)
    store = build_store(ui)
    apply_pipelines(store, demo.pipelines)
    for state in run_states:
        store.record_run(state)
    password = secrets.token_urlsafe(12)
    create_user(build_user_store(ui), password_hasher(), ADMIN, "admin", password)
    config_file = folder / "api.yaml"
    config_file.write_text(yaml.safe_dump(settings), encoding="utf-8")
    # Its log goes to a file: a pipe nobody reads would block the server once it is full.
    log_path = folder / "api.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "openanomaly.entrypoints.cli", "--config", str(config_file),
             "api", "--workers", "1"], stdout=subprocess.DEVNULL, stderr=log, text=True,
            preexec_fn=stop_with_parent)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return process, url, password
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            errors = log_path.read_text(errors="replace").strip()[-500:]
            raise ConfigError(f"the demo's web UI did not start: {errors}")
        time.sleep(0.2)
