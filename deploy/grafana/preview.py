"""Render a Grafana dashboard JSON file into a PNG, without Grafana, for the docs.

    python deploy/grafana/preview.py --prometheus http://127.0.0.1:9090 \\
        --dashboard deploy/grafana/dashboards/openanomaly-overview.json \\
        --out docs/img/dashboard-overview.png [--from -6h] [--to now] \\
        [--var pipeline=http-requests] [--width 1600] [--html page.html]

Variables are filled in as Grafana would on first load, panels are queried against
Prometheus, and the results are laid out by gridPos in a dark page drawn with the
vendored uPlot, then screenshotted with headless Chromium (playwright). It covers the
panel types the OpenAnomaly dashboards use (timeseries, stat, bargauge, table, row); it is
an approximation of Grafana, and every image says so in its footer.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import re
import sys
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = Path(__file__).with_name("preview.html")
VENDOR = ROOT / "openanomaly" / "entrypoints" / "web" / "static" / "vendor"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Grafana's classic palette, in its order, so series get the colours people expect.
PALETTE = [
    "#73BF69",
    "#F2CC0C",
    "#8AB8FF",
    "#FF780A",
    "#F2495C",
    "#5794F2",
    "#B877D9",
    "#705DA0",
    "#37872D",
    "#FADE2A",
    "#447EBC",
    "#C15C17",
    "#890F02",
    "#0A437C",
]
NAMED_COLOURS = {
    "green": "#73BF69",
    "red": "#F2495C",
    "orange": "#FF9830",
    "yellow": "#FADE2A",
    "blue": "#5794F2",
    "purple": "#B877D9",
    "text": "#CCCCDC",
}
# Grafana's layout constants: a grid unit is 30 px tall, panels sit 8 px apart.
ROW_PX = 30
GAP_PX = 8
# The scrape interval $__rate_interval assumes; Prometheus' default, and the demo's.
SCRAPE_S = 15
MAX_POINTS = 600
DURATION = re.compile(r"^(\d+)([smhdw])$")
UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")
LABEL_VALUES = re.compile(r"^\s*label_values\((?:(?P<selector>.+),\s*)?(?P<label>\w+)\)\s*$")
ALL = {"$__all", "All", "all"}


class Prometheus:
    """The few HTTP API calls a dashboard needs; plain urllib, to need nothing extra."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def get(self, path: str, params: list[tuple[str, str]]) -> object:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=30) as reply:
            body = json.load(reply)
        if body.get("status") != "success":
            raise RuntimeError(f"{path}: {body.get('error')}")
        return body["data"]

    def label_values(self, selector: str | None, label: str, start: float, end: float) -> list[str]:
        window = [("start", f"{start:.3f}"), ("end", f"{end:.3f}")]
        if selector is None:
            return list(self.get(f"/api/v1/label/{label}/values", window))
        series = self.get("/api/v1/series", [("match[]", selector), *window])
        return sorted({s[label] for s in series if label in s})


def parse_time(text: str, now: float) -> float:
    """Grafana's relative times (now, now-6h, -6h, now+2h), ISO dates or epoch seconds."""
    text = text.strip()
    if text == "now":
        return now
    relative = re.fullmatch(r"(?:now)?([+-])(\d+)([smhdw])", text)
    if relative:
        sign = 1 if relative.group(1) == "+" else -1
        return now + sign * int(relative.group(2)) * UNIT_S[relative.group(3)]
    try:
        return float(text)
    except ValueError:
        stamp = datetime.fromisoformat(text)
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        return stamp.timestamp()


def duration(seconds: float) -> str:
    return f"{max(1, int(seconds))}s"


