"""A throw-away certificate authority for mutual-TLS tests (F-120), made with ``cryptography``.

:class:`Pki` writes PEM files into a directory: CA certificates, server certificates
for 127.0.0.1/localhost and client certificates, each replaced in one step (as a
Kubernetes secret volume or cert-manager does), so a process watching the files sees
either the old or the new certificate.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CertificateAuthority", "Pki"]


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    name: str
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (builder.serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1)))


class Pki:
    """Certificates under ``directory`` (see the module docstring)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def ca(self, name: str) -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        usage = x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                              content_commitment=False, key_encipherment=False,
                              data_encipherment=False, key_agreement=False,
                              encipher_only=False, decipher_only=False)
        cert = (_validity(x509.CertificateBuilder()).subject_name(subject)
                .issuer_name(subject).public_key(key.public_key())
                .add_extension(x509.BasicConstraints(ca=True, path_length=None),
                               critical=True)
                .add_extension(usage, critical=True).sign(key, hashes.SHA256()))
        return CertificateAuthority(name, cert, key)

    def write(self, name: str, data: bytes) -> Path:
        """Replace ``directory/name`` with ``data`` in one step."""
        path = self.directory / name
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return path

    def issue(self, ca: CertificateAuthority, name: str, *, server: bool,
              cert_file: str | None = None, key_file: str | None = None) -> tuple[Path, Path]:
        """A certificate ``name`` signed by ``ca`` (server: for 127.0.0.1 and localhost),
        written as ``cert_file`` and ``key_file`` (default ``name.pem``, ``name.key``; the
        key first, so until the certificate follows the pair does not match and a watcher
        keeps its previous one); returns (certificate path, key path)."""
        key = ec.generate_private_key(ec.SECP256R1())
        purpose = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (_validity(x509.CertificateBuilder())
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                   .issuer_name(ca.cert.subject).public_key(key.public_key())
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                  critical=True)
                   .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False))
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(IPv4Address("127.0.0.1")), x509.DNSName("localhost")]),
                critical=False)
        cert = builder.sign(ca.key, hashes.SHA256())
        key_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        key_path = self.write(key_file or f"{name}.key", key_pem)
        return self.write(cert_file or f"{name}.pem",
                          cert.public_bytes(serialization.Encoding.PEM)), key_path
