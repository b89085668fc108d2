"""What the adapter puts on the wire for tenants and mutual TLS, seen by a local stub
server (a real HTTP and TLS peer)."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from openanomaly.adapters.tsdb.prometheus import PrometheusAdapter
from openanomaly.adapters.tsdb.settings import PrometheusSettings
from openanomaly.domain.errors import ConfigError, TSDBUnavailable
from openanomaly.domain.series import Series
from tests.http_stub import Stub, serve_stub

SERIES = Series.of({"__name__": "up", "job": "a"}, [1000], [1.0])
EMPTY = json.dumps({"status": "success", "data": {"resultType": "matrix", "result": []}})
BUILDINFO = json.dumps({"status": "success", "data": {"version": "2.42.0"}})


@pytest.fixture
def stub() -> Iterator[Stub]:
    with serve_stub() as state:
        yield state


def test_read_headers_go_with_reads_and_write_headers_with_writes_only(stub):
    stub.answer(200, EMPTY).answer(204).answer(200, BUILDINFO)
    settings = PrometheusSettings(
        url=stub.url, max_retries=0,
        headers={"X-Scope-OrgID": "shared", "X-Team": "sre"},
        read_headers={"X-Scope-OrgID": "team-a|team-b"},
        # The protocol's own headers cannot be replaced by the user's.
        write_headers={"THANOS-TENANT": "team-a", "Content-Encoding": "identity"})
    with PrometheusAdapter(settings) as client:
        client.query_range("up", 0, 1000, 1000)
        client.write([SERIES])
        client.ping()

    query, write, ping = stub.seen
    assert (query.path, write.path, ping.path) == (
        "/api/v1/query_range", "/api/v1/write", "/api/v1/status/buildinfo")
    for read in (query, ping):
        assert read.headers["X-Scope-OrgID"] == "team-a|team-b"
        assert "THANOS-TENANT" not in read.headers
    assert write.headers["X-Scope-OrgID"] == "shared"
    assert write.headers["THANOS-TENANT"] == "team-a"
    assert write.headers["Content-Encoding"] == "snappy"
    assert all(seen.headers["X-Team"] == "sre" for seen in stub.seen)


# -- mutual TLS ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    client_bundle: Path  # certificate and key in one file
    encrypted_key: Path
    other_key: Path  # a key that does not match the client certificate


def _openssl(folder: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True,
                   timeout=60)


def _signed(folder: Path, name: str, subject: str, extensions: str = "") -> None:
    _openssl(folder, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject)
    extra = []
    if extensions:
        (folder / f"{name}.ext").write_text(extensions)
        extra = ["-extfile", f"{name}.ext"]
    _openssl(folder, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey",
             "ca.key", "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", *extra)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make test certificates")
    folder = tmp_path_factory.mktemp("pki")
    _openssl(folder, "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", "2", "-subj", "/CN=openanomaly test CA")
    _signed(folder, "server", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1\n")
    _signed(folder, "client", "/CN=openanomaly-client")
    _signed(folder, "other", "/CN=other")
    _openssl(folder, "pkey", "-in", "client.key", "-aes256", "-passout", "pass:secret",
             "-out", "client-encrypted.key")
    bundle = folder / "client-bundle.pem"
    bundle.write_text((folder / "client.pem").read_text() + (folder / "client.key").read_text())
    return Pki(folder / "ca.pem", folder / "server.pem", folder / "server.key",
               folder / "client.pem", folder / "client.key", bundle,
               folder / "client-encrypted.key", folder / "other.key")


@pytest.fixture
def mtls_stub(pki: Pki) -> Iterator[Stub]:
    """An HTTPS stub that refuses every client without a certificate from the CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    context.load_verify_locations(pki.ca)
    context.verify_mode = ssl.CERT_REQUIRED
    with serve_stub(context) as state:
        yield state


def mtls_settings(stub: Stub, pki: Pki, **fields) -> PrometheusSettings:
    return PrometheusSettings(url=stub.url, tls_ca_file=str(pki.ca), max_retries=0, **fields)


def client_name(seen) -> str:
    return dict(pair for part in seen.client_cert["subject"] for pair in part)["commonName"]


@pytest.mark.parametrize("key_in", ["own file", "certificate file"])
def test_client_certificate_goes_with_reads_and_writes(mtls_stub, pki, key_in):
    mtls_stub.answer(200, EMPTY).answer(204)
    files = ({"tls_client_cert": str(pki.client_cert), "tls_client_key": str(pki.client_key)}
             if key_in == "own file" else {"tls_client_cert": str(pki.client_bundle)})
    with PrometheusAdapter(mtls_settings(mtls_stub, pki, **files)) as client:
        assert client.query_range("up", 0, 1000, 1000) == []
        client.write([SERIES])
    assert [seen.path for seen in mtls_stub.seen] == ["/api/v1/query_range", "/api/v1/write"]
    assert all(client_name(seen) == "openanomaly-client" for seen in mtls_stub.seen)


def test_without_a_client_certificate_the_server_refuses_the_connection(mtls_stub, pki):
    with PrometheusAdapter(mtls_settings(mtls_stub, pki)) as client, pytest.raises(
            TSDBUnavailable, match=r"CERTIFICATE_REQUIRED.*Check tls_ca_file, tls_client_cert"):
        client.query_range("up", 0, 1000, 1000)
    assert mtls_stub.seen == []


@pytest.mark.parametrize(("files", "expected"), [
    ({"tls_client_cert": "missing.pem"}, "cannot load the client certificate 'missing.pem'"),
    ({"tls_client_cert": "client.pem", "tls_client_key": "other.key"},
     "KEY_VALUES_MISMATCH"),
    ({"tls_client_cert": "client.pem", "tls_client_key": "client-encrypted.key"},
     "prometheus.tls_client_key: the key is encrypted"),
    ({"tls_ca_file": "missing-ca.pem"}, "prometheus.tls_ca_file: cannot load 'missing-ca.pem'"),
])
def test_unusable_tls_files_are_configuration_errors(pki, files, expected):
    folder = pki.ca.parent
    paths = {key: str(folder / name) if (folder / name).exists() else name
             for key, name in files.items()}
    with pytest.raises(ConfigError, match=expected):
        PrometheusAdapter(PrometheusSettings(**paths))
