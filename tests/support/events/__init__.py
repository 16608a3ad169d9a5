"""Real API Gateway event payloads (REST v1 and HTTP API v2), and a way to aim them at a route."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

_HERE = Path(__file__).parent
_REST = json.loads((_HERE / "apigateway-rest-v1.json").read_text())
_HTTP = json.loads((_HERE / "apigateway-http-v2.json").read_text())


def rest_v1_event(
    method: str,
    path: str,
    query: dict[str, str] | None = None,
    stage: str = "prod",
    headers: dict[str, str] | None = None,
    body: str | None = None,
) -> dict[str, Any]:
    """An API Gateway REST API (payload 1.0) proxy event, as a `{proxy+}` resource receives it;
    ``headers`` are added to the payload's own."""
    event = copy.deepcopy(_REST)
    for name, value in (headers or {}).items():
        event["headers"][name] = value
        event["multiValueHeaders"][name] = [value]
    event["body"] = body
    event["httpMethod"] = method
    event["path"] = path
    event["pathParameters"] = {"proxy": path.lstrip("/")}
    event["queryStringParameters"] = dict(query) if query else None
    event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} if query else None
    event["requestContext"].update(httpMethod=method, path=f"/{stage}{path}", stage=stage)
    return event


def http_v2_event(
    method: str,
    path: str,
    query: dict[str, str] | None = None,
    stage: str = "$default",
    headers: dict[str, str] | None = None,
    body: str | None = None,
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) event on the `$default` route; ``headers`` are added
    to the payload's own.

    On the `$default` stage the path is the app's own; a named stage keeps its name in the path.
    """
    event = copy.deepcopy(_HTTP)
    event["headers"].update({name.lower(): value for name, value in (headers or {}).items()})
    if body is not None:
        event["body"] = body
    if stage != "$default":
        path = f"/{stage}{path}"
    event["rawPath"] = path
    event["rawQueryString"] = urlencode(query or {})
    if query:
        event["queryStringParameters"] = dict(query)
    event["requestContext"]["http"].update(method=method, path=path)
    event["requestContext"]["stage"] = stage
    return event


class LambdaContext:
    """The attributes of the Lambda context object that an ASGI adapter may read."""

    function_name = "pipeline-function"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:pipeline-function"
    memory_limit_in_mb = 512
    aws_request_id = "6f1a8c52-3b4e-4d8a-9e3f-2b7c1d0e9a44"
    log_group_name = "/aws/lambda/pipeline-function"
    log_stream_name = "2024/01/20/[$LATEST]abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000
