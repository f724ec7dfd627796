"""The revoked-certificate entries of a CRL, encoded straight to DER (RFC 5280 5.1).

pyca ``cryptography`` builds each entry as a Python object (a builder, an extension, a
``build()`` call): about 8 µs apiece, most of a second for 100,000 revoked certificates.
The entries are the simplest structure in the CRL::

    SEQUENCE { userCertificate INTEGER, revocationDate Time,
               crlEntryExtensions SEQUENCE { SEQUENCE { 2.5.29.21, OCTET STRING {
                   ENUMERATED reason } } } OPTIONAL }

so :func:`entries_der` writes them directly, and :func:`splice_entries` puts them into the
``TBSCertList`` of a CRL that ``cryptography`` built and signed without entries (it keeps
the issuer, the times, the number, the AKI and the signature algorithm), ready to be
signed again. The result is checked by the same tests and by pkilint.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from nodecert.core.values import RevocationReason

__all__ = ["assemble", "entries_der", "splice_entries"]

# RFC 5280 section 5.3.1 reason codes; "unspecified" is omitted from entries.
_REASON_CODES = {
    RevocationReason.KEY_COMPROMISE: 1,
    RevocationReason.AFFILIATION_CHANGED: 3,
    RevocationReason.SUPERSEDED: 4,
    RevocationReason.CESSATION_OF_OPERATION: 5,
    RevocationReason.PRIVILEGE_WITHDRAWN: 9,
}
# Extensions SEQUENCE { Extension SEQUENCE { OID 2.5.29.21, OCTET STRING { ENUMERATED } } }
_REASON_EXTENSIONS: dict[RevocationReason | None, bytes] = {
    reason: bytes.fromhex("300c300a0603551d150403") + bytes((0x0A, 0x01, code))
    for reason, code in _REASON_CODES.items()
}


def _length(size: int) -> bytes:
    if size < 0x80:
        return bytes((size,))
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(octets),)) + octets


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes((tag,)) + _length(len(content)) + content


def _time(at: datetime) -> bytes:
    # RFC 5280 section 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050.
    at = at.astimezone(UTC)
    if 1950 <= at.year < 2050:
        return _tlv(0x17, at.strftime("%y%m%d%H%M%SZ").encode())
    return _tlv(0x18, at.strftime("%Y%m%d%H%M%SZ").encode())


def entries_der(
    entries: Iterable[tuple[int, datetime, RevocationReason | None]],
) -> bytes:
    """``revokedCertificates`` (the SEQUENCE OF, tag included) for ``entries``.

    Args:
        entries: (serial number, revocation date, reason) per revoked certificate.
    """
    times: dict[datetime, bytes] = {}
    extensions = _REASON_EXTENSIONS
    out: list[bytes] = []
    append = out.append
    for serial, revoked_at, reason in entries:
        number = serial.to_bytes(serial.bit_length() // 8 + 1, "big")
        when = times.get(revoked_at)
        if when is None:
            when = times[revoked_at] = _time(revoked_at)
        if len(number) <= 21:
            # RFC 5280 4.1.2.2 serials (at most 20 octets, plus a sign octet): every
            # length fits in one byte, so the TLVs are written in one step.
            body = b"\x02%c%b%b%b" % (len(number), number, when, extensions.get(reason, b""))
            append(b"\x30%c%b" % (len(body), body))
        else:
            body = _tlv(0x02, number) + when + extensions.get(reason, b"")
            append(_tlv(0x30, body))
    return _tlv(0x30, b"".join(out))


def _read(data: bytes, at: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the DER element at ``at``."""
    tag, first = data[at], data[at + 1]
    if first < 0x80:
        return tag, at + 2, at + 2 + first
    count = first & 0x7F
    size = int.from_bytes(data[at + 2 : at + 2 + count], "big")
    start = at + 2 + count
    return tag, start, start + size


def splice_entries(crl_der: bytes, revoked: bytes) -> tuple[bytes, bytes]:
    """Insert ``revoked`` into the TBSCertList of an entry-less signed CRL.

    Returns:
        The new ``TBSCertList`` (to sign), and the CRL's ``signatureAlgorithm`` element.

    Raises:
        ValueError: the CRL is not one ``cryptography`` built without entries.
    """
    tag, start, end = _read(crl_der, 0)
    if tag != 0x30 or end != len(crl_der):
        raise ValueError("CRL: not a DER SEQUENCE")
    tbs_tag, tbs_start, tbs_end = _read(crl_der, start)
    algorithm = crl_der[tbs_end : _read(crl_der, tbs_end)[2]]
    # version, signature, issuer, thisUpdate, nextUpdate: then crlExtensions [0].
    at = tbs_start
    for _ in range(5):
        at = _read(crl_der, at)[2]
    if at < tbs_end and crl_der[at] != 0xA0:
        raise ValueError("CRL: already has entries")
    content = crl_der[tbs_start:at] + revoked + crl_der[at:tbs_end]
    if tbs_tag != 0x30:
        raise ValueError("CRL: no TBSCertList")
    return _tlv(0x30, content), algorithm


def assemble(tbs: bytes, algorithm: bytes, signature: bytes) -> bytes:
    """The ``CertificateList``: TBS, algorithm, and the signature as a BIT STRING."""
    return _tlv(0x30, tbs + algorithm + _tlv(0x03, b"\x00" + signature))
