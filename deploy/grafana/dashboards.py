"""Write the Grafana dashboards of deploy/grafana/dashboards/ from their definitions.

    python deploy/grafana/dashboards.py            # rewrite the committed JSON
    python deploy/grafana/dashboards.py --out DIR  # write elsewhere (the tests compare)

The JSON is generated, committed and checked by tests/integration/test_dashboards.py:
change a dashboard in definitions/, then run this.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # run as a script or imported by the tests
    sys.path.insert(0, str(HERE))

from definitions import common, explorer, overview, service_health  # noqa: E402


def render() -> dict[str, str]:
    """File name -> JSON of every dashboard."""
    return {
        "openanomaly-overview.json": common.to_json(overview.build()),
        "openanomaly-series.json": common.to_json(explorer.build(), explorer.ANNOTATION_FIELDS),
        "openanomaly-service-health.json": common.to_json(service_health.build()),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "dashboards",
                        help="folder to write the JSON files into")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (args.out / name).write_text(text)


if __name__ == "__main__":
    main()
