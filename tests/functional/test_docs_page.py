"""``GET /docs``: Swagger UI from the installed package, with nothing loaded from a CDN."""

from __future__ import annotations

import re

from ..conftest import Env


def test_the_docs_page_loads_only_from_the_service(env: Env) -> None:
    page = env.client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources, page.text
    assert all(s.startswith("/docs/assets/") for s in sources), sources
    assert "cdn" not in page.text.lower()
    assert "'/openapi.json'" in page.text or '"/openapi.json"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in sources:
        fetched = env.client.get(asset)
        assert fetched.status_code == 200, asset
        assert len(fetched.content) > 100


def test_the_assets_route_serves_nothing_else(env: Env) -> None:
    for path in (
        "/docs/assets/../../../etc/passwd",
        "/docs/assets/%2e%2e/%2e%2e/etc/passwd",
        "/docs/assets/nope.js",
    ):
        reply = env.client.get(path)
        assert reply.status_code == 404, path
        assert "root:" not in reply.text
