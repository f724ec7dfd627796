"""Claims an API Gateway authorizer verified, mapped to the caller."""

from __future__ import annotations

import pytest

from nodecert.core.errors import AuthenticationError
from nodecert.core.identity import user_id_for_subject
from nodecert.verifiers.gateway import principal_from_claims

ADMINS = "nodecert-admins"


@pytest.mark.parametrize(
    ("groups", "is_admin"),
    [
        ("ops,nodecert-admins", True),  # REST API + Cognito authorizer: comma-joined.
        ("[ops nodecert-admins]", True),  # HTTP API + JWT authorizer: flattened list.
        (["nodecert-admins"], True),  # Real JSON, as a test event may carry.
        ("ops", False),
        ("nodecert-admins-not", False),
    ],
)
def test_groups_in_either_api_gateway_form_make_admins(groups, is_admin) -> None:
    claims = {"sub": "alice", "cognito:groups": groups, "token_use": "id"}
    principal = principal_from_claims(claims, admin_group=ADMINS)
    assert principal.user_id == "alice"
    assert principal.is_admin is is_admin
    assert principal.claims == claims
    assert principal.claims is not claims  # A copy: the event is not the caller's record.


def test_no_groups_is_no_admin() -> None:
    principal = principal_from_claims({"sub": "bob"}, admin_group=ADMINS)
    assert principal.groups == frozenset()
    assert not principal.is_admin


@pytest.mark.parametrize("sub", [None, "", 42, ["alice"]])
def test_a_missing_or_unusable_sub_is_unauthenticated(sub) -> None:
    claims = {} if sub is None else {"sub": sub}
    with pytest.raises(AuthenticationError, match=r"token: .*sub"):
        principal_from_claims(claims, admin_group=ADMINS)


@pytest.mark.parametrize("sub", ["auth0|123", "a" * 65, "../../etc", ".."])
def test_a_sub_outside_the_id_alphabet_is_mapped_and_kept(sub) -> None:
    principal = principal_from_claims({"sub": sub}, admin_group=ADMINS)
    assert principal.user_id == user_id_for_subject(sub)
    assert principal.user_id.startswith("sha256.") and principal.subject == sub
