"""``serve-model`` over TLS, with and without client certificates, and its refusal to serve
other machines unauthenticated; certificates come from throwaway CAs made here."""

import os
import ssl
import subprocess

import httpx
import numpy as np
import pytest

from openanomaly.adapters.models.local_engine import LocalModelEngine
from openanomaly.adapters.models.remote_engine import RemoteModelEngine
from openanomaly.adapters.models.settings import RemoteSettings, default_models
from openanomaly.domain.errors import ConfigError, ModelError
from openanomaly.domain.forecast import ForecastRequest
from tests.e2e.test_model_server_process import CLI, TOKEN, ServerProcess
from tests.tls_files import authority

QUANTILES = (0.1, 0.5, 0.9)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    ca = authority(folder, "test-ca")
    rogue = authority(folder, "rogue-ca")
    return {
        "ca": ca.cert,
        "server": ca.issue("server", "serverAuth", "DNS:localhost,IP:127.0.0.1"),
        "client": ca.issue("client", "clientAuth"),
        "rogue_client": rogue.issue("rogue-client", "clientAuth"),
    }


def trusting(pki, client=None):
    context = ssl.create_default_context(cafile=pki["ca"])
    if client is not None:
        context.load_cert_chain(client.cert, client.key)
    return context


@pytest.fixture(scope="module")
def mtls_server(tmp_path_factory, pki):
    """Every interface, no token: client certificates are the authentication."""
    server = pki["server"]
    process = ServerProcess(
        tmp_path_factory.mktemp("mtls"), ["seasonal_naive"], token=None,
        args=("--host", "0.0.0.0", "--tls-cert", server.cert, "--tls-key", server.key,
              "--tls-client-ca", pki["ca"]),
        verify=trusting(pki, pki["client"]))
    yield process
    process.stop()


def request():
    t = np.arange(600, dtype=np.float64)
    return ForecastRequest(np.stack([50 + 10 * np.sin(t / 48), 20 + t / 100]), 12, QUANTILES,
                           300.0)


def test_a_remote_model_with_a_client_certificate_forecasts_over_tls(mtls_server, pki):
    assert mtls_server.url.startswith("https://127.0.0.1:")
    settings = RemoteSettings(url=mtls_server.url, remote_model="seasonal_naive",
                              tls_ca_file=pki["ca"], tls_client_cert=pki["client"].cert,
                              tls_client_key=pki["client"].key)
    engine = LocalModelEngine({"remote": settings})
    try:
        there = engine.forecast("remote", request())
    finally:
        engine.close()
    here = LocalModelEngine(default_models()).forecast("seasonal_naive", request())
    np.testing.assert_array_equal(there.values, here.values)


@pytest.mark.parametrize("client", [None, "rogue_client"])
def test_clients_without_a_certificate_of_the_ca_are_refused(mtls_server, pki, client):
    issued = pki[client] if client else None
    with RemoteModelEngine(mtls_server.url, max_retries=0, tls_ca_file=pki["ca"],
                           tls_client_cert=issued.cert if issued else None,
                           tls_client_key=issued.key if issued else None) as engine, \
            pytest.raises(ModelError) as failure:
        engine.forecast("seasonal_naive", request())
    # The TLS handshake fails (or the server closes the connection): no HTTP answer.
    assert "failed 1 attempt(s)" in str(failure.value)
    assert "HTTP" not in str(failure.value).split("last error:")[1]


def test_a_client_that_does_not_trust_the_servers_ca_refuses_it(mtls_server, pki):
    client = pki["client"]
    with RemoteModelEngine(mtls_server.url, max_retries=0, tls_client_cert=client.cert,
                           tls_client_key=client.key) as engine, \
            pytest.raises(ModelError, match="CERTIFICATE_VERIFY_FAILED"):
        engine.list_models()
    with pytest.raises(httpx.TransportError):
        httpx.get(mtls_server.url.replace("https://", "http://") + "/healthz", timeout=5)


def test_token_and_tls_without_client_certificates(tmp_path, pki):
    server = pki["server"]
    process = ServerProcess(tmp_path, [], args=("--tls-cert", server.cert, "--tls-key",
                                                server.key), verify=trusting(pki))
    try:
        with RemoteModelEngine(process.url, token=TOKEN, tls_ca_file=pki["ca"]) as engine:
            assert engine.forecast("seasonal_naive", request()).values.shape == (2, 12, 3)
        with RemoteModelEngine(process.url, token="wrong", tls_ca_file=pki["ca"]) as engine, \
                pytest.raises(ModelError, match="HTTP 401"):
            engine.list_models()
    finally:
        process.stop()
    assert 'tls=True' in process.output() and "client_certs=False" in process.output()


def test_unreadable_client_tls_files_are_a_config_error(tmp_path, pki):
    with pytest.raises(ConfigError, match=r"tls_ca_file .*missing\.pem: cannot load"):
        RemoteModelEngine("https://127.0.0.1:1", tls_ca_file=str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError, match=r"tls_client_cert .* cannot load the client certif"):
        RemoteModelEngine("https://127.0.0.1:1", tls_client_cert=pki["client"].cert,
                          tls_client_key=pki["server"].key)  # not its key


def serve_model(tmp_path, *args, token=None):
    config = tmp_path / "config.yaml"
    config.write_text("model_server:\n" + (f"  token: {token}\n" if token else "  {}\n"))
    return subprocess.run([*CLI, "--config", str(config), "serve-model", "--port", "0", *args],
                          capture_output=True, text=True, timeout=60, env={**os.environ})


@pytest.mark.parametrize(("args", "message"), [
    (("--host", "0.0.0.0"), "error: model_server: host '0.0.0.0' is reachable from other "
     "machines, and neither model_server.token nor --tls-client-ca (tls_client_ca_file) "
     "authenticates clients: set one of them, listen on 127.0.0.1, or pass --insecure"),
    (("--tls-cert", "server.pem"), "error: serve-model: set both tls_cert_file and "
     "tls_key_file (--tls-cert and --tls-key), or neither"),
    (("--tls-client-ca", "ca.pem"), "error: serve-model: tls_client_ca_file (--tls-client-ca) "
     "needs TLS"),
    (("--tls-cert", "missing.pem", "--tls-key", "missing.key"),
     "error: model_server: cannot load the TLS certificate missing.pem (--tls-cert, "
     "tls_cert_file)"),
])
def test_serve_model_refuses_to_start_with_exit_2(tmp_path, args, message):
    finished = serve_model(tmp_path, *args)
    assert finished.returncode == 2, finished.stderr
    assert message in finished.stderr
    assert "Traceback" not in finished.stderr


def test_insecure_serves_every_interface_without_authentication(tmp_path):
    process = ServerProcess(tmp_path, [], token=None, args=("--host", "0.0.0.0", "--insecure"))
    try:
        models = httpx.get(f"{process.url}/v1/models", timeout=10)
        assert models.status_code == 200
    finally:
        process.stop()
    assert "model server open to every client that reaches it (--insecure)" in process.output()
