"""The API's endpoints that need the ingestor, as requests to send: every one is in these tables."""

from __future__ import annotations

PUSH = [{"timestamp": "2024-01-20T10:00:00Z", "value": 1.5, "category": "A"}]

# Every endpoint that needs the ingestor: (method, path and query, JSON body). Endpoints added
# later go here. The last start has a body, so that the ingestor is left running after it.
DATA_ENDPOINTS: list[tuple[str, str, object]] = [
    ("GET", "/status", None),
    ("GET", "/raw-data", None),
    ("GET", "/raw-data?category=A&category=B&since=2024-01-20T00:00:00Z&until=2030-01-01T00:00:00Z&limit=5", None),
    ("GET", "/processed-data", None),
    ("GET", "/processed-data?category=A&since=2024-01-20T00:00:00Z", None),
    ("GET", "/processed-data?window=1m&stats=min,max,std,p99", None),
    ("POST", "/readings", PUSH),
    ("POST", "/start-ingestion", None),
    ("POST", "/stop-ingestion", None),
    ("POST", "/start-ingestion", {"rate_hz": 100, "categories": ["A", "B"], "seed": 1}),
]
# The live stream fails like the others before it starts; once it has, it never ends.
STREAM = ("GET", "/stream?category=A", None)
