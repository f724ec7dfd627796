"""Device authorization grants of the dev issuer (RFC 8628), kept in files of the home.

``nodecert login`` against a service on the embedded default starts a grant (``POST
/v1/dev/device``) and polls ``POST /v1/dev/token``; the grant is approved on the server's
machine with ``nodecert dev-approve USER-CODE USER``, which needs the home, as ``nodecert
dev-token`` does: reaching the port is never enough to get a token. Grants are files in
``<home>/dev-device/`` (0700; each 0600, named by the SHA-256 of the device code, which is
never stored), so every worker of ``nodecert serve`` and the CLI see the same ones. A grant
lasts ten minutes and hands out one token.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nodecert.core.errors import InvalidRequestError, NotFoundError
from nodecert.core.identity import user_id_for_subject

__all__ = [
    "Approval",
    "DeviceGrants",
    "DeviceStart",
    "GrantExpiredError",
    "GrantPendingError",
]

# RFC 8628 section 6.1: no vowels (no words), no easily confused characters.
_USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
_USER_CODE = re.compile(r"[BCDFGHJKLMNPQRSTVWXZ]{4}-?[BCDFGHJKLMNPQRSTVWXZ]{4}")
_DEVICE_CODE = re.compile(r"[A-Za-z0-9_-]{43}")
_MAX_GRANTS = 1000


class GrantPendingError(Exception):
    """The grant is not approved yet (``authorization_pending``)."""


class GrantExpiredError(Exception):
    """The grant is unknown, used or expired (``expired_token``)."""


@dataclass(frozen=True, slots=True)
class DeviceStart:
    """What ``POST /v1/dev/device`` answers (RFC 8628 section 3.2)."""

    device_code: str
    user_code: str
    expires_in: int
    interval: int


@dataclass(frozen=True, slots=True)
class Approval:
    """Who approved a grant: the subject to name in the token, and whether as an admin."""

    subject: str
    admin: bool


class DeviceGrants:
    """The dev issuer's grants in ``directory``.

    Args:
        directory: Where grant files live (created 0700).
        lifetime_s: How long a grant may wait for its approval.
        interval_s: How often a client may poll.
        clock: Returns the current Unix time.
    """

    def __init__(
        self,
        directory: Path,
        *,
        lifetime_s: int = 600,
        interval_s: int = 2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self.lifetime_s = lifetime_s
        self.interval_s = interval_s
        self.clock = clock

    def start(self) -> DeviceStart:
        """Open a grant and return its codes.

        Raises:
            InvalidRequestError: too many grants are waiting (a flood of requests).
        """
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._sweep()
        if sum(1 for _ in self.directory.glob("*.json")) >= _MAX_GRANTS:
            raise InvalidRequestError("device: too many grants are waiting; try again later")
        device_code = secrets.token_urlsafe(32)
        letters = "".join(secrets.choice(_USER_CODE_ALPHABET) for _ in range(8))
        user_code = f"{letters[:4]}-{letters[4:]}"
        record = {"user_code": user_code, "expires": self.clock() + self.lifetime_s}
        self._write(self._path(device_code), record)
        return DeviceStart(device_code, user_code, self.lifetime_s, self.interval_s)

    def approve(self, user_code: str, approval: Approval) -> None:
        """Approve the waiting grant of ``user_code`` for ``approval``'s user.

        Raises:
            NotFoundError: no waiting grant has this code (mistyped, expired or used).
        """
        code = user_code.strip().upper().replace(" ", "")
        if not _USER_CODE.fullmatch(code):
            raise NotFoundError(f"user code: {user_code[:20]!r} is not a code like BCDF-GHJK")
        if "-" not in code:
            code = f"{code[:4]}-{code[4:]}"
        self._sweep()
        for path in sorted(self.directory.glob("*.json")):
            record = self._read(path)
            if record is not None and record.get("user_code") == code:
                if "approval" not in record:
                    record["approval"] = {"subject": approval.subject, "admin": approval.admin}
                    self._write(path, record)
                return
        raise NotFoundError(f"user code: no grant {code} is waiting (expired or used?)")

    def redeem(self, device_code: object) -> Approval:
        """The approval of the grant of ``device_code``; the grant is used up.

        Raises:
            GrantPendingError: not approved yet.
            GrantExpiredError: unknown, used or expired.
        """
        if not isinstance(device_code, str) or not _DEVICE_CODE.fullmatch(device_code):
            raise GrantExpiredError("device_code: unknown")
        path = self._path(device_code)
        record = self._read(path)
        if record is None or not _alive(record, self.clock()):
            with contextlib.suppress(OSError):
                path.unlink()
            raise GrantExpiredError("device_code: unknown or expired")
        approval = record.get("approval")
        if not isinstance(approval, dict):
            raise GrantPendingError("device_code: not approved yet")
        try:
            path.unlink()  # One token per grant: of two racing polls, one unlinks.
        except FileNotFoundError:
            raise GrantExpiredError("device_code: already used") from None
        return Approval(subject=str(approval["subject"]), admin=bool(approval["admin"]))

    def _path(self, device_code: str) -> Path:
        return self.directory / f"{hashlib.sha256(device_code.encode()).hexdigest()}.json"

    def _sweep(self) -> None:
        now = self.clock()
        for path in self.directory.glob("*.json"):
            record = self._read(path)
            if record is None or not _alive(record, now):
                with contextlib.suppress(OSError):
                    path.unlink()

    @staticmethod
    def _read(path: Path) -> dict[str, object] | None:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    @staticmethod
    def _write(path: Path, record: dict[str, object]) -> None:
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(record, out)
        os.replace(temporary, path)


def _alive(record: dict[str, object], now: float) -> bool:
    expires = record.get("expires")
    return isinstance(expires, int | float) and now < expires


def dev_token_claims(
    subject: str, *, admin: bool, user_id_claim: str, admin_claim: str | None, admin_group: str
) -> tuple[str, str | None, dict[str, object]]:
    """``(user id, admin group, extra claims)`` of a dev token for ``subject``: the subject and
    the role where the settings read them (``NODECERT_USER_ID_CLAIM``, ``..._ADMIN_CLAIM``).

    Raises:
        InvalidIdentifierError: a subject no user id can be made of.
    """
    extra: dict[str, object] = {user_id_claim: subject}
    group = admin_group if admin else None
    if group is not None and admin_claim is not None:
        extra[admin_claim] = [group]
        group = None
    return user_id_for_subject(subject), group, extra
