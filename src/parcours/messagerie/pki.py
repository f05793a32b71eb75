"""A private test PKI shaped like IGC-Santé, for the demo and the tests.

In production an operator's server certificate ("SERV SSL" profile) and its applications'
organisation certificates are issued by IGC-Santé; the trust anchors of the relay are the
IGC-Santé chain and nothing else (reference ``mssante.md`` §1.3). The demo cannot use real
certificates, so parcours generates a root ("AC RACINE TEST IGC-SANTE"), an intermediate
("AC TEST IGC-SANTE ORGANISATIONS") and leaves whose subject has the liste blanche's DN shape
``CN=<host>,OU=<idNat_Struct>,O=<operator>,ST=<Département (NN)>,C=FR``. Server leaves carry
both serverAuth and clientAuth, as the SERV SSL profile does, because the same certificate
authenticates the operator when it relays (client side of the mutual TLS).

RSA 2048 / SHA-256 like IGC-Santé's server keys.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROOT_CN = "AC RACINE TEST IGC-SANTE"
INTERMEDIATE_CN = "AC TEST IGC-SANTE ORGANISATIONS"
_ORG = "PARCOURS PKI DE TEST"

# Liste blanche order: CN, OU, O, ST, C (RFC 2253 writes the most specific RDN first).
_DN_ORDER = (
    ("CN", NameOID.COMMON_NAME),
    ("OU", NameOID.ORGANIZATIONAL_UNIT_NAME),
    ("O", NameOID.ORGANIZATION_NAME),
    ("L", NameOID.LOCALITY_NAME),
    ("ST", NameOID.STATE_OR_PROVINCE_NAME),
    ("C", NameOID.COUNTRY_NAME),
)


def liste_blanche_dn(name: x509.Name) -> str:
    """The subject as the liste blanche writes it (``CN=..,OU=..,O=..,ST=..,C=FR``)."""
    parts = []
    for label, oid in _DN_ORDER:
        for attribute in name.get_attributes_for_oid(oid):
            parts.append(f"{label}={attribute.value}")
    return ",".join(parts)


def _name(cn: str, ou: str | None, o: str, st: str | None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COUNTRY_NAME, "FR")]
    if st:
        attributes.append(x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, st))
    attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, o))
    if ou:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attributes)


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_key(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class Issued:
    """A leaf written to disk: ``cert`` holds the leaf then the intermediate (the chain a TLS
    peer must present), ``key`` the private key (mode 0600)."""

    cert: Path
    key: Path
    dn: str
    certificate: x509.Certificate

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)


class TestPki:
    """Root and intermediate kept under ``directory`` (created on first use, reused after), and
    a ``ca.pem`` bundle that plays the IGC-Santé chain for every operator of the demo."""

    __test__ = False  # not a pytest class, whatever its name says

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.bundle = directory / "ca.pem"
        if self.bundle.exists() and (directory / "intermediate.key").exists():
            self._ca_cert = x509.load_pem_x509_certificate(
                (directory / "intermediate.pem").read_bytes()
            )
            loaded = serialization.load_pem_private_key(
                (directory / "intermediate.key").read_bytes(), password=None
            )
            assert isinstance(loaded, rsa.RSAPrivateKey)
            self._ca_key = loaded
        else:
            self._create()

    def _create(self) -> None:
        now = dt.datetime.now(dt.UTC)
        root_key, ca_key = _key(), _key()
        root_name = _name(ROOT_CN, None, _ORG, None)
        root = (
            x509.CertificateBuilder()
            .subject_name(root_name)
            .issuer_name(root_name)
            .public_key(root_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(_ca_usage(), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False
            )
            .sign(root_key, hashes.SHA256())
        )
        ca = (
            x509.CertificateBuilder()
            .subject_name(_name(INTERMEDIATE_CN, None, _ORG, None))
            .issuer_name(root_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=3000))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_ca_usage(), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()),
                critical=False,
            )
            .sign(root_key, hashes.SHA256())
        )
        # The root's key is not kept: nothing but the intermediate ever signs again.
        (self.directory / "root.pem").write_bytes(_pem(root))
        (self.directory / "intermediate.pem").write_bytes(_pem(ca))
        _write_secret(self.directory / "intermediate.key", _pem_key(ca_key))
        self.bundle.write_bytes(_pem(root) + _pem(ca))
        self._ca_cert, self._ca_key = ca, ca_key

    def issue(
        self,
        name: str,
        *,
        cn: str,
        ou: str,
        o: str,
        st: str = "Ille-et-Vilaine (35)",
        dns_names: tuple[str, ...] = (),
        server: bool = True,
        valid_days: float = 825,
        not_before: dt.datetime | None = None,
    ) -> Issued:
        """A leaf signed by the intermediate; ``server`` adds serverAuth and the SANs (the
        loopback address too, so the demo's operators can reach each other on 127.0.0.1)."""
        key = _key()
        start = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
        if server:
            usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn, ou, o, st))
            .issuer_name(self._ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=valid_days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=True,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._ca_key.public_key()),
                critical=False,
            )
        )
        if server:
            alt: list[x509.GeneralName] = [x509.DNSName(d) for d in (cn, *dns_names)]
            alt.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
            builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        cert = builder.sign(self._ca_key, hashes.SHA256())
        cert_path, key_path = self.directory / f"{name}.crt", self.directory / f"{name}.key"
        cert_path.write_bytes(_pem(cert) + _pem(self._ca_cert))
        _write_secret(key_path, _pem_key(key))
        return Issued(cert_path, key_path, liste_blanche_dn(cert.subject), cert)

    def load(self, name: str) -> Issued | None:
        cert_path, key_path = self.directory / f"{name}.crt", self.directory / f"{name}.key"
        if not (cert_path.exists() and key_path.exists()):
            return None
        cert = x509.load_pem_x509_certificates(cert_path.read_bytes())[0]
        return Issued(cert_path, key_path, liste_blanche_dn(cert.subject), cert)


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _write_secret(path: Path, data: bytes) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_bytes(data)
