"""TLS of the Prometheus adapter: which server certificates it trusts, and the client
certificate it presents (mutual TLS) on reads and writes."""

from __future__ import annotations

import ssl

import httpx

from openanomaly.adapters.tsdb.settings import PrometheusSettings
from openanomaly.domain.errors import ConfigError


def _no_key_password() -> str:
    # Without this, OpenSSL would ask for the password on the terminal and hang a service.
    raise ConfigError("prometheus.tls_client_key: the key is encrypted; give an unencrypted "
                      "PEM key (openssl pkey -in KEY -out KEY.plain), readable only by this "
                      "service")


def tls_context(settings: PrometheusSettings) -> ssl.SSLContext:
    """The TLS context of every request: CA, verification and client certificate.

    Raises ConfigError naming the setting whose file cannot be used.
    """
    try:
        if settings.tls_insecure_skip_verify:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif settings.tls_ca_file:
            context = ssl.create_default_context(cafile=settings.tls_ca_file)
        else:
            context = httpx.create_ssl_context()  # httpx's default trust store (certifi)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"prometheus.tls_ca_file: cannot load {settings.tls_ca_file!r} as "
                          f"PEM CA certificates: {exc}") from None
    if settings.tls_client_cert:
        try:
            context.load_cert_chain(settings.tls_client_cert, settings.tls_client_key,
                                    password=_no_key_password)
        except (OSError, ssl.SSLError) as exc:
            key = settings.tls_client_key or settings.tls_client_cert
            raise ConfigError(
                f"prometheus.tls_client_cert/tls_client_key: cannot load the client "
                f"certificate {settings.tls_client_cert!r} with the key {key!r} "
                f"(both PEM, the key unencrypted and matching the certificate): {exc}"
            ) from None
    return context
