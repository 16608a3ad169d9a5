"""What GetHistory needs besides the rollups: where the buffer starts, and rollups that took in every
reading stored before the call."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from ingestor.rollups import Rollups
from ingestor.store import ReadingStore

CATCH_UP_S = 2.0
"""How long a history call waits at most for the rollups to take in what was stored before it."""


def buffer_oldest_ns(store: ReadingStore) -> int | None:
    """The oldest event time among the readings held (not the oldest reading's: late ones may be older)."""
    runs = store.views(store.oldest_sequence, store.total_ingested)
    if not runs:
        return None
    return min(int(np.min(run.timestamps_ns)) for run in runs)


async def caught_up(rollups: Rollups, total_ingested: int) -> None:
    """Wait until the rollups count every reading numbered below ``total_ingested`` (or CATCH_UP_S passed)."""
    deadline = time.monotonic() + CATCH_UP_S
    # Polled: the rollups move on in another thread (the rollup feed or the journal writer).
    while rollups.covered_until < total_ingested and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.002)
