"""The dashboard's shell, GraphiQL's page and /assets/: offline, cached, never rate limited."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.settings import Settings
from services.runtime import Runtime

IMMUTABLE = "public, max-age=31536000, immutable"
LOCAL_URL = re.compile(r'(?:src|href)="(/assets/[^"]+)"')
IMPORTED = re.compile(r'"(/assets/[^"]+\.js)"')


@pytest.fixture
async def limited(settings: Settings, runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """The app with a per-IP limit of 2 unauthenticated requests a minute."""
    app = create_app(replace(settings, rate_limit_per_ip=2), runtime=runtime, manage_database=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tally.test") as http:
        yield http


async def test_the_root_redirects_to_the_dashboard(client: httpx.AsyncClient) -> None:
    for path in ("/", "/app"):
        response = await client.get(path)
        assert response.status_code == 307
        assert response.headers["location"] == "/app/"


async def test_the_shell_names_only_fingerprinted_assets_that_exist(
    client: httpx.AsyncClient,
) -> None:
    shell = await client.get("/app/")
    assert shell.headers["cache-control"] == "no-cache"
    assert "https://" not in shell.text
    assert "http://" not in shell.text
    urls = LOCAL_URL.findall(shell.text) + IMPORTED.findall(shell.text.split("importmap")[1])
    fingerprinted = [u for u in urls if re.search(r"\.[0-9a-f]{10}\.\w+$", u)]
    assert "/assets/app/main." in " ".join(fingerprinted)
    for url in fingerprinted:
        response = await client.get(url)
        assert response.status_code == 200, url
        assert response.headers["cache-control"] == IMMUTABLE


async def test_graphiql_s_page_loads_everything_from_tally(client: httpx.AsyncClient) -> None:
    page = await client.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert "unpkg.com" not in page.text
    assert "https://" not in page.text
    urls = LOCAL_URL.findall(page.text)
    assert len(urls) == 5
    for url in urls:
        assert (await client.get(url)).status_code == 200, url


async def test_a_plain_asset_url_is_revalidated_with_its_etag(client: httpx.AsyncClient) -> None:
    first = await client.get("/assets/app/dates.js")
    assert first.status_code == 200
    assert first.headers["cache-control"] == "no-cache"
    assert first.headers["content-type"] == "text/javascript; charset=utf-8"
    again = await client.get(
        "/assets/app/dates.js", headers={"If-None-Match": first.headers["etag"]}
    )
    assert again.status_code == 304
    assert again.content == b""


async def test_assets_are_gzipped_for_clients_that_accept_it(client: httpx.AsyncClient) -> None:
    packed = await client.get(
        "/assets/vendor/uplot/uPlot.esm.js", headers={"Accept-Encoding": "gzip"}
    )
    plain = await client.get(
        "/assets/vendor/uplot/uPlot.esm.js", headers={"Accept-Encoding": "identity"}
    )
    assert packed.headers["content-encoding"] == "gzip"
    assert int(packed.headers["content-length"]) < int(plain.headers["content-length"]) / 2
    assert "content-encoding" not in plain.headers
    assert packed.content == plain.content  # httpx decoded the gzip


@pytest.mark.parametrize(
    "path",
    [
        "/assets/app/nothing.js",
        "/assets/app/main.0123456789.js",  # a fingerprint of no version of the file
        "/assets/../pyproject.toml",
        "/assets/%2e%2e/api/app.py",
        "/assets/app/../../static_files.py",
    ],
)
async def test_anything_else_under_assets_is_not_found(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 404


async def test_loading_the_app_and_graphiql_never_meets_the_per_ip_limit(
    limited: httpx.AsyncClient,
) -> None:
    shell = await limited.get("/app/")
    assets = LOCAL_URL.findall(shell.text)
    for _ in range(5):
        for path in ("/", "/app/", *assets):
            assert (await limited.get(path)).status_code in {200, 307}, path
        page = await limited.get("/graphql", headers={"Accept": "text/html"})
        assert page.status_code == 200
    # while a query without a token still counts
    statuses = [(await limited.get("/graphql?query={__typename}")).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


def test_every_vendored_package_is_the_pinned_version_with_its_license(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    vendor_script = Path(__file__).resolve().parents[2] / "scripts" / "vendor.py"
    spec = importlib.util.spec_from_file_location("vendor", vendor_script)
    assert spec is not None
    assert spec.loader is not None
    vendor = importlib.util.module_from_spec(spec)
    # dataclasses look their module up while the module runs
    monkeypatch.setitem(sys.modules, spec.name, vendor)
    spec.loader.exec_module(vendor)
    folders = {p.name for p in vendor.VENDOR.iterdir() if p.is_dir()}
    assert folders == {package.folder for package in vendor.PACKAGES}
    for package in vendor.PACKAGES:
        folder = vendor.VENDOR / package.folder
        assert (folder / "VERSION").read_text() == f"{package.name}@{package.version}\n"
        assert (folder / "LICENSE").read_text().strip()
        for name in package.files.values():
            assert (folder / name).is_file(), name


async def test_the_shell_allows_scripts_and_connections_to_tally_only(
    client: httpx.AsyncClient,
) -> None:
    shell = await client.get("/app/")
    policy = dict(
        directive.strip().split(" ", 1)
        for directive in shell.headers["content-security-policy"].split(";")
    )
    import_map = re.search(r'<script type="importmap">(.*?)</script>', shell.text, re.S)
    assert import_map is not None
    digest = base64.b64encode(hashlib.sha256(import_map.group(1).encode()).digest()).decode()
    assert policy["script-src"] == f"'self' 'sha256-{digest}'"
    assert policy["connect-src"] == "'self'"
    assert policy["default-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
