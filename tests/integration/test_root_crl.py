"""``nodecert ca root-crl``: the root revokes an intermediate retired at once.

After an emergency rotation the access decision refuses the old intermediate's
certificates, but a relying party checking TLS against the root alone does not ask it.
The root's CRL closes that: it lists the old intermediate (keyCompromise), passes pkilint
and ``openssl crl -verify``, and ``openssl verify -crl_check`` then refuses the old
intermediate while the new one passes. Failure paths first.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from nodecert.backends.local.home import key_id
from nodecert.cli import main
from nodecert.core.keys import KeyType, generate_private_key

from ..conftest import Env
from .test_two_tier import _lint_crl, _one_tier_home


@pytest.fixture
def home(env: Env, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = env.service.settings.home
    for name in ("NODECERT_TOKEN", "NODECERT_SERVER", "NODECERT_CA_PASSPHRASE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NODECERT_HOME", str(home))
    return home


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def test_a_root_crl_needs_a_root_and_its_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from nodecert.backends.local.hierarchy import key_bytes

    one_tier = tmp_path / "old"
    _one_tier_home(one_tier)
    _ledger(one_tier)
    monkeypatch.setenv("NODECERT_HOME", str(one_tier))
    monkeypatch.delenv("NODECERT_CA_PASSPHRASE", raising=False)
    wrong = tmp_path / "wrong.key"
    wrong.write_bytes(key_bytes(generate_private_key(KeyType.EC_P256), None))
    assert main(["ca", "root-crl", "--root-key", str(wrong)]) == 1
    assert "no root" in capsys.readouterr().err
    two_tier = tmp_path / "new"
    monkeypatch.setenv("NODECERT_HOME", str(two_tier))
    offline = tmp_path / "root.key"
    assert main(["ca", "init", "--root-key-out", str(offline)]) == 0
    _ledger(two_tier)
    capsys.readouterr()
    assert main(["ca", "root-crl"]) == 1
    assert "--root-key" in capsys.readouterr().err
    assert main(["ca", "root-crl", "--root-key", str(wrong)]) == 1
    assert "not the root's key" in capsys.readouterr().err
    assert main(["ca", "root-crl", "--root-key", str(offline), "--days", "0"]) == 1
    assert not (two_tier / "ca" / "root.crl").exists()
    # With nothing retired, the root's CRL is empty, and valid.
    assert main(["ca", "root-crl", "--root-key", str(offline)]) == 0
    crl = x509.load_der_x509_crl((two_tier / "ca" / "root.crl").read_bytes())
    assert len(crl) == 0


def test_the_root_revokes_the_intermediate_retired_at_once_and_never_forgets_it(
    env: Env, home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env.add_node("n1", "alice")
    env.issue("alice", "n1", keyType="ec-p256")
    planned = env.service.authority.ca.chain()[0]
    root = env.service.authority.ca.root
    assert main(["ca", "rotate"]) == 0  # A planned rotation: never on the root's CRL.
    assert main(["ca", "rotate", "--retire-now"]) == 0
    leaked = _retired_now(home)
    current = x509.load_pem_x509_certificate((home / "ca" / "ca.crt").read_bytes())
    out = tmp_path / "root.crl"
    assert main(["ca", "root-crl", "--out", str(out)]) == 0
    assert format(leaked.serial_number, "x") in capsys.readouterr().out
    der = (home / "ca" / "root.crl").read_bytes()
    assert out.read_bytes() == der
    crl = x509.load_der_x509_crl(der)
    assert crl.issuer == root.subject
    assert crl.is_signature_valid(root.public_key())  # type: ignore[arg-type]
    entry = crl.get_revoked_certificate_by_serial_number(leaked.serial_number)
    assert entry is not None
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason is x509.ReasonFlags.key_compromise
    assert crl.get_revoked_certificate_by_serial_number(planned.serial_number) is None
    assert crl.get_revoked_certificate_by_serial_number(current.serial_number) is None
    assert _lint_crl(der, tmp_path) == ""
    if shutil.which("openssl"):
        (tmp_path / "root.pem").write_bytes(_pem(root))
        checked = _openssl(
            tmp_path, "crl", "-inform", "DER", "-in", "root.crl", "-noout", "-CAfile", "root.pem"
        )
        assert checked.returncode == 0 and "verify OK" in checked.stderr + checked.stdout
        for certificate, name in ((leaked, "leaked.pem"), (current, "current.pem")):
            (tmp_path / name).write_bytes(_pem(certificate))
        (tmp_path / "root-crl.pem").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        verify = ["verify", "-crl_check", "-CAfile", "root.pem", "-CRLfile", "root-crl.pem"]
        refused = _openssl(tmp_path, *verify, "leaked.pem")
        assert refused.returncode != 0 and "revoked" in refused.stdout + refused.stderr
        assert _openssl(tmp_path, *verify, "current.pem").returncode == 0
    # Pruned from the home, it stays revoked: the previous CRL's entries are kept, and the
    # CRL number goes up.
    shutil.rmtree(home / "ca" / "retired" / key_id(leaked))
    assert main(["ca", "root-crl"]) == 0
    again = x509.load_der_x509_crl((home / "ca" / "root.crl").read_bytes())
    assert again.get_revoked_certificate_by_serial_number(leaked.serial_number) is not None
    number = x509.CRLNumber
    assert (
        again.extensions.get_extension_for_class(number).value.crl_number
        > crl.extensions.get_extension_for_class(number).value.crl_number
    )
    # A root.crl that this root did not sign is refused, not merged.
    (home / "ca" / "root.crl").write_bytes(_foreign_crl(root))
    assert main(["ca", "root-crl"]) == 1
    assert "not signed by this root" in capsys.readouterr().err


def _ledger(home: Path) -> None:
    # A home in use has its ledger; commands on the home refuse a directory without one.
    from nodecert.store.sqlite.store import SQLiteStore

    SQLiteStore(home / "nodecert.db").close()


def _retired_now(home: Path) -> x509.Certificate:
    (entry,) = [e for e in (home / "ca" / "retired").iterdir() if (e / "retired-now").exists()]
    return x509.load_pem_x509_certificate((entry / "ca.crt").read_bytes())


def _foreign_crl(root: x509.Certificate) -> bytes:
    from datetime import UTC, datetime, timedelta

    from cryptography.hazmat.primitives import hashes

    key = generate_private_key(KeyType.EC_P256)
    now = datetime.now(UTC)
    builder = x509.CertificateRevocationListBuilder(
        issuer_name=root.subject, last_update=now, next_update=now + timedelta(days=1)
    )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)  # type: ignore[arg-type]


def _openssl(directory: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", *argv], cwd=directory, capture_output=True, text=True, check=False
    )


def test_the_root_crl_is_served_by_the_roots_key_id_once_signed(
    env: Env, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Relying parties fetch it where they fetch the issuing CAs' CRLs: GET /v1/crl with the
    # root's key id (GET /v1/ca/issuers lists it, state "root").
    issuers = env.client.get("/v1/ca/issuers").json()["issuers"]
    (root_id,) = [i["keyId"] for i in issuers if i["status"] == "root"]
    assert root_id == key_id(env.service.authority.ca.root)
    before = env.client.get(f"/v1/crl?issuer={root_id}")
    assert before.status_code == 404, before.text  # Nothing signed yet: nothing to serve.
    assert "nodecert ca root-crl" in before.json()["detail"]
    assert main(["ca", "rotate", "--retire-now"]) == 0
    leaked = _retired_now(home)
    assert main(["ca", "root-crl"]) == 0
    capsys.readouterr()
    served = env.client.get(f"/v1/crl?issuer={root_id.upper()}")
    assert served.status_code == 200, served.text
    assert served.headers["content-type"] == "application/pkix-crl"
    assert served.content == (home / "ca" / "root.crl").read_bytes()
    crl = x509.load_der_x509_crl(served.content)
    assert crl.get_revoked_certificate_by_serial_number(leaked.serial_number) is not None
    assert served.headers["Expires"] and served.headers["Last-Modified"]
    again = env.client.get(
        f"/v1/crl?issuer={root_id}", headers={"If-None-Match": served.headers["ETag"]}
    )
    assert again.status_code == 304 and again.content == b""
    # The issuing CA's own CRL is unchanged by it.
    own = x509.load_der_x509_crl(env.client.get("/v1/crl").content)
    assert own.issuer != crl.issuer
    # A root.crl the root did not sign is never served as the root's.
    (home / "ca" / "root.crl").write_bytes(_foreign_crl(env.service.authority.ca.root))
    assert env.client.get(f"/v1/crl?issuer={root_id}").status_code == 404
    (home / "ca" / "root.crl").write_bytes(b"not a crl")
    assert env.client.get(f"/v1/crl?issuer={root_id}").status_code == 404
    # Served from memory between changes of the file, and read again after each.
    (home / "ca" / "root.crl").unlink()  # ca root-crl refuses to replace what is no CRL.
    assert env.client.get(f"/v1/crl?issuer={root_id}").status_code == 404
    assert main(["ca", "root-crl"]) == 0
    capsys.readouterr()
    resigned = env.client.get(f"/v1/crl?issuer={root_id}")
    assert resigned.status_code == 200, resigned.text
    assert resigned.content == (home / "ca" / "root.crl").read_bytes()


def test_the_home_and_the_root_crl_read_the_same_retired_entries_and_skip_strays(
    env: Env, home: Path
) -> None:
    from datetime import datetime

    from nodecert.backends.local.home import read_home

    leaked = env.service.authority.ca.chain()[0]
    assert main(["ca", "rotate", "--retire-now"]) == 0
    planned = env.service.authority.ca.chain()[0]
    assert main(["ca", "rotate"]) == 0
    retired = home / "ca" / "retired"
    # The names on disk, as homes of every earlier version hold them.
    entry = retired / key_id(leaked)
    assert {"ca.crt", "ca.key", "retired-at", "retired-now"} <= {p.name for p in entry.iterdir()}
    assert "retired-now" not in {p.name for p in (retired / key_id(planned)).iterdir()}
    stamp = datetime.fromisoformat((entry / "retired-at").read_text())
    # What no rotation writes: an entry without ca.crt (marked retired-now), a stray file.
    (retired / "0stray").mkdir()
    (retired / "0stray" / "retired-now").write_bytes(b"")
    (retired / "README").write_text("not an entry")
    state = read_home(home / "ca")
    assert state.retired == (leaked,)
    assert state.retiring == (planned,)
    assert main(["ca", "root-crl"]) == 0
    crl = x509.load_der_x509_crl((home / "ca" / "root.crl").read_bytes())
    assert [(e.serial_number, e.revocation_date_utc) for e in crl] == [
        (leaked.serial_number, stamp.replace(microsecond=0))
    ]