def substitute(text: str, values: dict[str, str]) -> str:
    """Every $name, ${name}, ${name:fmt} and [[name]] Grafana knows; unknown ones stay."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        return values.get(name, match.group(0))

    return VARIABLE.sub(replace, text)


def resolve_variables(
    board: dict,
    given: dict[str, str],
    prom: Prometheus,
    start: float,
    end: float,
    builtins: dict[str, str],
) -> dict[str, str]:
    """Values in list order, since a query variable may use the ones before it."""
    values = dict(builtins)
    for var in board.get("templating", {}).get("list", []):
        name, kind = var["name"], var.get("type")
        every = var.get("allValue") or ".*"
        current = var.get("current") or {}
        default = current.get("value")
        if isinstance(default, list):
            default = default[0] if default else None
        if name in given:
            values[name] = every if given[name] in ALL else given[name]
        elif kind == "datasource":
            values[name] = str(default or var.get("query", ""))
        elif default in ALL or (kind == "query" and default is None and var.get("includeAll")):
            values[name] = every
        elif default is not None and default != "":
            values[name] = str(default)
        elif kind == "query":
            query = var.get("query")
            query = query.get("query") if isinstance(query, dict) else query
            match = LABEL_VALUES.match(substitute(query or "", values))
            found = []
            if match:
                found = prom.label_values(match.group("selector"), match.group("label"), start, end)
            values[name] = found[0] if found else ""
        elif kind == "custom":
            options = [o.strip() for o in str(var.get("query", "")).split(",") if o.strip()]
            values[name] = options[0] if options else ""
        else:
            # A textbox (or constant) left empty: Grafana puts in nothing at all.
            values[name] = str(var.get("query") or "")
    return values


def legend(fmt: str | None, labels: dict[str, str], expr: str) -> str:
    """Grafana's legend: {{label}} templates, or the series' own selector for __auto."""
    if fmt and fmt != "__auto":
        return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt)
    name = labels.get("__name__", "")
    rest = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    if not name and not rest:
        return expr
    return f"{name}{{{rest}}}" if rest else name


def flatten(panels: list[dict]) -> list[dict]:
    """Collapsed rows keep their panels inside; a preview shows them all."""
    out = []
    for panel in panels:
        out.append(panel)
        out.extend(panel.get("panels", []) if panel.get("type") == "row" else [])
    return out


def evaluate(
    panel: dict,
    values: dict[str, str],
    prom: Prometheus,
    start: float,
    end: float,
    step: float,
    instant_at: float,
) -> dict:
    """The panel's data in the shape the page draws: aligned columns for a time series,
    one last value per series otherwise."""
    kind = panel.get("type")
    result: dict = {"series": [], "errors": []}
    for target in panel.get("targets", []):
        if target.get("hide") or not target.get("expr"):
            continue
        expr = substitute(target["expr"], values)
        try:
            if kind == "timeseries":
                data = prom.get(
                    "/api/v1/query_range",
                    [
                        ("query", expr),
                        ("start", f"{start:.3f}"),
                        ("end", f"{end:.3f}"),
                        ("step", f"{step:g}"),
                    ],
                )
            else:
                data = prom.get("/api/v1/query", [("query", expr), ("time", f"{instant_at:.3f}")])
        except Exception as exc:  # shown in the panel, as Grafana shows a failed query
            result["errors"].append(f"{expr}: {exc}")
            continue
        for item in data.get("result", []):
            name = legend(target.get("legendFormat"), item["metric"], expr)
            if "values" in item:
                points = {float(t): float(v) for t, v in item["values"]}
                result["series"].append({"name": name, "points": points, "labels": item["metric"]})
            else:
                result["series"].append(
                    {"name": name, "value": float(item["value"][1]), "labels": item["metric"]}
                )
    if kind == "timeseries":
        # uPlot wants one shared x column spanning the whole window (as Grafana's axis
        # does, even where a series has no points); missing points become gaps (null).
        # query_range answers on start + k * step, so the grid is exactly that.
        grid = [start + k * step for k in range(int((end - start) // step) + 1)]
        stamps = sorted(set(grid) | {t for s in result["series"] for t in s["points"]})
        result["x"] = stamps
        for s in result["series"]:
            s["y"] = [finite(s["points"].get(t)) for t in stamps]
            del s["points"]
    else:
        for s in result["series"]:
            s["value"] = finite(s["value"])
    return result


def finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def colour(name: str | None) -> str:
    return NAMED_COLOURS.get(name or "", name or PALETTE[0])


def page(board: dict, source: str, panels: list[dict], width: int, caption: str) -> str:
    """The whole page: vendored uPlot inlined, so the browser needs no network or files."""
    uplot_js = (VENDOR / "uPlot.iife.min.js").read_text()
    uplot_css = (VENDOR / "uPlot.min.css").read_text()
    rows = max((p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels), default=1)
    spec = json.dumps({"panels": panels, "palette": PALETTE, "named": NAMED_COLOURS})
    # </script> inside the data would end the script element early.
    spec = spec.replace("</", "<\\/")
    fill = {
        "TITLE": html.escape(board.get("title", "")),
        "WIDTH": str(width),
        "ROWS": str(rows),
        "ROW_PX": str(ROW_PX),
        "GAP_PX": str(GAP_PX),
        "CAPTION": html.escape(caption),
        "SOURCE": html.escape(source),
        "UPLOT_CSS": uplot_css,
        "UPLOT_JS": uplot_js,
        "SPEC": spec,
    }
    # One pass, so that nothing inlined (uPlot, the data) is itself searched for markers.
    return re.sub(r"@@([A-Z_]+)@@", lambda m: fill[m.group(1)], TEMPLATE.read_text())


def build(args: argparse.Namespace) -> tuple[str, dict]:
    board = json.loads(Path(args.dashboard).read_text())
    prom = Prometheus(args.prometheus)
    now = time.time()
    start = parse_time(args.time_from or board.get("time", {}).get("from", "now-6h"), now)
    end = parse_time(args.time_to or board.get("time", {}).get("to", "now"), now)
    # Grafana picks the step from the panel's width; a fixed point budget is close enough.
    step = max(SCRAPE_S, math.ceil((end - start) / MAX_POINTS / SCRAPE_S) * SCRAPE_S)
    # Grafana aligns the window to the step, so that points land on the same stamps
    # from one refresh to the next; it also keeps the grid free of float noise here.
    # Instant queries stay at the requested end, as Grafana's do: past the last sample
    # plus Prometheus' 5 min lookback, they would find nothing.
    instant_at = end
    start, end = math.floor(start / step) * step, math.ceil(end / step) * step
    builtins = {
        "__interval": duration(step),
        "__interval_ms": str(int(step * 1000)),
        # Grafana's rule: at least four scrapes, and at least one step plus a scrape.
        "__rate_interval": duration(max(4 * SCRAPE_S, step + SCRAPE_S)),
        "__range": duration(end - start),
        "__range_s": str(int(end - start)),
        "__range_ms": str(int((end - start) * 1000)),
    }
    given = dict(v.split("=", 1) for v in args.var)
    values = resolve_variables(board, given, prom, start, end, builtins)
    panels = []
    for panel in flatten(board.get("panels", [])):
        entry = {
            "type": panel.get("type"),
            "title": substitute(panel.get("title", ""), values),
            "gridPos": panel["gridPos"],
            "fieldConfig": panel.get("fieldConfig", {}),
            "options": panel.get("options", {}),
        }
        if panel.get("type") == "row":
            entry["gridPos"] = {**panel["gridPos"], "h": 1, "w": 24}
        else:
            entry["data"] = evaluate(panel, values, prom, start, end, step, instant_at)
        panels.append(entry)
    source = Path(args.dashboard).as_posix()
    try:
        source = Path(args.dashboard).resolve().relative_to(ROOT).as_posix()
    except ValueError:
        source = Path(args.dashboard).name
    shown = ", ".join(
        f"{k}={v}" for k, v in values.items() if not k.startswith("__") and k != "datasource"
    )
    span = (
        f"{datetime.fromtimestamp(start, UTC):%Y-%m-%d %H:%M} to "
        f"{datetime.fromtimestamp(end, UTC):%Y-%m-%d %H:%M} UTC"
    )
    caption = f"Rendered from {source} by deploy/grafana/preview.py (not Grafana)"
    context = f"{span}" + (f"; {shown}" if shown else "")
    return page(board, context, panels, args.width, caption), {"values": values}


def screenshot(document: str, out: Path, width: int) -> None:
    from playwright.sync_api import sync_playwright

    out.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page(viewport={"width": width, "height": 900})
            tab.set_content(document)
            tab.wait_for_function("window.previewDone === true", timeout=30_000)
            tab.screenshot(path=str(out), full_page=True)
        finally:
            browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prometheus", required=True, help="Prometheus base URL")
    parser.add_argument("--dashboard", required=True, help="dashboard JSON file")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--from", dest="time_from", help="start: -6h, now-6h, ISO, epoch")
    parser.add_argument("--to", dest="time_to", help="end (default: the dashboard's)")
    parser.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a template variable's value; All for every value",
    )
    parser.add_argument("--width", type=int, default=1600, help="page width in pixels")
    parser.add_argument("--html", help="also keep the rendered HTML page here")
    # argparse takes "-6h" for an option, so `--from -6h` is glued into `--from=-6h`.
    argv = list(sys.argv[1:] if argv is None else argv)
    for i in range(len(argv) - 2, -1, -1):
        if argv[i] in ("--from", "--to") and argv[i + 1].startswith("-"):
            argv[i : i + 2] = [f"{argv[i]}={argv[i + 1]}"]
    args = parser.parse_args(argv)
    if any("=" not in v for v in args.var):
        parser.error("--var takes NAME=VALUE")
    document, info = build(args)
    if args.html:
        Path(args.html).write_text(document)
    screenshot(document, Path(args.out), args.width)
    print(f"wrote {args.out} ({', '.join(f'{k}={v}' for k, v in info['values'].items())})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
