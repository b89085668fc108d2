"""`openanomaly benchmark incidents` as a process, with seasonal naive on the 300 s suite."""

import json
import subprocess
import sys


def incidents(tmp_path, *options, timeout=180):
    return subprocess.run(
        [sys.executable, "-m", "openanomaly.entrypoints.cli", "--config", str(tmp_path / "none"),
         "benchmark", "incidents", *options], capture_output=True, text=True, timeout=timeout)


def table_rows(text):
    """The per-class rows of the first table in ``text``, as lists of cells."""
    rows, started = [], False
    for line in text.splitlines():
        if line.startswith("| class"):
            if started:
                break
            started = True
        elif started and line.startswith("| "):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
        elif started and rows:
            break
    return rows


def test_incidents_prints_the_per_class_table_and_writes_json_and_markdown(tmp_path):
    out, page = tmp_path / "incidents.json", tmp_path / "incidents.md"
    done = incidents(tmp_path, "--model", "seasonal_naive", "--seeds", "1", "--steps", "300",
                     "--out", str(out), "--markdown", str(page))
    assert done.returncode == 0, done.stderr
    printed = table_rows(done.stdout)
    names = [row[0] for row in printed]
    assert names == ["spike", "step_up", "step_down", "variance_burst", "variance_change",
                     "phase_shift", "seasonal_drop", "surge", "flatline", "drift",
                     "controls", "all"]
    assert "false alarms per series-day" in done.stdout

    results = json.loads(out.read_text())
    assert results["steps"] == [300] and results["seeds"] == [1] and results["cases"] == 54
    run, = results["configurations"]
    assert run["model"] == "seasonal_naive" and run["threshold"] == 1.0
    assert len(run["cases"]) == 54
    for row, summary in zip(printed, run["classes"], strict=True):
        assert int(row[1]) == summary["cases"]
        assert row[6] == f"{summary['fa_per_day']:.2f}"
        if summary["labelled"] and summary["kind"] != "all":
            assert (int(row[2]), int(row[3])) == (summary["found"], summary["quick"])
            expected = "met" if summary["meets_goal"] else "missed"
            assert row[7].split(" ")[0] == expected
    # The per-class figures are sums over the cases listed.
    spike_cases = [c for c in run["cases"] if c["kind"] == "spike"]
    spike = run["classes"][0]
    assert spike["found"] == sum(c["found"] for c in spike_cases)
    assert spike["false_alarms"] == sum(c["false_alarms"] for c in spike_cases)
    controls = run["classes"][-2]
    assert controls["kind"] == "control" and controls["cases"] == 14
    assert run["headline"]["controls_fa_per_day"] == controls["fa_per_day"]
    # A request rate surging x 2.5 is the easy incident: found at once.
    surges = [c for c in run["cases"] if c["name"].startswith("surge/requests/")]
    assert surges and all(c["found"] and c["delay"] <= 5 for c in surges)

    text = page.read_text()
    assert ("`openanomaly benchmark incidents --model seasonal_naive --seeds 1 --steps 300 "
            f"--markdown {page}`") in text
    assert table_rows(text) == printed
    assert run["headline"]["text"] in text


def test_incidents_compares_configurations_in_sections(tmp_path):
    configurations = tmp_path / "configurations.yaml"
    configurations.write_text(
        "configurations:\n"
        "  - name: raw\n    model: seasonal_naive\n"
        "    scoring: {calibration_window: null, suppression_window: null}\n"
        "  - name: default\n    model: seasonal_naive\n")
    page, out = tmp_path / "incidents.md", tmp_path / "incidents.json"
    done = incidents(tmp_path, "--configurations", str(configurations), "--steps", "300",
                     "--classes", "spike,surge", "--jobs", "2", "--markdown", str(page),
                     "--out", str(out), "--forecast-cache", str(tmp_path / "forecasts"))
    assert done.returncode == 0, done.stderr
    text = page.read_text()
    # Times measured with a forecast cache are not a replay's cost: the page says so.
    assert "Forecasts were read from a `--forecast-cache`" in text
    assert "## raw" in text and "## default" in text
    assert "scoring options `{\"calibration_window\": null" in text
    assert "the pipeline's default scoring" in text
    raw, default = json.loads(out.read_text())["configurations"]
    assert [c["kind"] for c in raw["classes"]] == ["spike", "surge", "control", "all"]
    # Raw interval scores alarm on every ordinary excursion; the calibrated, suppressed
    # default alarms far less on the same series.
    assert raw["classes"][-1]["false_alarms"] > default["classes"][-1]["false_alarms"]


def test_incidents_refuses_bad_options_clearly(tmp_path):
    done = incidents(tmp_path, "--model", "gpt", "--steps", "300", timeout=60)
    assert done.returncode == 2 and "unknown model 'gpt'" in done.stderr
    done = incidents(tmp_path, "--steps", "86400", timeout=60)
    assert done.returncode == 2 and "no room for incidents" in done.stderr
    done = incidents(tmp_path, "--classes", "spike,outage", timeout=60)
    assert done.returncode == 2 and "outage" in done.stderr
    configurations = tmp_path / "c.yaml"
    configurations.write_text("configurations:\n  - name: x\n    model: seasonal_naive\n")
    done = incidents(tmp_path, "--configurations", str(configurations), "--model", "fracast",
                     timeout=60)
    assert done.returncode == 2 and "--model does not go with --configurations" in done.stderr
    options = tmp_path / "options.yaml"
    options.write_text("scoring:\n  band: [0.9, 0.1]\n")
    done = incidents(tmp_path, "--model", "seasonal_naive", "--config", str(options),
                     timeout=60)
    assert done.returncode == 2 and "invalid scoring options" in done.stderr
