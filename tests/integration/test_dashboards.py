"""The Grafana dashboards of deploy/grafana: generated from code, every query valid
PromQL, every variable defined and resolving, every panel answering on real data."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from openanomaly.adapters.models.local_engine import LocalModelEngine
from openanomaly.adapters.models.settings import default_models
from openanomaly.adapters.tsdb.local_prometheus import LocalPrometheus, find_prometheus
from openanomaly.adapters.tsdb.prometheus import PrometheusAdapter
from openanomaly.adapters.tsdb.settings import PrometheusSettings
from openanomaly.domain.errors import TSDBUnavailable
from openanomaly.domain.pipeline import PipelineSpec
from openanomaly.domain.series import Series
from openanomaly.services.runs import run_pipeline
from tests.integration.service_metrics import self_monitoring

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
BOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
# What Grafana puts in for its own variables; any value of the right kind parses.
BUILTINS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}
VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")
LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")
STEP = 60_000


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def panels(board: dict) -> Iterator[dict]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])  # inside a collapsed row


def queries(board: dict) -> list[tuple[str, str, bool]]:
    """(where, PromQL, instant) of every panel target and annotation."""
    found = [(f"panel {p['title']!r} target {t.get('refId')}", t["expr"], bool(t.get("instant")))
             for p in panels(board) for t in p.get("targets", [])]
    found += [(f"annotation {a['name']!r}", a["expr"], False)
              for a in board.get("annotations", {}).get("list", []) if "expr" in a]
    return found


def variables(board: dict) -> list[dict]:
    return board.get("templating", {}).get("list", [])


def substitute(text: str, values: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name in BUILTINS:
            return BUILTINS[name]
        if name not in values:
            raise AssertionError(f"${name} in {text!r} is not a variable of the dashboard")
        return values[name]

    return VARIABLE.sub(one, text)


def sample_values(board: dict, matchers: str) -> dict[str, str]:
    """A value of each variable that PromQL must accept wherever the variable is used;
    ``matchers`` for free-text ones (label matchers), which may also be left empty."""
    values = {}
    for variable in variables(board):
        if variable["type"] == "textbox":
            values[variable["name"]] = matchers
        elif variable.get("includeAll"):
            values[variable["name"]] = variable.get("allValue") or ".*"
        else:
            values[variable["name"]] = "some-value"
    return values


def test_there_are_three_dashboards_with_unique_uids():
    uids = [load(path)["uid"] for path in BOARDS]
    assert len(uids) == 3 and len(set(uids)) == 3


def test_committed_json_is_the_generators_output(tmp_path):
    subprocess.run([sys.executable, str(GRAFANA / "dashboards.py"), "--out", str(tmp_path)],
                   check=True, timeout=120)
    generated = {path.name: path.read_text() for path in tmp_path.glob("*.json")}
    committed = {path.name: path.read_text() for path in BOARDS}
    assert generated.keys() == committed.keys()
    for name, text in generated.items():
        assert committed[name] == text, (
            f"{name} differs from the generator's output: edit deploy/grafana/definitions/ "
            "and run python deploy/grafana/dashboards.py")


@pytest.mark.parametrize("path", BOARDS, ids=lambda p: p.stem)
def test_every_variable_used_is_defined(path):
    board = load(path)
    defined = {v["name"] for v in variables(board)}
    texts = [expr for _, expr, _ in queries(board)]
    texts += [v["query"] for v in variables(board) if v["type"] == "query"]
    texts += [p["datasource"]["uid"] for p in panels(board) if "datasource" in p]
    used = {m.group(1) or m.group(2) for text in texts for m in VARIABLE.finditer(text)}
    assert used - defined - BUILTINS.keys() == set()
    # ...and every defined one is used, so none lingers after a panel is removed.
    assert defined - used == set()


@pytest.mark.parametrize("matchers", ["", 'instance="db-1"', 'instance="a", job=~"b.*"'])
def test_every_query_parses_with_promtool(tmp_path, matchers):
    rules = []
    for path in BOARDS:
        board = load(path)
        values = sample_values(board, matchers)
        for where, expr, _ in queries(board):
            rules.append((f"{path.stem}: {where}", substitute(expr, values)))
        for variable in variables(board):
            if variable["type"] == "query":
                match = LABEL_VALUES.match(variable["query"])
                assert match, f"{variable['query']!r}: only label_values(selector, label)"
                rules.append((f"{path.stem}: variable {variable['name']}",
                              substitute(match["selector"], values)))
    groups = [{"name": f"check-{i}", "rules": [
        {"record": "dashboard:check", "expr": expr, "labels": {"where": where}}]}
        for i, (where, expr) in enumerate(rules)]
    rule_file = tmp_path / "dashboard-queries.yml"
    rule_file.write_text(yaml.safe_dump({"groups": groups}))
    checked = subprocess.run(["promtool", "check", "rules", str(rule_file)],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules)} rules found" in checked.stdout


# -- against a Prometheus holding a pipeline's outputs and the service's metrics -------


@pytest.fixture(scope="module")
def populated(tmp_path_factory) -> Iterator[tuple[str, int]]:
    """A Prometheus of its own (so every answer comes from this data alone) holding a
    real pipeline run's outputs, with an anomaly, and 30 minutes of self-monitoring."""
    try:
        binary = find_prometheus()
    except TSDBUnavailable as exc:
        pytest.skip(str(exc))
    now = int(time.time() * 1000)
    at = now - now % (5 * STEP) - 10 * STEP
    with LocalPrometheus(tmp_path_factory.mktemp("dashboards"), binary=binary) as server:
        with PrometheusAdapter(PrometheusSettings(url=server.url)) as client:
            n = 8 * 60
            t = np.arange(n)
            rng = np.random.default_rng(3)
            sources = []
            for instance, level in (("web-1", 50.0), ("web-2", 80.0)):
                values = level + 10 * np.sin(2 * np.pi * t / 120) + rng.normal(0, 0.5, n)
                if instance == "web-1":
                    values[-1] += 200  # far outside any band: scored above 1
                sources.append(Series.of(
                    {"__name__": "shop_requests_per_second", "instance": instance,
                     "job": "shop"}, at - (n - 1 - t) * STEP, values))
            client.write(sources)
            spec = PipelineSpec(name="shop-requests", query="shop_requests_per_second",
                                mode="both", step="1m", context="6h", horizon="1h",
                                schedule="5m")
            run = run_pipeline(spec, at, client, LocalModelEngine(default_models()))
            assert run.status == "ok" and run.anomalous_points >= 1
            client.write(self_monitoring(run, at))
        yield server.url, at


