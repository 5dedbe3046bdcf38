"""Certificates made in the test: a CA, a server certificate for 127.0.0.1, client certificates."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(folder: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    crt, pem = folder / f"{stem}.crt", folder / f"{stem}.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    return crt, pem


class CA:
    def __init__(self, folder: Path, name: str) -> None:
        self.folder = folder
        self.key = _key()
        now = dt.datetime.now(dt.UTC)
        self.cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.path, _ = _write(folder, name, self.cert, self.key)

    def issue(self, cn: str, *, server: bool = False) -> tuple[Path, Path]:
        key = _key()
        now = dt.datetime.now(dt.UTC)
        builder = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(self.cert.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                                         else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]), critical=False)
        return _write(self.folder, cn, builder.sign(self.key, hashes.SHA256()), key)


def pki(folder: Path) -> dict[str, Path]:
    """A test PKI: our CA, a server certificate for 127.0.0.1/localhost and a client one (CN lab-central),
    and the same two from a rogue CA the peer does not trust. Keys are `<name>_key`."""
    (folder / "rogue").mkdir()
    ca, rogue = CA(folder, "wasla-test-ca"), CA(folder / "rogue", "rogue-ca")
    out = {"ca": ca.path}
    out["server"], out["server_key"] = ca.issue("localhost", server=True)
    out["lab"], out["lab_key"] = ca.issue("lab-central")
    out["rogue"], out["rogue_key"] = rogue.issue("lab-central")
    out["rogue_server"], out["rogue_server_key"] = rogue.issue("localhost", server=True)
    return out
