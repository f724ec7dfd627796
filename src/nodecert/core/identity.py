"""The certificate identity schema: one module builds it and parses it back.

A nodecert client certificate names exactly one user and one node:

- Subject ``CN=<userId>, OU=<nodeId>, O=<organization>``;
- SAN URI ``spiffe://<trust-domain>/user/<userId>/node/<nodeId>``.

The SAN URI is authoritative; the subject must agree with it. The issuer, the gateway
authorizer and the node-side check all use :meth:`Identity.from_certificate`, so they can
never disagree on who a certificate belongs to.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import ipaddress
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID

from nodecert.core.errors import InvalidIdentifierError

__all__ = [
    "ID_PATTERN",
    "MAPPED_ID_PREFIX",
    "MAX_SUBJECT_LENGTH",
    "Identity",
    "format_serial",
    "parse_serial",
    "serial_for_display",
    "user_id_for_subject",
    "validate_dns_names",
    "validate_id",
    "validate_ip_addresses",
    "validate_trust_domain",
]

# 64 is RFC 5280's upper bound for both CN (ub-common-name) and OU
# (ub-organizational-unit-name), which carry the user and node ids in the subject.
ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
_SERIAL_PATTERN = re.compile(r"[0-9a-f]{1,40}")
# RFC 3986 reg-name, lower case, as the SPIFFE ID spec requires for trust domains.
_TRUST_DOMAIN_PATTERN = re.compile(r"[a-z0-9._-]{1,255}")
_URI_PATTERN = re.compile(
    r"spiffe://(?P<td>[a-z0-9._-]+)/user/(?P<user>[A-Za-z0-9._-]+)/node/(?P<node>[A-Za-z0-9._-]+)"
)


def validate_id(value: object, *, field: str) -> str:
    """Return ``value`` if it is a valid userId or nodeId.

    Ids are ``[A-Za-z0-9._-]{1,64}``: they become the subject's CN and OU, which RFC 5280
    caps at 64 characters. Ids made only of dots (``.``, ``..``) are refused
    too: they are path segments with a meaning in the SPIFFE URI (RFC 3986 section 3.3).

    Raises:
        InvalidIdentifierError: naming ``field`` and showing the offending value.
    """
    if not isinstance(value, str):
        raise InvalidIdentifierError(f"{field}: must be a string, got {type(value).__name__}")
    if not ID_PATTERN.fullmatch(value) or set(value) == {"."}:
        shown = value if len(value) <= 80 else value[:80] + "…"
        raise InvalidIdentifierError(
            f"{field}: {shown!r} is not a valid id (1-64 characters from A-Z a-z 0-9 . _ -,"
            " not only dots)"
        )
    return value


# The mapping of provider subjects to user ids (docs/configuration.md, "User ids").
MAPPED_ID_PREFIX = "sha256."
# A subject is a claim value kept in the ledger; OIDC Core section 2 caps ``sub`` at 255
# ASCII characters, and no provider's user id claim comes close to this.
MAX_SUBJECT_LENGTH = 1024


def user_id_for_subject(subject: object) -> str:
    """The user id of a provider subject (the value of the configured user id claim).

    The one rule, which anyone can compute (``nodecert user-id SUBJECT``):

    - a subject that is already a valid id (:func:`validate_id`) and does not start with
      ``sha256.`` is its own user id;
    - any other subject maps to ``sha256.`` followed by the lower-case, unpadded base32
      (RFC 4648) of the SHA-256 of its UTF-8 bytes: 7 + 52 = 59 characters, a valid id.

    It is deterministic, and collision-free: a subject that is its own id never starts
    with ``sha256.``, a mapped one always does, and two mapped ones differ unless SHA-256
    collides. Subjects that start with ``sha256.`` are mapped too, so that nobody can choose
    a subject equal to somebody else's mapped id.

    Raises:
        InvalidIdentifierError: not a string, empty, longer than
            :data:`MAX_SUBJECT_LENGTH` characters, or not valid Unicode (a lone surrogate,
            which a JSON string may carry but no UTF-8 text can).
    """
    if not isinstance(subject, str):
        raise InvalidIdentifierError(f"subject: must be a string, got {type(subject).__name__}")
    if not subject or len(subject) > MAX_SUBJECT_LENGTH:
        raise InvalidIdentifierError(
            f"subject: must be 1 to {MAX_SUBJECT_LENGTH} characters, got {len(subject)}"
        )
    try:
        encoded = subject.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidIdentifierError("subject: is not valid Unicode text") from None
    if (
        ID_PATTERN.fullmatch(subject)
        and set(subject) != {"."}
        and not subject.startswith(MAPPED_ID_PREFIX)
    ):
        return subject
    digest = base64.b32encode(hashlib.sha256(encoded).digest()).decode("ascii")
    return MAPPED_ID_PREFIX + digest.rstrip("=").lower()


def validate_trust_domain(value: str) -> str:
    """Return ``value`` if it is a valid SPIFFE trust domain (lower-case host-like name).

    Raises:
        InvalidIdentifierError: when it is not.
    """
    if not _TRUST_DOMAIN_PATTERN.fullmatch(value) or set(value) == {"."}:
        raise InvalidIdentifierError(
            f"trust domain: {value!r} must be 1-255 characters from a-z 0-9 . _ -"
        )
    return value


_DNS_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
MAX_DNS_NAMES = 20


def validate_dns_names(value: object) -> tuple[str, ...]:
    """Return the host names of a node certificate, lower-cased, in order, without repeats.

    Each is an RFC 1123 host name (letters, digits, hyphens; labels of 1-63 characters;
    253 in all). Wildcards and IP addresses are refused: a node certificate names hosts.

    Raises:
        InvalidIdentifierError: naming the offending entry.
    """
    if not isinstance(value, list) or not value or len(value) > MAX_DNS_NAMES:
        raise InvalidIdentifierError(
            f"dnsNames: a list of 1 to {MAX_DNS_NAMES} host names is required"
        )
    names: list[str] = []
    for entry in value:
        name = entry.lower().rstrip(".") if isinstance(entry, str) else ""
        labels = name.split(".")
        valid = (
            0 < len(name) <= 253
            and all(_DNS_LABEL.fullmatch(label) for label in labels)
            and not labels[-1].isdigit()  # 10.0.0.1 is an address, not a host name.
        )
        if not valid:
            shown = entry[:80] if isinstance(entry, str) else type(entry).__name__
            raise InvalidIdentifierError(f"dnsNames: {shown!r} is not a host name")
        if name not in names:
            names.append(name)
    return tuple(names)


def validate_ip_addresses(value: object) -> tuple[str, ...]:
    """Return the IP addresses of a node certificate, normalized, in order, without repeats.

    For nodes reached by address rather than by name: each becomes an ``iPAddress``
    subjectAltName (RFC 5280 section 4.2.1.6), which TLS clients match against the address
    they connected to. IPv4 or IPv6, without a zone (``%eth0``, meaningless to another host);
    the unspecified (``0.0.0.0``, ``::``) and multicast addresses are refused.

    Raises:
        InvalidIdentifierError: naming the offending entry.
    """
    if not isinstance(value, list) or not value or len(value) > MAX_DNS_NAMES:
        raise InvalidIdentifierError(
            f"ipAddresses: a list of 1 to {MAX_DNS_NAMES} IP addresses is required"
        )
    addresses: list[str] = []
    for entry in value:
        parsed: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
        if isinstance(entry, str) and "%" not in entry and len(entry) <= 45:
            try:
                parsed = ipaddress.ip_address(entry)
            except ValueError:
                parsed = None
        if parsed is None or parsed.is_unspecified or parsed.is_multicast:
            shown = entry[:80] if isinstance(entry, str) else type(entry).__name__
            raise InvalidIdentifierError(f"ipAddresses: {shown!r} is not a usable IP address")
        if str(parsed) not in addresses:
            addresses.append(str(parsed))
    return tuple(addresses)


def format_serial(serial: int) -> str:
    """Render a certificate serial number the way the API does: lower-case hex."""
    return format(serial, "x")


def serial_for_display(serial: int | str) -> str:
    """A serial number as people compare it: lower-case hex of whole octets (even length).

    ``openssl x509 -serial`` and CRL listings print whole octets (``0A1B…``), while the API
    drops leading zeros (``a1b…``); the CLI prints this form so that both line up, compared
    without regard to case. Input (:func:`parse_serial`) takes either.
    """
    text = format_serial(serial) if isinstance(serial, int) else serial.lower()
    return text if len(text) % 2 == 0 else "0" + text


def parse_serial(value: str) -> int:
    """Parse an API serial number (lower-case or upper-case hex, optional colons).

    Raises:
        InvalidIdentifierError: when it is not hex of at most 20 octets.
    """
    normalized = value.replace(":", "").lower() if isinstance(value, str) else ""
    if not _SERIAL_PATTERN.fullmatch(normalized):
        shown = value[:64] if isinstance(value, str) else type(value).__name__
        raise InvalidIdentifierError(
            f"serial: {shown!r} is not a hexadecimal serial number of at most 20 octets"
        )
    return int(normalized, 16)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a certificate is for: one user, one of their nodes.

    Construction validates both ids.

    Raises:
        InvalidIdentifierError: for an id outside the allowed form.
    """

    user_id: str
    node_id: str

    def __post_init__(self) -> None:
        validate_id(self.user_id, field="userId")
        validate_id(self.node_id, field="nodeId")

    def spiffe_id(self, trust_domain: str) -> str:
        """The SAN URI that carries this identity."""
        return f"spiffe://{trust_domain}/user/{self.user_id}/node/{self.node_id}"

    def subject(self, organization: str) -> x509.Name:
        """The certificate subject: ``CN=<userId>, OU=<nodeId>, O=<organization>``."""
        return x509.Name(
            [
                _organization(organization),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, self.node_id),
                x509.NameAttribute(NameOID.COMMON_NAME, self.user_id),
            ]
        )

    def san(self, trust_domain: str) -> x509.SubjectAlternativeName:
        """The SubjectAlternativeName extension value carrying the SPIFFE URI."""
        return x509.SubjectAlternativeName(
            [x509.UniformResourceIdentifier(self.spiffe_id(trust_domain))]
        )

    @classmethod
    def from_certificate(
        cls, certificate: x509.Certificate, *, trust_domain: str | None = None
    ) -> Identity:
        """Read the identity back out of a certificate issued by nodecert.

        Args:
            certificate: The certificate to read.
            trust_domain: When given, the SPIFFE URI must be in this trust domain.

        Raises:
            InvalidIdentifierError: when the certificate has no nodecert SPIFFE URI or more
                than one URI of any kind, when it is in another trust domain, or when the
                subject's CN/OU disagree with the URI.
        """
        try:
            san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            raise InvalidIdentifierError(
                "certificate: has no subjectAltName, so it carries no nodecert identity"
            ) from None
        except ValueError as exc:
            # cryptography parses extensions lazily and refuses malformed ones here (an empty
            # subjectAltName, which RFC 5280 section 4.2.1.6 forbids, is one since 51.0).
            raise InvalidIdentifierError(
                "certificate: its extensions are not valid X.509, so it carries no nodecert"
                " identity"
            ) from exc
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
        # An X.509-SVID has exactly one URI SAN (SPIFFE X509-SVID section 2); a second one,
        # of any scheme or case (RFC 3986 makes "SPIFFE:" the same scheme), could be what
        # a SPIFFE library in front reads as the identity.
        if len(uris) != 1:
            spiffe = sum(1 for u in uris if u.lower().startswith("spiffe:"))
            raise InvalidIdentifierError(
                f"certificate: expected exactly one URI, a spiffe:// one; found {len(uris)}"
                f" ({spiffe} spiffe)"
            )
        match = _URI_PATTERN.fullmatch(uris[0])
        if match is None:
            raise InvalidIdentifierError(
                f"certificate: {uris[0][:300]!r} is not a nodecert identity URI"
            )
        if trust_domain is not None and match["td"] != trust_domain:
            raise InvalidIdentifierError(
                f"certificate: trust domain {match['td']!r} is not {trust_domain!r}"
            )
        identity = cls(user_id=match["user"], node_id=match["node"])
        cn = _single_attribute(certificate.subject, NameOID.COMMON_NAME)
        ou = _single_attribute(certificate.subject, NameOID.ORGANIZATIONAL_UNIT_NAME)
        if cn != identity.user_id or ou != identity.node_id:
            raise InvalidIdentifierError(
                "certificate: subject CN/OU do not agree with the SPIFFE URI"
            )
        return identity


def _single_attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    values = name.get_attributes_for_oid(oid)
    if len(values) != 1:
        return None
    value = values[0].value
    return value if isinstance(value, str) else None


@functools.lru_cache(maxsize=8)
def _organization(organization: str) -> x509.NameAttribute[str]:
    # The same on every certificate a service issues: made (and checked) once.
    return x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)
