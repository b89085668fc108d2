"""deploy/grafana/preview.py: a dashboard rendered to a PNG from a real Prometheus, every
panel on the page, for the docs' screenshots."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from openanomaly.domain.series import Series

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "grafana" / "preview.py"
BOARD = ROOT / "deploy" / "grafana" / "dashboards" / "openanomaly-series.json"
VENDOR = ROOT / "openanomaly" / "entrypoints" / "web" / "static" / "vendor"
MINUTE = 60_000


def needs_browser() -> None:
    """The vendored uPlot and a Chromium are what the page is drawn and shot with."""
    missing = [
        p.name for p in (VENDOR / "uPlot.iife.min.js", VENDOR / "uPlot.min.css") if not p.exists()
    ]
    if not Path("/usr/bin/chromium").exists() and not shutil.which("chromium"):
        missing.append("chromium")
    try:
        import playwright  # noqa: F401
    except ImportError:
        missing.append("playwright")
    if missing:
        reason = f"dashboard preview needs {', '.join(missing)}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_series_dashboard_renders_every_panel(prometheus, prom_client, tmp_path):
    needs_browser()
    now = int(time.time() * 1000)
    stamps = now - now % MINUTE - MINUTE * np.arange(120)[::-1]
    level = 100 + 10 * np.sin(np.arange(120) / 9)
    labels = {"pipeline": "preview-test", "source_metric": "preview_rps", "service": "a"}
    prom_client.write(
        [
            Series.of({"__name__": "openanomaly_y", **labels}, stamps, level),
            Series.of({"__name__": "openanomaly_yhat", **labels}, stamps, level + 1),
            Series.of({"__name__": "openanomaly_yhat_lower", **labels}, stamps, level - 8),
            Series.of({"__name__": "openanomaly_yhat_upper", **labels}, stamps, level + 8),
            Series.of(
                {"__name__": "openanomaly_anomaly_score", **labels},
                stamps,
                np.abs(np.sin(np.arange(120) / 5)),
            ),
        ]
    )
    out, page = tmp_path / "series.png", tmp_path / "series.html"

    subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--prometheus",
            prometheus.url,
            "--dashboard",
            str(BOARD),
            "--out",
            str(out),
            "--html",
            str(page),
            "--from",
            "-3h",
            "--to",
            "now",
            "--var",
            "pipeline=preview-test",
            "--var",
            "source_metric=preview_rps",
            "--width",
            "1200",
        ],
        check=True,
        cwd=ROOT,
        timeout=120,
    )

    assert out.stat().st_size > 10_000
    assert png_size(out)[0] == 1200
    document = page.read_text()
    for panel in json.loads(BOARD.read_text())["panels"]:
        assert json.dumps(panel["title"]) in document
    assert "by deploy/grafana/preview.py (not Grafana)" in document
    # The variables were filled in: the data went into the page, not just the titles.
    assert '"openanomaly_anomaly_score", "pipeline": "preview-test"' in document
