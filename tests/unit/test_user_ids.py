"""The one rule that turns an identity provider's subject into a user id.

Known answers come from ``printf %s SUBJECT | openssl dgst -sha256 -binary | base32``
(lower-cased, padding dropped), so the rule is checked against tools users have, not
against itself.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nodecert.cli import main
from nodecert.core.errors import InvalidIdentifierError
from nodecert.core.identity import (
    MAPPED_ID_PREFIX,
    MAX_SUBJECT_LENGTH,
    Identity,
    user_id_for_subject,
    validate_id,
)

PROPERTY = settings(max_examples=150, deadline=None, database=None)
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-"

KNOWN = {
    # Auth0 database and social connections: "|" is outside the id alphabet.
    "auth0|5f7c8ec7c33c6c004bbafe82": "igveq6eh4pcfygnsisfs6a3fklyawldy4i4unu4qu7uen5vnldqq",
    "google-oauth2|103547991597142817347": "pqon64q6frkqtzw4eziwv4f5fdybfltqqnndyxhiwnuqdwmtl4cq",
    # Okta access tokens name the user by login, an email address.
    "alice@example.com": "76gzqgp4byjl6djerexelgd6esncrxhig2ufzlla4khkvkgg3f3a",
    # Looks like a mapped id: mapped again, so nobody can pick another user's id.
    "sha256.abc": "qjwgmxp2szuoqu75kciqwolx2m7idlurecgqb67hghtjwrrm2uqq",
    # In the alphabet, but a path segment with a meaning in the SPIFFE URI.
    "..": "l3a7pzya6n6d2czjqhieqvp4gs4uvkqviv5qlssxdaluiljcr6aq",
}


@pytest.mark.parametrize(("subject", "digest"), sorted(KNOWN.items()))
def test_a_subject_outside_the_alphabet_maps_to_the_documented_digest(subject, digest):
    assert user_id_for_subject(subject) == MAPPED_ID_PREFIX + digest


@pytest.mark.parametrize(
    "subject",
    [
        "alice",
        "0e8c6f2a-6b1d-4c5e-9c2f-3f1b2a4d5e6f",  # Cognito, Keycloak: a UUID.
        "00uid4BxXw6I6TV4m0g3",  # Okta user id.
        "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",  # Entra: 43 characters of base64url.
        "103547991597142817347",  # Google.
        "a" * 64,
        "sha256",  # The prefix needs its dot.
        "Sha256.x",  # Ids are case-sensitive, and so is the prefix.
    ],
)
def test_a_subject_that_is_an_id_is_its_own_id(subject):
    assert user_id_for_subject(subject) == subject


def test_a_subject_one_character_too_long_for_an_id_is_mapped():
    mapped = user_id_for_subject("a" * 65)
    assert mapped.startswith(MAPPED_ID_PREFIX) and len(mapped) == 59


@pytest.mark.parametrize(
    ("subject", "message"),
    [
        (None, "must be a string, got NoneType"),
        (42, "must be a string, got int"),
        (["alice"], "must be a string, got list"),
        ("", "1 to 1024 characters, got 0"),
        ("x" * (MAX_SUBJECT_LENGTH + 1), "1 to 1024 characters, got 1025"),
        ("a\ud800b", "not valid Unicode"),
    ],
)
def test_a_subject_that_cannot_name_anybody_is_refused(subject, message):
    with pytest.raises(InvalidIdentifierError, match=message):
        user_id_for_subject(subject)


subjects = st.one_of(
    st.text(min_size=1, max_size=MAX_SUBJECT_LENGTH),
    st.text(alphabet=ALPHABET, min_size=1, max_size=80),
    st.text(alphabet=ALPHABET, min_size=1, max_size=60).map(lambda s: MAPPED_ID_PREFIX + s),
)


@PROPERTY
@given(subjects)
def test_every_subject_maps_to_a_valid_id_that_certifies(subject):
    user_id = user_id_for_subject(subject)
    assert validate_id(user_id, field="userId") == user_id
    Identity(user_id=user_id, node_id="n1")  # CN, OU and the SPIFFE URI accept it.
    assert user_id_for_subject(subject) == user_id  # Deterministic.


@PROPERTY
@given(subjects, subjects)
def test_two_subjects_never_share_an_id(first, second):
    if first != second:
        assert user_id_for_subject(first) != user_id_for_subject(second)


@PROPERTY
@given(subjects)
def test_an_id_is_unmapped_exactly_when_it_lacks_the_prefix(subject):
    user_id = user_id_for_subject(subject)
    assert (user_id == subject) == (not user_id.startswith(MAPPED_ID_PREFIX))


@PROPERTY
@given(st.one_of(st.none(), st.integers(), st.floats(), st.booleans(), st.lists(st.text())))
def test_a_claim_that_is_no_string_is_refused_with_the_one_error(value):
    with pytest.raises(InvalidIdentifierError):
        user_id_for_subject(value)


def test_the_cli_prints_the_user_id(capsys):
    assert main(["user-id", "auth0|5f7c8ec7c33c6c004bbafe82"]) == 0
    assert (
        capsys.readouterr().out == f"{MAPPED_ID_PREFIX}{KNOWN['auth0|5f7c8ec7c33c6c004bbafe82']}\n"
    )
    assert main(["user-id", "alice", "--json"]) == 0
    assert capsys.readouterr().out == '{"subject": "alice", "userId": "alice", "mapped": false}\n'


def test_the_cli_refuses_an_empty_subject_in_one_line(capsys):
    assert main(["user-id", ""]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "1 to 1024 characters" in err
