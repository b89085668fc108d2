"""`openanomaly benchmark nab` as a process, on a small corpus in NAB's layout."""

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest


def write_corpus(root):
    (root / "labels").mkdir(parents=True)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    windows = {}
    rng = np.random.default_rng(0)
    # Two folders, so the report can leave each out in turn.
    for name, spike in (("synthetic/with_spike.csv", 1500), ("quiet/clean.csv", None),
                        ("quiet/dip.csv", 1600)):
        t = np.arange(2000)
        values = 50 + 10 * np.sin(2 * np.pi * t / 288) + rng.normal(0, 1, t.size)
        stamps = [start + timedelta(minutes=5 * int(i)) for i in t]
        if spike is not None:
            values[spike:spike + 3] += 80 if "spike" in name else -60
            first, last = stamps[spike - 10], stamps[spike + 10]
            windows[name] = [[f"{first:%Y-%m-%d %H:%M:%S}.000000",
                              f"{last:%Y-%m-%d %H:%M:%S}.000000"]]
        else:
            windows[name] = []
        lines = ["timestamp,value"] + [f"{s:%Y-%m-%d %H:%M:%S},{v:.4f}"
                                       for s, v in zip(stamps, values, strict=True)]
        (root / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "data" / name).write_text("\n".join(lines) + "\n")
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows))


def test_benchmark_nab_prints_both_operating_points_and_writes_json(tmp_path):
    write_corpus(tmp_path / "nab")
    options = tmp_path / "options.yaml"
    options.write_text("scoring:\n  noise_floor: 4\n")
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "openanomaly.entrypoints.cli", "--config", str(tmp_path / "none"),
         "benchmark", "nab", "--data", str(tmp_path / "nab"), "--model", "seasonal_naive",
         "--pipeline-options", str(options), "--out", str(out)],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for profile in ("standard", "reward_low_FP_rate", "reward_low_FN_rate"):
        assert profile in done.stdout
    assert "synthetic/with_spike.csv" in done.stdout
    results = json.loads(out.read_text())
    standard = results["results"][0]
    assert standard["profile"] == "standard"
    assert standard["score"] > 50  # the spike is caught early by the tuned threshold
    spike_file = next(f for f in standard["files"] if f["name"] == "synthetic/with_spike.csv")
    assert spike_file["hits"] == 1


def test_benchmark_nab_on_a_folder_without_labels_is_a_clear_error(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "openanomaly.entrypoints.cli", "--config", str(tmp_path / "none"),
         "benchmark", "nab", "--data", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "combined_windows.json" in done.stderr


def test_nab_report_compares_configurations_in_markdown(tmp_path):
    write_corpus(tmp_path / "nab")
    configurations = tmp_path / "configurations.yaml"
    configurations.write_text(
        "models:\n  naive-pair:\n    backend: ensemble\n"
        "    members: [seasonal_naive, seasonal_naive]\n"
        "configurations:\n"
        "  - name: raw\n    model: seasonal_naive\n"
        "    scoring: {calibration_window: null, suppression_window: null}\n"
        "  - name: default\n    model: naive-pair\n")
    out = tmp_path / "benchmarks.md"
    done = subprocess.run(
        [sys.executable, "-m", "openanomaly.entrypoints.cli", "--config", str(tmp_path / "none"),
         "benchmark", "nab-report", "--data", str(tmp_path / "nab"), "--configurations",
         str(configurations), "--jobs", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    page = out.read_text()
    table = page.split("## What each lever gains")[0]
    rows = [line for line in table.splitlines() if line.startswith("| raw |")
            or line.startswith("| default |")]
    assert len(rows) == 2 and "| naive-pair |" in rows[1]
    # In sample / held out per profile. Each folder's spike or dip is caught by a
    # threshold tuned on the other folder: held out, the detector still scores above 0.
    cells = rows[1].split("|")[3:6]
    for cell in cells:
        in_sample, held_out = (float(v) for v in cell.split("/"))
        assert 0 < held_out <= 100 and 50 < in_sample <= 100
    # The lever table: the raw row's gains over the default row (scoring {}), as printed.
    gains = page.split("## What each lever gains")[1].split("##")[0]
    raw_gain = next(line for line in gains.splitlines() if line.startswith("| raw |"))
    raw_cell = rows[0].split("|")[3]
    default_cell = rows[1].split("|")[3]
    expected = [float(a) - float(b) for a, b in zip(raw_cell.split("/"),
                                                       default_cell.split("/"), strict=True)]
    got = [float(v) for v in raw_gain.split("|")[2:4]]
    assert got == pytest.approx(expected, abs=0.11)
    assert "| default |" not in gains
    assert "## Choosing the configuration by cross-validation" in page
    assert "| quiet |" in page and "| synthetic |" in page
    assert "| Numenta HTM | 73.6 | 66.2 | 77.0 |" in page
    assert "openanomaly benchmark nab-report --data" in page
    assert "Run time" in page and "--forecast-cache" not in page


def test_nab_report_with_an_unknown_model_is_a_clear_error(tmp_path):
    write_corpus(tmp_path / "nab")
    configurations = tmp_path / "configurations.yaml"
    configurations.write_text("configurations:\n  - name: x\n    model: gpt\n")
    done = subprocess.run(
        [sys.executable, "-m", "openanomaly.entrypoints.cli", "--config", str(tmp_path / "none"),
         "benchmark", "nab-report", "--data", str(tmp_path / "nab"), "--configurations",
         str(configurations)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "unknown model 'gpt'" in done.stderr
