"""The NAB loader reads only files under the corpus' data folder."""

from __future__ import annotations

import json

import pytest

from openanomaly.adapters.datasets.nab import load_corpus
from openanomaly.domain.errors import ConfigError


def corpus(tmp_path, key):
    (tmp_path / "nab" / "data" / "ok").mkdir(parents=True)
    (tmp_path / "nab" / "labels").mkdir()
    rows = "timestamp,value\n2024-01-01 00:00:00,1\n2024-01-01 00:05:00,2\n"
    (tmp_path / "nab" / "data" / "ok" / "a.csv").write_text(rows)
    (tmp_path / "outside.csv").write_text(rows)
    (tmp_path / "nab" / "labels" / "combined_windows.json").write_text(json.dumps({key: []}))
    return tmp_path / "nab"


def test_a_label_key_inside_data_loads(tmp_path):
    (one,) = load_corpus(corpus(tmp_path, "ok/a.csv"))
    assert one.name == "ok/a.csv" and one.values.tolist() == [1.0, 2.0]


@pytest.mark.parametrize("key", ["../../outside.csv", "ok/../../../outside.csv"])
def test_a_label_key_pointing_outside_data_is_refused(tmp_path, key):
    with pytest.raises(ConfigError, match="points outside"):
        load_corpus(corpus(tmp_path, key))
