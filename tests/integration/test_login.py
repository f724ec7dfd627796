"""``nodecert login`` end to end: the authorization code flow with PKCE to a loopback redirect.

A real ``nodecert serve`` (its dev issuer offers the provider's endpoints), the real CLI in
a subprocess listening on 127.0.0.1, and this test as the user's browser: it opens the URL
the CLI printed, fills in the sign-in form, and follows the link back to the CLI, which
trades the code for a token that the service then accepts.
"""

from __future__ import annotations

import html
import json
import re
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import NODECERT, free_port, nodecert_env, start_server, stop_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    where = tmp_path_factory.mktemp("login")
    port = free_port()
    process = start_server(nodecert_env(where / "home", port), where / "serve.log")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_server(process)


def _start_login(base: str, *extra: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [NODECERT, "login", "--server", base, "--no-browser", "--timeout", "60", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    assert process.stderr.readline().startswith("nodecert: open this URL to sign in:")
    url = process.stderr.readline().strip()
    return process, url


def _fetch(url: str, data: bytes | None = None) -> tuple[int, str, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, data=data, timeout=30) as reply:
            return reply.status, reply.read().decode(), dict(reply.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


def _sign_in(url: str, user: str, *, admin: bool = False) -> str:
    """As the browser: open the page, submit the form, return the continue link."""
    status, page, headers = _fetch(url)
    assert status == 200, page
    assert "default-src 'none'" in headers["content-security-policy"]
    fields = dict(re.findall(r'name="(\w+)" value="([^"]*)"', page))
    fields = {k: html.unescape(v) for k, v in fields.items()}
    fields["user"] = user
    if admin:
        fields["admin"] = "1"
    action = urllib.parse.urljoin(url, re.search(r'action="([^"]+)"', page).group(1))
    status, page, headers = _fetch(action, urllib.parse.urlencode(fields).encode())
    assert status == 200, page
    assert "location" not in {k.lower() for k in headers}  # A link, never a redirect.
    return html.unescape(re.search(r'id="continue" href="([^"]+)"', page).group(1))


def test_login_prints_a_token_the_service_accepts(server: str) -> None:
    process, url = _start_login(server)
    assert url.startswith(f"{server}/dev-issuer/authorize?")
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["redirect_uri"][0].startswith("http://127.0.0.1:")
    link = _sign_in(url, "alice")
    status, page, _ = _fetch(link)
    assert status == 200 and "signed in" in page
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    token = out.strip()
    request = urllib.request.Request(
        f"{server}/v1/certificates", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        assert reply.status == 200
        assert json.loads(reply.read())["certificates"] == []
    assert token not in err


def test_a_code_is_single_use_and_bound_to_its_verifier(server: str) -> None:
    process, url = _start_login(server)
    query = {k: v[0] for k, v in urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).items()}
    link = _sign_in(url, "bob", admin=True)
    code = urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)["code"][0]
    # Someone who saw the code but not the CLI's PKCE verifier cannot use it.
    forged = urllib.parse.urlencode(
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": query["redirect_uri"],
            "client_id": "nodecert",
            "code_verifier": "x" * 64,
        }
    ).encode()
    status, body, _ = _fetch(f"{server}/dev-issuer/token", forged)
    assert (status, json.loads(body)["error"]) == (400, "invalid_grant")
    _fetch(link)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert out.count(".") == 2  # A JWT.
    # The CLI used the code: a second use is refused.
    status, body, _ = _fetch(f"{server}/dev-issuer/token", forged)
    assert status == 400


def test_a_wrong_state_is_refused_by_the_cli(server: str) -> None:
    process, url = _start_login(server)
    link = _sign_in(url, "alice")
    tampered = re.sub(r"state=[^&]+", "state=someone-elses", link)
    _fetch(tampered)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert out == ""
    assert err.strip().splitlines()[-1] == (
        "nodecert: error: login: the answer's state is not ours; try again"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"redirect_uri": "http://evil.example:80/callback"}, "redirect_uri"),
        ({"redirect_uri": "https://127.0.0.1:9/callback"}, "redirect_uri"),
        ({"redirect_uri": "http://127.0.0.1/callback"}, "redirect_uri"),
        ({"code_challenge_method": "plain"}, "S256"),
        ({"client_id": "other"}, "client_id"),
        ({"state": "<script>"}, "state"),
    ],
)
def test_the_sign_in_page_refuses_what_a_native_app_would_not_send(
    server: str, change: dict[str, str], message: str
) -> None:
    query = {
        "response_type": "code",
        "client_id": "nodecert",
        "redirect_uri": "http://127.0.0.1:5000/callback",
        "code_challenge": "A" * 43,
        "code_challenge_method": "S256",
        "state": "s",
        **change,
    }
    status, page, _ = _fetch(f"{server}/dev-issuer/authorize?{urllib.parse.urlencode(query)}")
    assert status == 400
    assert message in page
    assert "<script>" not in page


def test_login_with_an_issuer_needs_a_client_id(tmp_path: Path) -> None:
    done = subprocess.run(
        [NODECERT, "login", "--issuer", "https://idp.example"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr == (
        "nodecert: error: --client-id: required with --issuer (the provider's app client id)\n"
    )


def test_login_with_a_localhost_redirect_for_cognito_style_providers(server: str) -> None:
    process, url = _start_login(server, "--redirect-host", "localhost", "--access-token")
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert query["redirect_uri"][0].startswith("http://localhost:")
    _fetch(_sign_in(url, "carol").replace("//localhost:", "//127.0.0.1:"))
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert out.count(".") == 2
