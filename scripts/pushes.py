"""The load run's pushes: readings whose values are unique in the run, each batch with a key of its
own, sent again with the same key after a 503 (HTTP) or UNAVAILABLE (gRPC) until acknowledged.

Unique values let the run check afterwards that every acknowledged reading is held exactly once.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

import grpc
import httpx
import numpy as np

from functions.wire import decode_export
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc
from scripts.chaos import RETRY_PAUSE_S, Failure, exactly_once

# Each way of pushing has a category of its own, which the generator never uses, so that the
# pushed readings can be counted afterwards.
PUSH_CATEGORY = "loadtest-push"
HTTP_PUSH_CATEGORY = "loadtest-http-push"
PUSH_BATCH = 10
GIVE_UP_AFTER_S = 30.0
"""A push still unacknowledged this long after the run's end is given up (and counted as failed)."""


@dataclass
class Ledger:
    """What was pushed and acknowledged (reading values per category), and the failed attempts."""

    sent: dict[str, set[float]] = field(default_factory=lambda: defaultdict(set))
    acknowledged: dict[str, set[float]] = field(default_factory=lambda: defaultdict(set))
    failures: list[Failure] = field(default_factory=list)
    retries: int = 0
    """Attempts after a batch's first."""
    replayed: int = 0
    """Retries answered as replays: the ingestor had stored the batch before the attempt failed."""


class Pusher:
    """One client's pushes; ``number`` (below 2**20) makes its values its own."""

    def __init__(self, number: int, ledger: Ledger, stop_at: float) -> None:
        self._next_value = number << 32
        self._ledger = ledger
        self._give_up_at = stop_at + GIVE_UP_AFTER_S

    def _batch(self, category: str) -> tuple[str, list[float]]:
        first = self._next_value
        self._next_value += PUSH_BATCH
        values = [float(first + offset) for offset in range(PUSH_BATCH)]
        self._ledger.sent[category].update(values)
        return f"{category}-{first}", values

    def _acknowledged(self, category: str, values: list[float], replayed: bool) -> None:
        self._ledger.acknowledged[category].update(values)
        self._ledger.replayed += replayed

    def _failed(self, call: str, sent_at: float, unavailable: bool, problem: str) -> bool:
        """Note a failed attempt; whether to try again."""
        self._ledger.failures.append(Failure(call, sent_at, time.monotonic(), unavailable, problem))
        again = unavailable and time.monotonic() < self._give_up_at
        self._ledger.retries += again
        return again

    async def over_http(self, http: httpx.AsyncClient, call: str) -> bool:
        key, values = self._batch(HTTP_PUSH_CATEGORY)
        moment = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        body = [{"timestamp": moment, "value": value, "category": HTTP_PUSH_CATEGORY} for value in values]
        while True:
            sent_at = time.monotonic()
            try:
                answer = await http.post("/api/v1/readings", json=body, headers={"Idempotency-Key": key})
            except httpx.HTTPError as error:
                self._failed(call, sent_at, False, repr(error)[:200])
                return False
            if answer.status_code == 202 and answer.json() == {"accepted": PUSH_BATCH}:
                self._acknowledged(HTTP_PUSH_CATEGORY, values, answer.headers.get("idempotent-replayed") == "true")
                return True
            if not self._failed(call, sent_at, answer.status_code == 503, f"{answer.status_code} {answer.text[:200]}"):
                return False
            await asyncio.sleep(RETRY_PAUSE_S)

    async def over_grpc(self, stub: pb_grpc.IngestorServiceStub, call: str) -> bool:
        """A write straight to the ingestor; it waits for a connection (``wait_for_ready``), so only
        a call that was under way when the ingestor died fails, with UNAVAILABLE."""
        key, values = self._batch(PUSH_CATEGORY)
        seconds = int(time.time())
        readings = [pb.Reading(timestamp={"seconds": seconds}, value=value, category=PUSH_CATEGORY) for value in values]
        request = pb.WriteReadingsRequest(batch_id=key, readings=readings)
        while True:
            sent_at = time.monotonic()
            try:
                response = await stub.WriteReadings(request, timeout=10, wait_for_ready=True)
            except grpc.aio.AioRpcError as error:
                unavailable = error.code() is grpc.StatusCode.UNAVAILABLE
                if not self._failed(call, sent_at, unavailable, f"{error.code().name} {error.details()}"):
                    return False
                await asyncio.sleep(RETRY_PAUSE_S)
                continue
            if response.accepted == PUSH_BATCH:
                self._acknowledged(PUSH_CATEGORY, values, response.duplicate)
                return True
            self._failed(call, sent_at, False, f"accepted {response.accepted}")
            return False


async def values_in_buffer(stub: pb_grpc.IngestorServiceStub, category: str) -> np.ndarray:
    """The values of a category's readings in the whole buffer, from a full export over gRPC."""
    exported = decode_export([message async for message in stub.ExportReadings(pb.ExportReadingsRequest(), timeout=60)])
    categories = list(exported.categories)
    if category not in categories:
        return np.empty(0)
    return exported.values[exported.codes == categories.index(category)]


async def count_through_api(http: httpx.AsyncClient, category: str) -> int:
    """The same count as the API reports it: the category's ``count`` in /processed-data."""
    answer = await http.get("/api/v1/processed-data", params={"category": category})
    answer.raise_for_status()
    return sum(row["count"] for row in answer.json())


async def check_pushes(
    http: httpx.AsyncClient, stub: pb_grpc.IngestorServiceStub, ledger: Ledger, evicted: int
) -> list[str]:
    """Every acknowledged pushed reading held exactly once (while nothing was evicted), none held twice."""
    failures = []
    # Exact while nothing was evicted: the default capacity (1,000,000) holds the 600,000
    # readings a 60 s run generates at 10,000/s with room for 40 times the pushes measured.
    for category, how in ((PUSH_CATEGORY, "gRPC"), (HTTP_PUSH_CATEGORY, "HTTP")):
        acknowledged = ledger.acknowledged.get(category, set())
        held = await values_in_buffer(stub, category)
        through_api = await count_through_api(http, category)
        print(
            f"pushed readings ({how}): {len(acknowledged):,} accepted, {len(held):,} found in the buffer, "
            f"{through_api:,} counted by /processed-data?category={category}"
        )
        problems = exactly_once(acknowledged if not evicted else set(), ledger.sent.get(category, set()), held)
        if not evicted and not len(acknowledged) == len(held) == through_api:
            problems.append("counts differ")
        print(f"  each acknowledged reading held exactly once: {'; '.join(problems) or 'ok'}")
        failures += [f"pushed readings ({how}): {problem}" for problem in problems]
    if evicted:
        print(f"  {evicted:,} readings were evicted: the pushed ones may be among them")
    return failures
