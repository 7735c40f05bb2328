"""Throwaway certificates for the local stack's TLS listeners (tests, drills, the secured broker).

A private CA signs one server certificate (for ``localhost`` and ``127.0.0.1``) and one client
certificate (for mTLS). Everything is PEM: keys are unencrypted PKCS#8, except a second copy of
the client key encrypted with :attr:`Pki.client_key_password` to test key passwords. Nothing here
runs in production; it needs the ``cryptography`` package, from the ``[local]`` extra.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

CLIENT_KEY_PASSWORD = "client-key-pass"  # noqa: S105 - a throwaway test key's password


@dataclass(frozen=True)
class Pki:
    """Paths of the PEM files :func:`make_pki` wrote."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    server_keystore: Path  # server key + certificate chain in one PEM (Kafka's PEM keystore)
    client_cert: Path
    client_key: Path
    client_key_encrypted: Path
    client_key_password: str = CLIENT_KEY_PASSWORD


def make_pki(folder: Path, common_name: str = "leadstream-local") -> Pki:
    """Write a CA, a server certificate for localhost/127.0.0.1 and a client certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    not_before, not_after = now - dt.timedelta(hours=1), now + dt.timedelta(days=30)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    def pem_key(k: ec.EllipticCurvePrivateKey, password: str | None = None) -> bytes:
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password.encode())
            if password
            else serialization.NoEncryption()
        )
        return k.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )

    def pem_cert(c: x509.Certificate) -> bytes:
        return c.public_bytes(serialization.Encoding.PEM)

    ca_key = key()
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name(f"{common_name} CA"))
        .issuer_name(name(f"{common_name} CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(cn: str, usage: x509.ObjectIdentifier, server: bool) -> tuple[bytes, bytes, object]:
        k = key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(ca_cert.subject)
            .public_key(k.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
        cert = builder.sign(ca_key, hashes.SHA256())
        return pem_cert(cert), pem_key(k), k

    server_pem, server_key_pem, _ = leaf("localhost", ExtendedKeyUsageOID.SERVER_AUTH, True)
    client_pem, client_key_pem, client_k = leaf(
        f"{common_name}-client", ExtendedKeyUsageOID.CLIENT_AUTH, False
    )

    pki = Pki(
        ca_cert=folder / "ca.pem",
        ca_key=folder / "ca.key",
        server_cert=folder / "server.pem",
        server_key=folder / "server.key",
        server_keystore=folder / "server-keystore.pem",
        client_cert=folder / "client.pem",
        client_key=folder / "client.key",
        client_key_encrypted=folder / "client-encrypted.key",
    )
    pki.ca_cert.write_bytes(pem_cert(ca_cert))
    pki.ca_key.write_bytes(pem_key(ca_key))
    pki.server_cert.write_bytes(server_pem + pem_cert(ca_cert))
    pki.server_key.write_bytes(server_key_pem)
    pki.server_keystore.write_bytes(server_key_pem + server_pem + pem_cert(ca_cert))
    pki.client_cert.write_bytes(client_pem)
    pki.client_key.write_bytes(client_key_pem)
    pki.client_key_encrypted.write_bytes(
        pem_key(client_k, CLIENT_KEY_PASSWORD)  # type: ignore[arg-type]  # ec key from leaf()
    )
    for secret in (pki.ca_key, pki.server_key, pki.client_key, pki.client_key_encrypted):
        secret.chmod(0o600)
    return pki
