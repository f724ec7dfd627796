"""Shared fixtures: a service on the embedded default in a temporary data dir."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from nodecert.bootstrap import build_service
from nodecert.core.config import Settings
from nodecert.core.ports import Principal
from nodecert.http.app import create_app
from nodecert.issuing.service import Service

ADMIN = Principal(user_id="root-admin", is_admin=True)


@dataclass
class Env:
    """A running embedded-default service and helpers around it."""

    service: Service
    client: TestClient

    def token(self, user: str, *, admin: bool = False, **kwargs: object) -> str:
        assert self.service.dev_issuer is not None
        group = self.service.settings.admin_group if admin else None
        return self.service.dev_issuer.mint(user, admin_group=group, **kwargs)  # type: ignore[arg-type]

    def auth(self, user: str, *, admin: bool = False) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user, admin=admin)}"}

    def add_node(self, node: str, owner: str) -> None:
        self.service.authority.put_node(ADMIN, node, owner)

    def issue(self, user: str, node: str, **body: object) -> dict[str, object]:
        response = self.client.post(
            "/generate-cert", json={"nodeId": node, **body}, headers=self.auth(user)
        )
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]


def make_settings(home: Path, **overrides: object) -> Settings:
    # No background key generation in tests unless a test asks for it: it would only add
    # CPU noise. The pool has tests of its own and `nodecert serve` runs with it.
    overrides.setdefault("key_pool_size", 0)
    return Settings(home=home, **overrides)  # type: ignore[arg-type]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    service = build_service(make_settings(tmp_path / "home"))
    with TestClient(create_app(service), raise_server_exceptions=False) as client:
        yield Env(service, client)
    service.close()
