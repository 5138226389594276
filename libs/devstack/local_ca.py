"""A certificate authority of the local stack's own, made at first start: TLS for NATS on this machine.

Issue 13 asks for TLS on every NATS link; in production the operator's CA (cert-manager, the
NATS chart) signs the servers' certificates. Locally nobody has one, so `LocalCA(directory)`
makes an EC P-256 CA once (`ca.pem`, `ca.key` 0600, kept like the other keys of `.landfall/`)
and signs server certificates for the loopback names with it. Services then trust exactly this
CA through `LANDFALL_NATS_CA_FILE`, not the system's store.

Subtle parts:
- The CA key never leaves the directory; a server certificate is made again when it is missing
  or expires within a week, and always by the same CA, so clients that pinned `ca.pem` keep
  working across restarts.
- The server certificate names both `localhost` and the address `127.0.0.1` (an IP SAN):
  nats-py verifies the host it connected to, and the stack's URLs use the address.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
SERVER_DAYS = 365
RENEW_BEFORE = datetime.timedelta(days=7)


@dataclass(frozen=True)
class ServerCert:
    """A server's certificate and key files (PEM), as nats-server's `tls {}` block takes them."""

    cert_file: Path
    key_file: Path


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class LocalCA:
    """The CA in `directory` (made on first use); `server(name)` a certificate it signed."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.ca_file = directory / "ca.pem"
        self._key_file = directory / "ca.key"
        if not (self.ca_file.exists() and self._key_file.exists()):
            self._make_ca()
        key = serialization.load_pem_private_key(self._key_file.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TypeError(f"{self._key_file} is not an EC key")
        self._key = key
        self._cert = x509.load_pem_x509_certificate(self.ca_file.read_bytes())

    def _make_ca(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Landfall local stack CA")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        _write_private(self._key_file, _key_pem(key))
        self.ca_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def server(self, name: str, *, hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")) -> ServerCert:
        """`name.pem` / `name.key` for `hosts` (DNS names and IP addresses), made again near expiry."""
        cert_file, key_file = self.directory / f"{name}.pem", self.directory / f"{name}.key"
        now = datetime.datetime.now(datetime.UTC)
        if cert_file.exists() and key_file.exists():
            have = x509.load_pem_x509_certificate(cert_file.read_bytes())
            if have.issuer == self._cert.subject and have.not_valid_after_utc - now > RENEW_BEFORE:
                return ServerCert(cert_file, key_file)
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )
        _write_private(key_file, _key_pem(key))
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return ServerCert(cert_file, key_file)
