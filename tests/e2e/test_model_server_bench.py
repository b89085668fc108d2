"""`openanomaly benchmark model-server`: the raw forward pass, then the same model through
a serve-model process of its own, and the ratio."""

import json
import subprocess
import sys


def test_benchmark_model_server_measures_both_rates_and_their_ratio(tmp_path):
    out = tmp_path / "serving.json"
    done = subprocess.run(
        [sys.executable, "-m", "openanomaly.entrypoints.cli", "--config", str(tmp_path / "none"),
         "benchmark", "model-server", "--model", "seasonal_naive", "--batch", "64",
         "--context", "96", "--horizon", "12", "--clients", "2", "--seconds", "2",
         "--out", str(out)], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    assert "server / raw:" in done.stdout
    result = json.loads(out.read_text())
    raw, served = result["raw"], result["served"]
    assert raw["batch"] in (32, 64) and raw["series_per_s"] > 0
    assert served["clients"] == 2 and served["series_per_request"] == 32
    assert served["requests"] >= 2 and served["series_per_s"] > 0
    assert abs(result["ratio"] - served["series_per_s"] / raw["series_per_s"]) < 1e-9
