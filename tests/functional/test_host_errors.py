"""An OSError nobody translated (a full disk, no descriptors left) is a 503, never a 500."""

from __future__ import annotations

import errno
import logging

import pytest

from nodecert.http.contract import error_reply

from ..conftest import Env


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EMFILE, errno.EIO, errno.EROFS])
def test_an_os_error_from_a_route_is_a_503_with_retry_after(
    env: Env, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, code: int
) -> None:
    def refuse(*args: object, **kwargs: object) -> object:
        raise OSError(code, "no room", "/var/lib/nodecert/secret-file-name")

    monkeypatch.setattr(env.service.administration, "list_certificates", refuse)
    reply = env.client.get("/v1/certificates", headers=env.auth("alice"))
    assert reply.status_code == 503, reply.text
    assert reply.json()["code"] == "unavailable"
    assert int(reply.headers["retry-after"]) > 0
    assert "secret-file-name" not in reply.text
    assert "secret-file-name" not in caplog.text
    assert "Traceback" not in caplog.text


def test_the_lambda_front_end_answers_it_the_same_way() -> None:
    reply = error_reply(OSError(errno.ENOSPC, "No space left on device"), "GET", "/v1/ca")
    assert (reply.status, reply.body["code"]) == (503, "unavailable")
    assert reply.headers["Retry-After"] == "10"


def test_any_other_unexpected_error_is_still_a_500(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        reply = error_reply(KeyError("x"), "GET", "/v1/ca")
    assert reply.status == 500
