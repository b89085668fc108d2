"""Who may reach the model server: TLS, client certificates, and the refusal to serve
other machines without authentication."""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
from typing import Any

from openanomaly.config import ModelServerSettings
from openanomaly.domain.errors import ConfigError

log = logging.getLogger(__name__)


def uvicorn_tls(settings: ModelServerSettings) -> dict[str, Any]:
    """uvicorn's TLS options for the settings, empty without TLS. The files are loaded once
    here first, so that a missing or mismatched one ends the command with a message naming
    its setting instead of a traceback from inside the server."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return {}
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"model_server: cannot load the TLS certificate {settings.tls_cert_file} "
            f"(--tls-cert, tls_cert_file) with its key {settings.tls_key_file} (--tls-key, "
            f"tls_key_file): {exc}") from None
    options: dict[str, Any] = {"ssl_certfile": settings.tls_cert_file,
                               "ssl_keyfile": settings.tls_key_file}
    if settings.tls_client_ca_file is not None:
        try:
            context.load_verify_locations(cafile=settings.tls_client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"model_server: cannot load the client CA {settings.tls_client_ca_file} "
                f"(--tls-client-ca, tls_client_ca_file): {exc}") from None
        # Only certificates this CA signed are accepted, not the system's CAs.
        options |= {"ssl_ca_certs": settings.tls_client_ca_file,
                    "ssl_cert_reqs": ssl.CERT_REQUIRED}
    return options


def check_exposure(settings: ModelServerSettings, host: str, insecure: bool) -> None:
    """Refuse to serve other machines without a token or client certificates, unless the
    operator says so with --insecure."""
    authenticated = settings.token is not None or settings.tls_client_ca_file is not None
    if is_loopback(host):
        return
    if not authenticated and not insecure:
        raise ConfigError(
            f"model_server: host {host!r} is reachable from other machines, and neither "
            "model_server.token nor --tls-client-ca (tls_client_ca_file) authenticates "
            "clients: set one of them, listen on 127.0.0.1, or pass --insecure to serve "
            "without authentication")
    if not authenticated:
        log.warning("model server open to every client that reaches it (--insecure)",
                    extra={"host": host})
    elif settings.tls_cert_file is None:
        log.warning("the bearer token travels unencrypted; set --tls-cert and --tls-key",
                    extra={"host": host})


def is_loopback(host: str) -> bool:
    """True when every address ``host`` names is a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except (OSError, UnicodeError):
        return False  # listening on it fails next, with its own message
    return bool(addresses) and all(
        ipaddress.ip_address(str(address).split("%")[0]).is_loopback for address in addresses)
