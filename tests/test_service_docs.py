"""``/docs`` and ``/redoc`` work offline: every asset is served by the app itself."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.test_service_support import (  # noqa: F401 — fixtures
    TOKEN,
    make_client_fixture,
    root_fixture,
)

ASSET = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")
CONTENT_TYPES = {".js": ("text/javascript", "application/javascript"), ".css": ("text/css",),
                 ".png": ("image/png",)}


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_use_only_local_assets(
    make_client: Callable[..., TestClient], page: str
) -> None:
    client = make_client(token=TOKEN)  # the docs stay public with a token
    resp = client.get(page)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    html = resp.text
    assert "http://" not in html and "https://" not in html  # no CDN, no fonts, no validator
    assets = ASSET.findall(html)
    assert any(a.endswith(".js") for a in assets), assets
    for url in assets:
        assert url.startswith("/") and not url.startswith("//"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        suffix = Path(url).suffix
        media = asset.headers["content-type"].split(";")[0].strip()
        assert media in CONTENT_TYPES[suffix], (url, media)
        assert len(asset.content) > 100
    # The spec the page loads is the app's own.
    assert "/openapi.json" in html
    assert client.get("/openapi.json").status_code == 200


def test_swagger_ui_does_not_call_the_online_validator(
    make_client: Callable[..., TestClient],
) -> None:
    assert '"validatorUrl": null' in make_client().get("/docs").text
