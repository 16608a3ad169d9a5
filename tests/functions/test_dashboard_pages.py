"""The pages over HTTP, without a browser: the dashboard at /, the docs from vendored files, their
assets under hashed names, the headers a page needs, the token's allow-list and the stage prefix."""

from __future__ import annotations

import base64
import gzip
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from functions.app import create_app, handler
from functions.assets import STATIC_DIR
from functions.settings import FunctionSettings
from tests.support.events import LambdaContext, http_v2_event, rest_v1_event

PAGES = ["/", "/docs", "/redoc"]
URL_ATTRIBUTE = re.compile(r"""(?:src|href|spec-url)="([^"]+)\"""")


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(FunctionSettings(ingestor_address="127.0.0.1:1"))) as test_client:
        yield test_client


def urls_of(html: str) -> list[str]:
    return [url for url in URL_ATTRIBUTE.findall(html) if url != "{{base}}"]


def directives(policy: str) -> dict[str, list[str]]:
    parsed: dict[str, list[str]] = {}
    for part in policy.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


@pytest.mark.parametrize("page", PAGES)
def test_each_page_loads_only_its_own_files_and_no_inline_script(client: TestClient, page: str) -> None:
    response = client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["x-content-type-options"] == "nosniff"
    policy = directives(response.headers["content-security-policy"])
    assert policy["script-src"] == ["'self'"]
    assert policy["default-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["connect-src"] == ["'self'"]
    assert set(policy["img-src"]) <= {"'self'", "data:"}
    html = response.text
    assert '<base href="/">' in html
    # Every script is a file: no inline code, no event handler attributes.
    assert re.findall(r"<script(?![^>]*\ssrc=)[^>]*>", html) == []
    assert not re.search(r"\son[a-z]+=", html)
    for url in urls_of(html):
        assert not re.match(r"^[a-z]+:|^//", url), url  # relative to the base: the app's own origin
        if url.startswith("static/"):
            assert client.get(f"/{url}").status_code == 200, url


def test_the_dashboards_styles_and_scripts_stay_within_the_strict_policy(client: TestClient) -> None:
    assert directives(client.get("/").headers["content-security-policy"])["style-src"] == ["'self'"]
    # ReDoc writes <style> elements as it renders: styles inline there, scripts still its own only.
    redoc = directives(client.get("/redoc").headers["content-security-policy"])
    assert redoc["style-src"] == ["'self'", "'unsafe-inline'"]
    assert redoc["script-src"] == ["'self'"]


def test_hashed_assets_are_immutable_and_plain_ones_revalidate(client: TestClient) -> None:
    html = client.get("/").text
    scripts = [url for url in urls_of(html) if url.endswith(".js")]
    assert len(scripts) >= 5
    for url in scripts:
        plain = re.sub(r"\.[0-9a-f]{12}(\.\w+)$", r"\1", url.removeprefix("static/"))
        content = (STATIC_DIR / plain).read_bytes()
        assert hashlib.sha256(content).hexdigest()[:12] in url  # the name carries the content's hash
        hashed = client.get(f"/{url}", headers={"Accept-Encoding": "identity"})
        assert hashed.status_code == 200
        assert hashed.content == content
        assert hashed.headers["content-type"] == "text/javascript; charset=utf-8"
        assert hashed.headers["cache-control"] == "public, max-age=31536000, immutable"
        etag = hashed.headers["etag"]
        assert client.get(f"/{url}", headers={"If-None-Match": etag, "Accept-Encoding": "identity"}).status_code == 304
        by_name = client.get(f"/static/{plain}", headers={"Accept-Encoding": "identity"})
        assert (by_name.content, by_name.headers["cache-control"], by_name.headers["etag"]) == (
            content,
            "no-cache",
            etag,
        )


def test_assets_go_out_compressed_to_clients_that_take_gzip(client: TestClient) -> None:
    path = "vendor/swagger-ui/swagger-ui-bundle.js"
    raw = client.get(f"/static/{path}", headers={"Accept-Encoding": "gzip"}, follow_redirects=False)
    assert raw.headers["content-encoding"] == "gzip"
    assert raw.headers["vary"] == "Accept-Encoding"
    assert raw.content == (STATIC_DIR / path).read_bytes()  # httpx undid the gzip
    assert int(raw.headers["content-length"]) < (STATIC_DIR / path).stat().st_size / 2
    assert raw.headers["etag"].endswith('-gz"')


def test_unknown_and_unserved_files_are_404(client: TestClient) -> None:
    for path in ("nothing.js", "pages/dashboard.html", "vendor/uplot/LICENSE", "vendor/README.md", "../app.py"):
        assert client.get(f"/static/{path}").status_code == 404, path


def test_the_vendored_libraries_keep_their_licences() -> None:
    vendor = STATIC_DIR / "vendor"
    for library in ("uplot", "swagger-ui", "redoc"):
        assert (
            "Permission is hereby granted" in (vendor / library / "LICENSE").read_text()
            or "Apache License" in (vendor / library / "LICENSE").read_text()
        )
    readme = (vendor / "README.md").read_text()
    assert all(version in readme for version in ("1.6.32", "5.35.0", "2.5.4"))


def test_no_asset_names_another_host_to_load_from() -> None:
    """The pages' own scripts build every URL from the page's base; ReDoc's one logo is replaced."""
    served = re.compile(rb"(?:src|href)\s*[:=]\s*[\"']https?://")
    for path in Path(STATIC_DIR / "dashboard").rglob("*.js"):
        assert not served.search(path.read_bytes()), path
    redoc = TestClient(create_app()).get("/static/vendor/redoc/redoc.standalone.js").content
    assert b"cdn.redoc.ly" not in redoc


def test_pages_and_assets_need_no_token_but_data_does() -> None:
    settings = FunctionSettings(ingestor_address="127.0.0.1:1", api_token="page-token", api_token_for_reads=True)
    with TestClient(create_app(settings)) as guarded:
        html = guarded.get("/").text
        for url in ["/", "/docs", "/redoc", "/openapi.json", *(f"/{u}" for u in urls_of(html) if "static/" in u)]:
            assert guarded.get(url).status_code == 200, url
        assert guarded.get("/static/dashboard/app.js").status_code == 200
        assert guarded.get("/api/v1/status").status_code == 401
        assert guarded.get("/api/v1/stream").status_code == 401
        assert guarded.get("/static/not-an-asset.js").status_code == 401  # only named files are open


def test_the_base_follows_the_root_path(client: TestClient) -> None:
    with TestClient(create_app(FunctionSettings(ingestor_address="127.0.0.1:1")), root_path="/prod") as prefixed:
        html = prefixed.get("/").text
        assert '<base href="/prod/">' in html
        assert 'spec-url="/prod/openapi.json"' in prefixed.get("/redoc").text
        assert 'data-spec-url="/prod/openapi.json"' in prefixed.get("/docs").text


@pytest.mark.usefixtures("lambda_main_thread_loop")
@pytest.mark.parametrize(
    ("event", "base"),
    [
        (rest_v1_event("GET", "/", stage="prod"), "/prod/"),
        (http_v2_event("GET", "/", stage="dev"), "/dev/"),
        (http_v2_event("GET", "/"), "/"),
    ],
    ids=["rest-stage", "http-named-stage", "http-default-stage"],
)
def test_behind_api_gateway_the_page_and_its_assets_are_at_the_stage(event: dict[str, object], base: str) -> None:
    response = handler(event, LambdaContext())
    assert response["statusCode"] == 200
    html = response["body"]
    assert f'<base href="{base}">' in html
    asset = next(url for url in urls_of(html) if url.endswith(".js"))
    path = "/" + asset
    asset_event = rest_v1_event("GET", path, stage="prod") if base == "/prod/" else http_v2_event("GET", path)
    if base == "/dev/":
        asset_event = http_v2_event("GET", path, stage="dev")
    asset_event["headers"]["accept-encoding"] = "gzip"
    fetched = handler(asset_event, LambdaContext())
    assert fetched["statusCode"] == 200
    body = base64.b64decode(fetched["body"]) if fetched["isBase64Encoded"] else fetched["body"].encode()
    content = gzip.decompress(body) if fetched["headers"].get("content-encoding") == "gzip" else body
    plain = re.sub(r"\.[0-9a-f]{12}(\.\w+)$", r"\1", asset.removeprefix("static/"))
    assert content == (STATIC_DIR / plain).read_bytes()
