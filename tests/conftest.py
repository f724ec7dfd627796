"""Shared fixtures: a service on the embedded default in a temporary data dir."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from nodecert.bootstrap import build_service
from nodecert.core.config import Settings
from nodecert.core.values import Principal
from nodecert.http.app import create_app
from nodecert.issuing.service import Service

# Property tests must not fail because a noisy 2-core machine was slow: no per-example
# deadline and no "too slow" health check (a test's own settings may still ask for more).
# No example database (derandomize implies it): a unit test writes no file, and a falsified
# property must show its own failure, not the purity guard's. Derandomized: the
# same examples on every run, so a fresh clone's `make test` is green or red for a reason
# in the repository, never by the draw (`make test PYTEST_ARGS=--hypothesis-seed=N`
# explores further on purpose).
settings.register_profile(
    "nodecert",
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile("nodecert")

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
        self.service.administration.put_node(ADMIN, node, owner)

    def issue(self, user: str, node: str, **body: object) -> dict[str, object]:
        response = self.client.post(
            "/generate-cert", json={"nodeId": node, **body}, headers=self.auth(user)
        )
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def _scratch_cwd(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No test reads or writes the directory pytest was started in: a checkout where someone
    # followed the README's Quick start (n1.crt, ./.nodecert) must test like a fresh clone.
    # (tests/unit/conftest.py overrides it: unit tests touch no file at all.)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


def make_settings(home: Path, **overrides: object) -> Settings:
    # No background key generation in tests unless a test asks for it: it would only add
    # CPU noise. The pool has tests of its own and `nodecert serve` runs with it.
    overrides.setdefault("key_pool_size", 0)
    return Settings(home=home, **overrides)  # type: ignore[arg-type]


@pytest.fixture
def make_service(tmp_path: Path) -> Iterator[Callable[..., Service]]:
    """Build services on ``tmp_path / "home"`` (one CA and ledger), closed after the test.

    Keyword arguments are settings (see :func:`make_settings`).
    """
    built: list[Service] = []

    def make(**overrides: object) -> Service:
        service = build_service(make_settings(tmp_path / "home", **overrides))
        built.append(service)
        return service

    yield make
    for service in built:
        service.close()


@pytest.fixture
def service_settings() -> dict[str, object]:
    """Settings of the ``service`` fixture; a test module overrides this to change them."""
    return {}


@pytest.fixture
def service(make_service: Callable[..., Service], service_settings: dict[str, object]) -> Service:
    """A service on the embedded default (see ``service_settings``)."""
    return make_service(**service_settings)


@pytest.fixture
def env(service: Service) -> Iterator[Env]:
    with TestClient(create_app(service), raise_server_exceptions=False) as client:
        yield Env(service, client)
