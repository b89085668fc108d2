import pytest

from openanomaly.config import load_config
from openanomaly.domain.errors import ConfigError


def write(tmp_path, text, name="config.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_empty_file_gives_working_defaults(tmp_path):
    config = load_config(write(tmp_path, ""), environ={})
    assert config.prometheus.url == "http://localhost:9090"
    assert {"fracast", "seasonal_naive"} <= set(config.models)
    assert config.pipelines == [] and config.scheduler.kind == "embedded"


def test_env_substitution_with_defaults_and_overrides(tmp_path):
    path = write(tmp_path, "prometheus:\n  url: ${PROM_URL:-http://fallback:9090}\n"
                           "  bearer_token: ${TOKEN}\n")
    config = load_config(path, environ={"TOKEN": "s3cret"})
    assert config.prometheus.url == "http://fallback:9090"
    assert config.prometheus.bearer_token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(config)  # secrets never print
    config = load_config(path, environ={"TOKEN": "t", "OPENANOMALY__PROMETHEUS__TIMEOUT": "5",
                                        "OPENANOMALY__SCHEDULER__MAX_WORKERS": "4"})
    assert config.prometheus.timeout == 5 and config.scheduler.max_workers == 4


def test_pipelines_file_is_read_relative_to_the_config(tmp_path):
    (tmp_path / "more").mkdir()
    write(tmp_path / "more", "- name: b\n  query: up\n", "pipelines.yaml")
    path = write(tmp_path, "pipelines_file: more/pipelines.yaml\n"
                           "pipelines:\n  - name: a\n    query: up\n")
    assert [p.name for p in load_config(path, environ={}).pipelines] == ["a", "b"]


@pytest.mark.parametrize(("text", "expected"), [
    ("pipelines: [\n", "line 2, column 1: malformed YAML"),
    ("- just\n- a list\n", "top level must be a mapping"),
    ("pipelines:\n  - name: a\n    query: up\n  - name: a\n    query: up\n",
     "duplicate pipeline name 'a'"),
    ("pipelines:\n  - name: cpu\n    query: up\n    scoring:\n      band: [0.2, 0.3]\n",
     "pipelines[0] (cpu).scoring.band: band must satisfy"),
    ("models:\n  m:\n    backend: prophet\n",
     "models.m.backend: must be one of 'fracast', 'chronos'"),
    ("models:\n  m:\n    season: 1d\n", "models.m.backend: required"),
    ("models:\n  m:\n    backend: fracast\n    dtype: bfloat16\n",
     "models.m.dtype: Input should be 'float32'"),
    ("models:\n  m:\n    backend: fracast\n    members: [a, b]\n",
     "models.m.members: unknown key for backend fracast"),
    ("models:\n  m:\n    backend: chronos\n    factory: a.b:c\n",
     "models.m.factory: unknown key for backend chronos"),
    ("models:\n  e:\n    backend: ensemble\n    members: [fracast, nope]\n",
     "unknown ensemble member 'nope'"),
    ("models:\n  r:\n    backend: remote\n", "models.r.url: Field required"),
    ("models:\n  r:\n    backend: remote\n    url: gpu-1:8501\n",
     "models.r.url: url must start with http:// or https://"),
    ("models:\n  e:\n    backend: ensemble\n    members: [fracast]\n",
     "models.e.members: an ensemble needs at least two members"),
    ("scheduler:\n  max_workers: 0\n", "scheduler.max_workers: Input should be greater"),
    ("prometheus:\n  url: prometheus:9090\n", "prometheus.url: must start with http://"),
    ("pipelines_file: missing.yaml\n", "missing.yaml: config file not found"),
])
def test_errors_name_the_file_and_key(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert expected in str(caught.value)
    assert str(tmp_path) in str(caught.value)
