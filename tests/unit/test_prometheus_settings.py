"""The prometheus section: what a configuration file is refused for at load time."""

import pytest

from openanomaly.config import load_config
from openanomaly.domain.errors import ConfigError


def load(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return load_config(path, environ={})


@pytest.mark.parametrize(("key", "url", "expected"), [
    ("url", "http://host:9090:99",
     "Invalid port: '9090:99'; set a URL such as http://prometheus:9090"),
    ("url", "http://host:99999", "port 99999 is not between 1 and 65535"),
    ("url", "http://host:0", "port 0 is not between 1 and 65535"),
    ("url", "http://host:-1", "port -1 is not between 1 and 65535"),
    ("url", "http://:9090", "it has no host"),
    ("url", "http:///prometheus", "it has no host"),
    ("url", "https://", "it has no host"),
    ("url", "http://pro metheus:9090", "its host is not a valid host name"),
    ("url", "http://prometheus:9090/?tenant=a", "cannot carry a ?query"),
    ("url", "http://prometheus:9090/#top", "a #fragment means nothing"),
    ("remote_write_url", "http://host:9090:99/api/v1/write", "Invalid port: '9090:99'; set "
     "a URL such as http://prometheus:9090/api/v1/write"),
    ("remote_write_url", "http://:8480/insert/0/prometheus/api/v1/write", "it has no host"),
])
def test_invalid_urls_are_configuration_errors(tmp_path, key, url, expected):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, f"prometheus:\n  {key}: '{url}'\n")
    message = str(caught.value)
    assert f"prometheus.{key}: invalid URL '{url}': " in message and expected in message


def test_a_password_in_an_invalid_url_is_not_shown(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, "prometheus:\n  url: http://alice:s3cret@host:9090:99\n")
    assert "s3cret" not in str(caught.value)
    assert "http://alice:***@host:9090:99" in str(caught.value)


@pytest.mark.parametrize(("text", "url", "write_url"), [
    ("url: http://[::1]:9090/", "http://[::1]:9090", "http://[::1]:9090/api/v1/write"),
    ("url: https://mimir.example/prometheus", "https://mimir.example/prometheus",
     "https://mimir.example/prometheus/api/v1/write"),
    ("{url: 'http://vmselect:8481/select/0/prometheus', remote_write_url: "
     "'http://vminsert:8480/insert/0/prometheus/api/v1/write?extra_label=source=oa'}",
     "http://vmselect:8481/select/0/prometheus",
     "http://vminsert:8480/insert/0/prometheus/api/v1/write?extra_label=source=oa"),
])
def test_valid_urls_are_kept(tmp_path, text, url, write_url):
    if text.startswith("{"):
        settings = load(tmp_path, f"prometheus: {text}\n").prometheus
    else:
        settings = load(tmp_path, f"prometheus:\n  {text}\n").prometheus
    assert settings.url == url
    assert settings.effective_remote_write_url == write_url


@pytest.mark.parametrize(("text", "expected"), [
    ("headers: {'X Scope': a}", "prometheus.headers: 'X Scope' is not a valid HTTP header name"),
    ("read_headers: {X-Scope-OrgID: \"a\\nb\"}",
     "prometheus.read_headers: the value of header X-Scope-OrgID must be printable ASCII"),
    ("write_headers: {THANOS-TENANT: équipe}", "the value of header THANOS-TENANT must be"),
    ("tls_client_key: /etc/client.key", "tls_client_key is set without tls_client_cert"),
    ("max_response_bytes: 0", "prometheus.max_response_bytes: Input should be greater than"),
])
def test_invalid_transport_settings_are_refused(tmp_path, text, expected):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, f"prometheus:\n  {text}\n")
    assert expected in str(caught.value)


def test_a_file_without_prometheus_url_says_it_uses_the_default(tmp_path):
    assert load(tmp_path, "").defaulted_prometheus_url == "http://localhost:9090"
    assert load(tmp_path, "prometheus: {timeout: 5}\n").defaulted_prometheus_url is not None
    assert load(tmp_path, "prometheus: {url: 'http://localhost:9090'}\n"
                ).defaulted_prometheus_url is None
