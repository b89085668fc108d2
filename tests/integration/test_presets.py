"""The pipeline presets of examples/presets: each is a pipelines file that
`openanomaly check-config` accepts, with the pipelines it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PRESETS = {
    "node-exporter.yaml": ["node-cpu-utilisation", "node-memory-available",
                           "node-filesystem-available", "node-network-receive",
                           "node-network-transmit"],
    "kubernetes.yaml": ["k8s-pod-cpu", "k8s-pod-memory", "k8s-pod-restarts",
                        "k8s-deployment-replicas-unavailable"],
    "http-red.yaml": ["http-request-rate", "http-error-ratio", "http-latency-p99"],
}


def test_every_preset_is_listed():
    assert {p.name for p in (ROOT / "examples" / "presets").glob("*.yaml")} == PRESETS.keys()


@pytest.mark.parametrize("name", PRESETS)
def test_preset_passes_check_config(name, tmp_path):
    preset = ROOT / "examples" / "presets" / name
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"prometheus": {"url": "http://prometheus:9090"},
                                      "pipelines_file": str(preset)}))
    checked = subprocess.run(
        [sys.executable, "-m", "openanomaly.entrypoints.cli", "--config", str(config),
         "check-config"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    listed = [line.split(":")[0].strip() for line in checked.stdout.splitlines()
              if line.startswith("  ")]
    assert listed == PRESETS[name]
    assert f"pipelines: {len(PRESETS[name])}" in checked.stdout
