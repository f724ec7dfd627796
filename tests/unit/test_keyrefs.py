"""The reference of an issuing key held elsewhere (``ca.keyref``): one format, one parser."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nodecert.core.errors import ConfigurationError
from nodecert.core.keyrefs import KeyKind, KeyRef, format_ref, parse_ref, unreachable

LONG = "x" * 10_000


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("hsm:label", id="unknown scheme"),
        pytest.param("KMS:key", id="scheme in capitals"),
        pytest.param("file:/etc/ca.key", id="a path"),
        pytest.param("kms", id="no colon"),
        pytest.param("kms:", id="missing key id"),
        pytest.param("pkcs11:", id="missing label"),
        pytest.param(":key", id="missing scheme"),
        pytest.param(" ", id="whitespace only"),
        pytest.param(" kms:key", id="whitespace before the scheme"),
        pytest.param("kms :key", id="whitespace after the scheme"),
        pytest.param("\tpkcs11:label\n", id="tab and newline around it"),
        pytest.param(LONG, id="very long"),
        pytest.param("kms" + LONG, id="very long scheme"),
        pytest.param("kmś:key", id="non-ASCII scheme"),
        pytest.param("kms\uff1akey", id="fullwidth colon"),
        pytest.param("\u212aMS:key", id="Kelvin sign"),
        pytest.param("\x00kms:key", id="NUL"),
    ],
)
def test_a_malformed_reference_is_a_configuration_error_naming_it_briefly(text: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        parse_ref(text)
    # Today's message, quoting at most the first 120 characters of whatever the file held.
    assert raised.value.detail == f"{text[:120]!r} names no key this service can reach"
    assert len(raised.value.detail) <= 200


def test_unreachable_is_the_message_parse_ref_raises() -> None:
    with pytest.raises(ConfigurationError) as raised:
        parse_ref("hsm:label")
    assert raised.value.detail == unreachable("hsm:label").detail


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "kms:1234abcd-12ab-34cd-56ef-1234567890ab",
            KeyRef(KeyKind.KMS, "1234abcd-12ab-34cd-56ef-1234567890ab"),
        ),
        # The name is everything after the first colon: an ARN keeps its own colons.
        (
            "kms:arn:aws:kms:eu-west-1:111122223333:alias/issuing",
            KeyRef(KeyKind.KMS, "arn:aws:kms:eu-west-1:111122223333:alias/issuing"),
        ),
        ("kms:alias/nodecert", KeyRef(KeyKind.KMS, "alias/nodecert")),
        ("pkcs11:nodecert-issuing", KeyRef(KeyKind.PKCS11, "nodecert-issuing")),
        # The name is as written (a label is the operator's): nothing stripped or refused.
        ("pkcs11: spaced label", KeyRef(KeyKind.PKCS11, " spaced label")),
        ("pkcs11:clé", KeyRef(KeyKind.PKCS11, "clé")),
    ],
)
def test_a_reference_reads_back_as_written(text: str, expected: KeyRef) -> None:
    assert parse_ref(text) == expected
    assert format_ref(expected) == text
    assert str(expected) == text


def test_the_formats_are_the_ones_homes_already_hold() -> None:
    # Existing homes hold these bytes in ca.keyref: the format must never change.
    assert format_ref(KeyRef(KeyKind.KMS, "k1")) == "kms:k1"
    assert format_ref(KeyRef(KeyKind.PKCS11, "l1")) == "pkcs11:l1"


@given(kind=st.sampled_from(KeyKind), name=st.text(min_size=1))
def test_format_then_parse_is_the_same_reference(kind: KeyKind, name: str) -> None:
    ref = KeyRef(kind, name)
    assert parse_ref(format_ref(ref)) == ref


@given(text=st.text())
def test_any_text_parses_back_to_itself_or_is_a_configuration_error(text: str) -> None:
    # Total: whatever a file holds, a reference that writes back as that very text, or
    # the one clear error; never another exception, never a reference to something else.
    try:
        ref: KeyRef | ConfigurationError = parse_ref(text)
    except ConfigurationError as exc:
        ref = exc
    if isinstance(ref, ConfigurationError):
        assert "names no key this service can reach" in ref.detail
    else:
        assert format_ref(ref) == text
