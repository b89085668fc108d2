"""The Numenta Anomaly Benchmark's files: ``data/<folder>/<name>.csv`` and
``labels/combined_windows.json`` (window stamps mapped to row ranges here)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from openanomaly.domain.errors import ConfigError


@dataclass(frozen=True)
class NabFile:
    name: str  # "<folder>/<file>.csv", as in the labels
    timestamps_ms: np.ndarray
    values: np.ndarray
    windows: tuple[tuple[int, int], ...]  # inclusive row ranges


def _ms(stamp: str) -> int:
    moment = datetime.fromisoformat(stamp).replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def load_corpus(root: str | Path) -> list[NabFile]:
    folder = Path(root)
    labels_path = folder / "labels" / "combined_windows.json"
    if not labels_path.is_file():
        raise ConfigError(f"{folder}: no labels/combined_windows.json; point --data at a NAB "
                          "folder holding data/ and labels/")
    windows = json.loads(labels_path.read_text())
    data = (folder / "data").resolve()
    files = []
    for name in sorted(windows):
        path = folder / "data" / name
        # A label key names a file under data/; "../" or an absolute path would read
        # whatever the labels point at.
        if not path.resolve().is_relative_to(data):
            raise ConfigError(f"{labels_path}: label key {name!r} points outside {data}; "
                              "keys are paths relative to data/")
        if not path.is_file():
            raise ConfigError(f"{path}: listed in the labels but missing")
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        stamps = np.array([_ms(row["timestamp"]) for row in rows], dtype=np.int64)
        values = np.array([float(row["value"]) for row in rows])
        spans = []
        for start, end in windows[name]:
            inside = np.flatnonzero((stamps >= _ms(start)) & (stamps <= _ms(end)))
            if inside.size:
                spans.append((int(inside[0]), int(inside[-1])))
        files.append(NabFile(name, stamps, values, tuple(spans)))
    return files
