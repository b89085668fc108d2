"""The demo's closing lines match what is still running."""

from __future__ import annotations

from pathlib import Path

from openanomaly.entrypoints.demo import Detection, _print_report

FOUND = [Detection("demo_x", "spike", 1_700_000_000_000, 1_700_000_300_000, 4.2)]


def test_without_keep_running_it_does_not_point_at_a_stopped_prometheus(capsys):
    _print_report(FOUND, {"demo_x": (1, 100)}, "http://127.0.0.1:9999", 12.0, False, None)
    out = capsys.readouterr().out
    assert "Detected 1 of 1" in out and "http://127.0.0.1:9999" not in out
    assert "stops now and its temporary data is removed" in out and "--keep-running" in out
    _print_report(FOUND, {}, "http://127.0.0.1:9999", 12.0, False, Path("/data/demo"))
    assert "its data is kept in /data/demo" in capsys.readouterr().out


def test_with_keep_running_it_points_at_the_running_prometheus(capsys):
    _print_report(FOUND, {}, "http://127.0.0.1:9999", 12.0, True, None)
    out = capsys.readouterr().out
    assert "Look at the results in Prometheus (http://127.0.0.1:9999)" in out
