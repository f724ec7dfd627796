"""The local CA on disk: file modes, passphrase, restart, concurrent first start."""

from __future__ import annotations

import multiprocessing
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from nodecert.backends.local import LocalCA
from nodecert.errors import ConfigurationError
from nodecert.keys import KeyType


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
    assert "Acme local CA" in first.certificate.subject.rfc4514_string()


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
