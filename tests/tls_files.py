"""Throwaway certificate authorities and certificates for TLS tests, made with the openssl
command: a CA, a server certificate for localhost and 127.0.0.1, and client certificates."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

_EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class Issued:
    cert: str
    key: str


@dataclass(frozen=True)
class Authority:
    folder: Path
    name: str
    cert: str
    key: str

    def issue(self, name: str, usage: str, alt_names: str | None = None) -> Issued:
        """A certificate this CA signs, for ``usage`` serverAuth or clientAuth."""
        key, csr, cert = (str(self.folder / f"{name}.{ext}") for ext in ("key", "csr", "pem"))
        _openssl("req", *_EC_KEY, "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
        extensions = self.folder / f"{name}.ext"
        lines = [f"extendedKeyUsage={usage}", "basicConstraints=critical,CA:FALSE",
                 "keyUsage=critical,digitalSignature", "subjectKeyIdentifier=hash",
                 "authorityKeyIdentifier=keyid"]
        if alt_names:
            lines.append(f"subjectAltName={alt_names}")
        extensions.write_text("\n".join(lines) + "\n")
        _openssl("x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key,
                 "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", str(extensions))
        return Issued(cert, key)


def authority(folder: Path, name: str) -> Authority:
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = str(folder / f"{name}.pem"), str(folder / f"{name}.key")
    _openssl("req", "-x509", *_EC_KEY, "-keyout", key, "-out", cert, "-days", "2",
             "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return Authority(folder, name, cert, key)


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)
