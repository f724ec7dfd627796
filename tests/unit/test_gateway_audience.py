"""An API Gateway authorizer's claims are held to the configured app client and token_use.

A REST API's Cognito authorizer accepts a token of any app client of the user pool (and
an access token as well as an ID token), so the Lambda checks ``aud`` / ``client_id``
and ``token_use`` itself (``check_client``).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nodecert.core.errors import AuthenticationError
from nodecert.core.identity import user_id_for_subject
from nodecert.verifiers.gateway import check_client, principal_from_claims

ADMINS = "nodecert-admins"
OURS = frozenset({"ours-client"})


def claims(**values: Any) -> dict[str, Any]:
    return {"sub": "alice", **values}


@pytest.mark.parametrize(
    "accepted",
    [
        claims(token_use="id", aud="ours-client"),
        claims(token_use="access", client_id="ours-client"),
        claims(aud="ours-client"),  # Another OIDC provider's ID token: no token_use.
        claims(token_use="id", aud=["other", "ours-client"]),
    ],
    ids=["id token", "access token", "no token_use", "aud list"],
)
def test_tokens_of_our_app_client_are_accepted(accepted: dict[str, Any]) -> None:
    assert principal_from_claims(accepted, admin_group=ADMINS, client_ids=OURS).user_id == "alice"


@pytest.mark.parametrize(
    ("refused", "why"),
    [
        (claims(token_use="id", aud="another-client"), "audience"),
        (claims(token_use="id"), "audience"),
        (claims(token_use="id", aud=["another-client"]), "audience"),
        (claims(token_use="id", aud=7), "aud"),
        # An access token names its client in client_id: an aud beside it proves nothing.
        (claims(token_use="access", aud="ours-client", client_id="another"), "client_id"),
        (claims(token_use="access", aud="ours-client"), "client_id"),
        (claims(token_use="access", client_id=["ours-client"]), "client_id"),
        (claims(token_use="refresh", aud="ours-client"), "token_use"),
        (claims(token_use=["id"], aud="ours-client"), "token_use"),
        (claims(token_use="ID", aud="ours-client"), "token_use"),
    ],
)
def test_tokens_of_another_client_or_use_are_401(refused: dict[str, Any], why: str) -> None:
    with pytest.raises(AuthenticationError, match=why):
        principal_from_claims(refused, admin_group=ADMINS, client_ids=OURS)


def test_with_no_app_client_configured_nothing_is_accepted() -> None:
    with pytest.raises(AuthenticationError, match="NODECERT_OIDC_AUDIENCE"):
        check_client(claims(token_use="id", aud="ours-client"), frozenset())


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
CLAIM_NAMES = st.sampled_from(["sub", "aud", "client_id", "token_use", "cognito:groups", "x"])


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(CLAIM_NAMES | st.text(max_size=10), JSON | st.sampled_from(sorted(OURS))))
def test_any_claims_are_a_principal_or_a_401(hostile: dict[str, Any]) -> None:
    try:
        principal = principal_from_claims(hostile, admin_group=ADMINS, client_ids=OURS)
    except AuthenticationError:
        return
    # Accepted only when issued to our client, as its token_use says.
    use = hostile.get("token_use")
    named = hostile.get("client_id") if use == "access" else hostile.get("aud")
    assert use in (None, "id", "access")
    assert named == "ours-client" or (isinstance(named, list) and "ours-client" in named)
    # The user id is the subject, or its sha256. form when the subject is not an id.
    assert principal.subject == hostile["sub"]
    assert principal.user_id == user_id_for_subject(hostile["sub"])
