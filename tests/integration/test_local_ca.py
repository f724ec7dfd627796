"""The local CA: files, passphrase, restart, concurrent first start, the issued profile."""

from __future__ import annotations

import multiprocessing
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodecert.backends.local.ca import LocalCA
from nodecert.core.errors import ConfigurationError
from nodecert.core.identity import Identity
from nodecert.core.keys import KeyType
from nodecert.core.values import Profile, SigningRequest


def _open(directory: Path, passphrase: str | None = None, **kwargs: object) -> LocalCA:
    return LocalCA.open_or_create(
        directory,
        organization="Acme",
        trust_domain="acme.test",
        passphrase=passphrase,
        **kwargs,  # type: ignore[arg-type]
    )


def test_created_once_and_reloaded(tmp_path: Path) -> None:
    first = _open(tmp_path / "ca")
    again = _open(tmp_path / "ca")
    assert first.certificate == again.certificate
    assert stat.S_IMODE((tmp_path / "ca" / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "ca").stat().st_mode) == 0o700
    # A new CA has two tiers: an issuing intermediate under a root.
    assert "Acme issuing CA" in first.certificate.subject.rfc4514_string()
    assert "Acme root CA" in first.root.subject.rfc4514_string()
    assert first.chain() == (first.certificate, first.root)


def test_passphrase_encrypts_the_key_at_rest(tmp_path: Path) -> None:
    _open(tmp_path / "ca", passphrase="correct horse")
    pem = (tmp_path / "ca" / "ca.key").read_bytes()
    with pytest.raises(TypeError, match="encrypted"):  # No password: cryptography refuses.
        serialization.load_pem_private_key(pem, password=None)
    key = serialization.load_pem_private_key(pem, password=b"correct horse")
    assert (
        key.public_key()
        == x509.load_pem_x509_certificate((tmp_path / "ca" / "ca.crt").read_bytes()).public_key()
    )
    with pytest.raises(ConfigurationError, match="NODECERT_CA_PASSPHRASE"):
        _open(tmp_path / "ca")
    with pytest.raises(ConfigurationError, match="wrong NODECERT_CA_PASSPHRASE"):
        _open(tmp_path / "ca", passphrase="wrong")
    assert _open(tmp_path / "ca", passphrase="correct horse").certificate is not None


def test_mismatched_files_are_refused(tmp_path: Path) -> None:
    _open(tmp_path / "a")
    _open(tmp_path / "b")
    (tmp_path / "a" / "ca.crt").write_bytes((tmp_path / "b" / "ca.crt").read_bytes())
    with pytest.raises(ConfigurationError, match="does not match"):
        _open(tmp_path / "a")


@pytest.mark.parametrize("key_type", [KeyType.EC_P384, KeyType.RSA_2048])
def test_other_ca_key_types(tmp_path: Path, key_type: KeyType) -> None:
    ca = _open(tmp_path / "ca", key_type=key_type)
    assert ca.certificate.signature_hash_algorithm is not None


def _start(directory: str, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    ca = _open(Path(directory))
    queue.put(ca.certificate.serial_number)


def test_workers_starting_together_share_one_ca(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_start, args=(str(tmp_path / "ca"), queue)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    serials = {queue.get(timeout=10) for _ in workers}
    assert len(serials) == 1


def _reference_tbs(ca: LocalCA, request: SigningRequest, serial: int) -> bytes:
    """The profile made with the chained CertificateBuilder methods, spelled out."""
    key = request.subject_public_key()
    is_rsa = isinstance(key, rsa.RSAPublicKey)
    node = request.profile is Profile.NODE
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] if node else []
    names: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(request.identity.spiffe_id("acme.test"))
    ]
    names += [x509.DNSName(n) for n in request.dns_names] if node else []
    usage = dict.fromkeys(
        (
            "content_commitment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(request.identity.subject("Acme"))
        .issuer_name(ca.certificate.subject)
        .public_key(key)
        .serial_number(serial)
        .not_valid_before(request.not_before)
        .not_valid_after(request.not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_encipherment=is_rsa, **usage), critical=True
        )
        .add_extension(
            x509.ExtendedKeyUsage([*usages, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.certificate.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    )
    return certificate.tbs_certificate_bytes


_KEYS = {
    "ec": ec.generate_private_key(ec.SECP256R1()).public_key(),
    "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key(),
}
_IDS = st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True).filter(lambda s: set(s) != {"."})


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    user=_IDS,
    node=_IDS,
    key=st.sampled_from(sorted(_KEYS)),
    profile=st.sampled_from(Profile),
    dns=st.lists(
        st.from_regex(r"[a-z0-9]{1,20}(\.[a-z0-9]{1,20}){0,3}", fullmatch=True), max_size=3
    ),
    offset_hours=st.integers(min_value=-14, max_value=14),
    lifetime_s=st.integers(min_value=60, max_value=400 * 86400),
)
def test_issued_certificates_are_byte_for_byte_the_chained_builders(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    user: str,
    node: str,
    key: str,
    profile: Profile,
    dns: list[str],
    offset_hours: int,
    lifetime_s: int,
) -> None:
    ca = _open(tmp_path / "ca")
    start = datetime(
        2026, 11, 27, 8, 30, 15, 123456, tzinfo=timezone(timedelta(hours=offset_hours))
    )
    request = SigningRequest(
        csr=None,
        identity=Identity(user_id=user, node_id=node),
        not_before=start,
        not_after=start + timedelta(seconds=lifetime_s),
        request_id="r",
        profile=profile,
        dns_names=tuple(dns) if profile is Profile.NODE else (),
        public_key=_KEYS[key],
    )
    serial = x509.random_serial_number()
    monkeypatch.setattr(x509, "random_serial_number", lambda: serial)
    issued = ca.issue(request).certificate
    assert issued.tbs_certificate_bytes == _reference_tbs(ca, request, serial)
    issued.verify_directly_issued_by(ca.certificate)


def test_naive_times_are_refused(tmp_path: Path) -> None:
    ca = _open(tmp_path / "ca")
    request = SigningRequest(
        csr=None,
        identity=Identity(user_id="alice", node_id="n1"),
        not_before=datetime(2026, 1, 1),
        not_after=datetime(2026, 1, 2),
        request_id="r",
        public_key=_KEYS["ec"],
    )
    with pytest.raises(ValueError, match="timezone-aware"):
        ca.issue(request)