def label_values(url: str, label: str, selector: str, at: int) -> list[str]:
    answer = httpx.get(f"{url}/api/v1/label/{label}/values",
                       params={"match[]": selector, "start": (at - 3_600_000) / 1000,
                               "end": at / 1000}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def resolve(board: dict, url: str, at: int) -> dict[str, str]:
    """Each variable's value, as Grafana would pick it: in order, later queries using
    earlier values; "All" for multi-value variables."""
    values: dict[str, str] = {}
    for variable in variables(board):
        name = variable["name"]
        if variable["type"] == "datasource":
            values[name] = variable["current"]["value"]
            continue
        if variable["type"] == "textbox":
            values[name] = variable.get("query", "")
            continue
        match = LABEL_VALUES.match(variable["query"])
        assert match, variable["query"]
        found = label_values(url, match["label"], substitute(match["selector"], values), at)
        assert found, f"variable {name}: {variable['query']!r} lists no values"
        values[name] = variable.get("allValue") or found[0] if variable.get("includeAll") \
            else found[0]
    return values


@pytest.mark.parametrize("path", BOARDS, ids=lambda p: p.stem)
def test_every_panel_answers_with_data(path, populated):
    url, at = populated
    board = load(path)
    values = resolve(board, url, at)
    empty = []
    for where, expr, instant in queries(board):
        promql = substitute(expr, values)
        if instant:
            answer = httpx.get(f"{url}/api/v1/query",
                               params={"query": promql, "time": at / 1000}, timeout=30)
        else:
            # From before the scores to the end of the forecasts written ahead.
            answer = httpx.get(f"{url}/api/v1/query_range", timeout=30, params={
                "query": promql, "start": (at - 3_600_000) / 1000,
                "end": (at + 3_600_000) / 1000, "step": STEP / 1000})
        assert answer.status_code == 200, f"{where}: {promql}: {answer.text}"
        if not answer.json()["data"]["result"]:
            empty.append(f"{where}: {promql}")
    assert empty == [], "queries without data:\n" + "\n".join(empty)
