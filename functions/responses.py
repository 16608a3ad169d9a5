"""JSON answers encoded with orjson: several times faster than the standard encoder on thousands of rows."""

from __future__ import annotations

import orjson
from fastapi.responses import Response


def json_response(content: object, status_code: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status_code, media_type="application/json")
