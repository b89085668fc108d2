"""YAML from people is read at a bounded cost: alias bombs and deep nesting are refused
with a message, in the config, the pipelines file and the web editor alike."""

from __future__ import annotations

import time

import pytest

from openanomaly.config import load_config, load_pipelines_file
from openanomaly.domain.errors import ConfigError
from openanomaly.entrypoints.web.editor import parse_spec
from openanomaly.yaml_safety import MAX_EXPANDED_NODES, load_yaml


def bomb(levels: int = 7) -> str:
    """Each level lists the previous one nine times: 9**levels values from a few lines."""
    lines = ['a0: &a0 ["${HOME}x", "${HOME}x", "${HOME}x"]']
    for level in range(1, levels + 1):
        refs = ", ".join([f"*a{level - 1}"] * 9)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_in_the_config_is_refused_fast(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("prometheus: {url: 'http://localhost:9090'}\n" + bomb())
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="aliases expand to more than"):
        load_config(path, environ={"HOME": "/root"})
    assert time.perf_counter() - started < 2


def test_the_pipelines_file_and_the_editor_refuse_it_too(tmp_path):
    path = tmp_path / "pipelines.yaml"
    path.write_text(bomb())
    with pytest.raises(ConfigError, match="aliases expand"):
        load_pipelines_file(path, environ={})
    with pytest.raises(ValueError, match="aliases expand"):
        parse_spec("name: x\nquery: up\n" + bomb())


def test_deep_nesting_is_refused_and_ordinary_aliases_still_work():
    with pytest.raises(Exception, match="nests deeper"):
        load_yaml("a: " + "[" * 5000 + "]" * 5000)
    shared = load_yaml("base: &b {step: 1m, context: 1d}\none: *b\ntwo: *b\n")
    assert shared["one"] == shared["two"] == {"step": "1m", "context": "1d"}
    assert MAX_EXPANDED_NODES >= 100_000, "room for a thousand real pipelines"
