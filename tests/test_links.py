"""The rel="next" Link keeps whatever path prefix the client used."""

from __future__ import annotations

from starlette.requests import Request

from functions.links import next_link


def request(path: str, query: bytes, root_path: str = "", event: dict[str, object] | None = None) -> Request:
    scope: dict[str, object] = {
        "type": "http",
        "method": "GET",
        "path": path,
        "root_path": root_path,
        "query_string": query,
        "headers": [(b"host", b"example.test")],
        "scheme": "https",
        "server": ("example.test", 443),
    }
    if event is not None:
        scope["aws.event"] = event
    return Request(scope)


def test_plain_path_and_query_with_the_token_replaced() -> None:
    link = next_link(request("/api/v1/raw-data", b"category=A&category=B&page_token=old&limit=5"), "new")
    assert link == '</api/v1/raw-data?category=A&category=B&limit=5&page_token=new>; rel="next"'


def test_root_path_prefix_whether_or_not_the_server_put_it_in_path() -> None:
    expected = '</stage/api/v1/raw-data?page_token=t>; rel="next"'
    assert next_link(request("/stage/api/v1/raw-data", b"", root_path="/stage"), "t") == expected
    assert next_link(request("/api/v1/raw-data", b"", root_path="/stage"), "t") == expected


def test_api_gateway_stage_from_the_event() -> None:
    event = {"path": "/api/v1/raw-data", "requestContext": {"path": "/prod/api/v1/raw-data", "stage": "prod"}}
    link = next_link(request("/api/v1/raw-data", b"limit=2", event=event), "t")
    assert link == '</prod/api/v1/raw-data?limit=2&page_token=t>; rel="next"'
