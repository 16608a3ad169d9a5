"""The naive baseline: readings kept as a list of dicts, a DataFrame built from them per request.

This is the obvious way to build what the specification describes, served the same way as the
project (uvicorn, orjson). ``POST /load`` takes an ``.npz`` path written by the benchmark, so the
baseline holds exactly the readings the ingestor holds; loading is not what is measured.

``GET /bytes`` is the floor of a file export: a number of bytes made in advance, streamed in chunks
of a given size, which is what uvicorn and the client cost without any reading or encoding.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pandas as pd
from fastapi import FastAPI
from fastapi.responses import Response, StreamingResponse

app = FastAPI()
readings: list[dict[str, Any]] = []


@app.post("/load")
def load(path: str) -> dict[str, int]:
    with np.load(path) as data:
        names = data["categories"].tolist()
        micros = (data["timestamps_ns"] // 1000).tolist()
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        readings.clear()
        readings.extend(
            {"timestamp": epoch + timedelta(microseconds=us), "value": value, "category": names[code]}
            for us, value, code in zip(micros, data["values"].tolist(), data["codes"].tolist(), strict=True)
        )
    return {"loaded": len(readings)}


@app.get("/api/v1/processed-data")
def processed_data() -> Response:
    if not readings:
        return Response(b"[]", media_type="application/json")
    frame = pd.DataFrame(readings)
    stats = (
        frame.groupby("category")
        .agg(avg_value=("value", "mean"), count=("value", "count"), last_timestamp=("timestamp", "max"))
        .reset_index()
    )
    stats["last_timestamp"] = stats["last_timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return Response(orjson.dumps(stats.to_dict(orient="records")), media_type="application/json")


@app.get("/bytes")
def some_bytes(total: int, chunk: int) -> StreamingResponse:
    block = os.urandom(max(1, min(chunk, total)))  # incompressible, made before the answer starts

    def chunks() -> Iterator[bytes]:
        for start in range(0, total, len(block)):
            yield block[: min(len(block), total - start)]

    return StreamingResponse(chunks(), media_type="application/octet-stream")
