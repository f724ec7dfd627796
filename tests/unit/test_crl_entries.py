"""The CRL entries written as DER read back, through pyca cryptography, as what was written."""

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from nodecert.core.values import RevocationReason
from nodecert.issuing.crl_entries import assemble, entries_der, splice_entries

ENTRIES = [
    (1, datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=UTC), None),
    (0x7F, datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC), RevocationReason.KEY_COMPROMISE),
    (0x80, datetime(2050, 1, 1, tzinfo=UTC), RevocationReason.SUPERSEDED),
    (2**159 - 1, datetime(2026, 6, 1, tzinfo=UTC), RevocationReason.UNSPECIFIED),
    (2**152 + 5, datetime(2026, 6, 1, tzinfo=UTC), RevocationReason.AFFILIATION_CHANGED),
    (0xFFFF, datetime(2026, 6, 1, tzinfo=UTC), RevocationReason.CESSATION_OF_OPERATION),
    (300, datetime(2026, 6, 1, tzinfo=UTC), RevocationReason.PRIVILEGE_WITHDRAWN),
    (2**400 + 1, datetime(2026, 6, 1, tzinfo=UTC), None),  # Longer than RFC 5280 allows.
    (2**1100 + 3, datetime(2026, 6, 1, tzinfo=UTC), None),  # Two length octets.
]
FLAGS = {
    RevocationReason.KEY_COMPROMISE: x509.ReasonFlags.key_compromise,
    RevocationReason.SUPERSEDED: x509.ReasonFlags.superseded,
    RevocationReason.AFFILIATION_CHANGED: x509.ReasonFlags.affiliation_changed,
    RevocationReason.CESSATION_OF_OPERATION: x509.ReasonFlags.cessation_of_operation,
    RevocationReason.PRIVILEGE_WITHDRAWN: x509.ReasonFlags.privilege_withdrawn,
}


@pytest.mark.parametrize("kind", ["ec", "rsa"])
def test_spliced_entries_parse_back_and_the_signature_verifies(kind):
    key = (
        ec.generate_private_key(ec.SECP256R1())
        if kind == "ec"
        else (rsa.generate_private_key(public_exponent=65537, key_size=2048))
    )
    now = datetime(2026, 6, 1, tzinfo=UTC)
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "ca")])
    empty = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(name)
        .last_update(now)
        .next_update(now + timedelta(hours=1))
        .add_extension(x509.CRLNumber(7), critical=False)
        .sign(key, hashes.SHA256())
    )
    tbs, algorithm = splice_entries(empty.public_bytes(Encoding.DER), entries_der(ENTRIES))
    if kind == "ec":
        signature = key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    else:
        signature = key.sign(tbs, padding.PKCS1v15(), hashes.SHA256())
    crl = x509.load_der_x509_crl(assemble(tbs, algorithm, signature))
    assert crl.is_signature_valid(key.public_key())
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 7
    read = {}
    for entry in crl:
        try:
            reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        except x509.ExtensionNotFound:
            reason = None
        read[entry.serial_number] = (entry.revocation_date_utc, reason)
    assert read == {
        serial: (at.replace(microsecond=0), FLAGS.get(reason)) for serial, at, reason in ENTRIES
    }


def test_a_crl_with_entries_already_is_refused():
    with pytest.raises(ValueError, match="SEQUENCE"):
        splice_entries(b"\x04\x00", entries_der([]))
