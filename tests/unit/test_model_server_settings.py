"""The model server's settings: limits per model, TLS files that go together, and which
hosts count as this machine only; and the TLS settings of a remote model."""

import pytest
from pydantic import ValidationError

from openanomaly.adapters.models.settings import RemoteSettings
from openanomaly.config import AppConfig, ModelServerSettings
from openanomaly.entrypoints.model_server.errors import ApiError
from openanomaly.entrypoints.model_server.limits import RequestLimits
from openanomaly.entrypoints.model_server.security import is_loopback


def test_defaults_are_the_documented_limits():
    settings = ModelServerSettings()
    assert (settings.max_horizon, settings.max_context_steps, settings.max_context_values,
            settings.request_timeout) == (2048, 16384, 8_388_608, 50.0)


def test_a_models_own_limits_override_the_server_wide_ones_key_by_key():
    settings = ModelServerSettings(max_horizon=500, request_timeout=10,
                                   per_model={"fracast": {"max_horizon": 96}})
    own = RequestLimits.of(settings, "fracast")
    assert (own.max_horizon, own.horizon_setting) == (
        96, "model_server.per_model.fracast.max_horizon")
    assert (own.request_timeout, own.timeout_setting) == (10, "model_server.request_timeout")
    other = RequestLimits.of(settings, "seasonal_naive")
    assert (other.max_horizon, other.horizon_setting) == (500, "model_server.max_horizon")


def test_limits_are_inclusive():
    limits = RequestLimits.of(ModelServerSettings(max_horizon=10, max_context_steps=100,
                                                  max_context_values=300), "m")
    limits.check_horizon(10)
    limits.check_context(3, 100)
    for check, args, status in ((limits.check_horizon, (11,), 422),
                                (limits.check_context, (1, 101), 413),
                                (limits.check_context, (4, 100), 413)):
        with pytest.raises(ApiError) as refused:
            check(*args)
        assert refused.value.status == status


def test_per_model_limits_must_name_a_configured_model():
    with pytest.raises(ValidationError, match=r"model_server\.per_model: unknown model 'fracst'"):
        AppConfig.model_validate({"model_server": {"per_model": {"fracst": {"max_horizon": 9}}}})


@pytest.mark.parametrize(("fields", "message"), [
    ({"tls_cert_file": "c.pem"}, "set both tls_cert_file and tls_key_file"),
    ({"tls_key_file": "k.pem"}, "set both tls_cert_file and tls_key_file"),
    ({"tls_client_ca_file": "ca.pem"}, "tls_client_ca_file (--tls-client-ca) needs TLS"),
])
def test_tls_files_of_the_server_go_together(fields, message):
    with pytest.raises(ValidationError) as refused:
        ModelServerSettings(**fields)
    assert message in str(refused.value)


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("0.0.0.0", False), ("::", False), ("", False),
    ("10.1.2.3", False), ("no-such-host.invalid", False),
])
def test_which_hosts_only_this_machine_reaches(host, loopback):
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(("fields", "message"), [
    ({"url": "http://gpu:8501", "tls_ca_file": "ca.pem"}, "tls_* settings need an https:// url"),
    ({"url": "https://gpu:8501", "tls_client_cert": "c.pem"},
     "set both tls_client_cert and tls_client_key"),
    ({"url": "ftp://u:pw@gpu"}, "url must start with http:// or https://, got 'ftp://u:***@gpu'"),
])
def test_remote_tls_settings_are_checked(fields, message):
    with pytest.raises(ValidationError) as refused:
        RemoteSettings(**fields)
    assert message in str(refused.value)
    assert ":pw@" not in str(refused.value).split("input_value")[0]
