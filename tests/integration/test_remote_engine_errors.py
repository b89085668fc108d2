"""What the remote engine says when it fails: no credential of its URL (or of the server's
answer) in any message or log line, and refusals that say retrying cannot help."""

import logging
import socket

import numpy as np
import pytest

from openanomaly.adapters.models.remote_engine import RemoteModelEngine
from openanomaly.domain.errors import ModelError, ModelRejected, is_retryable
from openanomaly.domain.forecast import ForecastRequest
from tests.integration.test_model_server import FaultyServer

SECRETS = ("s3cret-pw", "hunter22", "tok-abc-123")


def request():
    return ForecastRequest(np.ones((1, 20)), 4, (0.5,), 60.0)


def closed_port():
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return sock.getsockname()[1]


def shown(failure, caplog):
    return str(failure.value) + "\n" + "\n".join(
        f"{r.getMessage()} {r.__dict__}" for r in caplog.records)


def test_url_credentials_are_in_no_error_and_no_log_line(caplog):
    port = closed_port()
    caplog.set_level(logging.WARNING, logger="openanomaly.adapters.models.remote_engine")
    url = f"http://model-user:s3cret-pw@127.0.0.1:{port}"
    with RemoteModelEngine(url, max_retries=1, backoff=0.01) as engine, \
            pytest.raises(ModelError) as failure:
        engine.forecast("m", request())
    text = shown(failure, caplog)
    assert "model server http://model-user:***@127.0.0.1:" in str(failure.value)
    assert "ConnectError" in str(failure.value)
    assert any("retrying" in r.getMessage() for r in caplog.records)
    assert not any(secret in text for secret in SECRETS), text


@pytest.mark.parametrize("status", [500, 422])
def test_credentials_quoted_by_the_server_are_masked(caplog, status):
    caplog.set_level(logging.WARNING, logger="openanomaly.adapters.models.remote_engine")
    answer = (b'{"error": "upstream http://admin:hunter22@10.0.0.1/x?token=tok-abc-123 '
              b'failed"}')
    stub = FaultyServer([(status, answer)])
    try:
        with RemoteModelEngine(f"http://u:s3cret-pw@{stub.url.removeprefix('http://')}",
                               max_retries=1, backoff=0.01) as engine, \
                pytest.raises(ModelError) as failure:
            engine.forecast("m", request())
    finally:
        stub.close()
    text = shown(failure, caplog)
    assert "upstream http://admin:***@10.0.0.1/x?token=*** failed" in str(failure.value)
    assert not any(secret in text for secret in SECRETS), text


@pytest.mark.parametrize(("status", "retried"), [(413, False), (422, False), (401, False),
                                                 (504, True), (503, True)])
def test_refusals_are_not_retryable_and_server_errors_are(status, retried):
    stub = FaultyServer([(status, b'{"error": "no"}')])
    try:
        with RemoteModelEngine(stub.url, max_retries=1, backoff=0.01) as engine, \
                pytest.raises(ModelError) as failure:
            engine.forecast("m", request())
    finally:
        stub.close()
    assert stub.seen == (2 if retried else 1)
    assert isinstance(failure.value, ModelRejected) is not retried
    # A scheduler retries a run only where the same request may succeed later.
    assert is_retryable(failure.value) is retried
