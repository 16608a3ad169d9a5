"""The rel="next" Link keeps whatever path prefix the client used."""

from __future__ import annotations

from typing import Any

from mangum import Mangum
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from functions.gateway import GatewayPrefix
from functions.links import next_link
from tests.support.events import LambdaContext, http_v2_event, rest_v1_event


def request(path: str, query: bytes, root_path: str = "") -> Request:
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
    return Request(scope)


def test_plain_path_and_query_with_the_token_replaced() -> None:
    link = next_link(request("/api/v1/raw-data", b"category=A&category=B&page_token=old&limit=5"), "new")
    assert link == '</api/v1/raw-data?category=A&category=B&limit=5&page_token=new>; rel="next"'


def test_root_path_prefix_whether_or_not_the_server_put_it_in_path() -> None:
    expected = '</stage/api/v1/raw-data?page_token=t>; rel="next"'
    assert next_link(request("/stage/api/v1/raw-data", b"", root_path="/stage"), "t") == expected
    assert next_link(request("/api/v1/raw-data", b"", root_path="/stage"), "t") == expected


async def _link_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers with the next link of the request, as the Lambda handler hands it to the app."""
    await PlainTextResponse(next_link(Request(scope), "t"))(scope, receive, send)


def _link_through_the_handler(event: dict[str, Any]) -> str:
    response = Mangum(GatewayPrefix(_link_app), lifespan="off")(event, LambdaContext())
    return str(response["body"])


def test_api_gateway_stage_from_the_event() -> None:
    event = rest_v1_event("GET", "/api/v1/raw-data", {"limit": "2"}, stage="prod")
    link = _link_through_the_handler(event)
    assert link == '</prod/api/v1/raw-data?limit=2&page_token=t>; rel="next"'


def test_http_api_named_stage_from_the_event() -> None:
    event = http_v2_event("GET", "/api/v1/raw-data", {"limit": "2"}, stage="beta")
    assert _link_through_the_handler(event) == '</beta/api/v1/raw-data?limit=2&page_token=t>; rel="next"'
