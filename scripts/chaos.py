"""`make loadtest --chaos`: the durable ingestor killed (SIGKILL) at random moments and restarted.

The kills, the outages they cause (killed, listening again, answering through the function again),
and the checks made afterwards: every failed request was a 503 (or, for a push straight to the
ingestor, UNAVAILABLE) during an outage, and every acknowledged pushed reading is held exactly once.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import httpx
import numpy as np

from devtools.processes import ServerProcess

RETRY_PAUSE_S = 0.1
"""How long a client waits after a 503 before its next request (or its retry of a push)."""


@dataclass
class Outage:
    """One kill, on the monotonic clock: when, when the new ingestor listened, and when the
    function answered a request again."""

    killed_at: float
    listening_at: float = float("inf")
    recovered_at: float = float("inf")

    def overlaps(self, sent_at: float, answered_at: float) -> bool:
        return sent_at <= self.recovered_at and answered_at >= self.killed_at


@dataclass(frozen=True)
class Failure:
    """A request that failed: what it was, when it was sent and answered, and how it failed."""

    call: str
    sent_at: float
    answered_at: float
    unavailable: bool
    """A 503 from the function, or UNAVAILABLE from the ingestor: what an outage may cause."""
    problem: str


def kill_moments(rng: random.Random, kills: int, duration_s: float) -> list[float]:
    """``kills`` random moments (seconds after the start), one in each of as many equal slots
    between 5 % and 80 % of the run, so that the last outage ends before the run does."""
    first, last = 0.05 * duration_s, 0.8 * duration_s
    slot = (last - first) / max(kills, 1)
    return [first + slot * number + rng.uniform(0, slot) for number in range(kills)]


@dataclass
class Chaos:
    """Kills the ingestor at the given moments and restarts it (same port, same data directory)."""

    ingestor: ServerProcess
    restart: Callable[[], ServerProcess]
    outages: list[Outage] = field(default_factory=list)

    async def run(self, http: httpx.AsyncClient, began: float, moments: Iterable[float], stop_at: float) -> None:
        """Each kill waits for the previous outage to end; none starts after ``stop_at``."""
        for moment in moments:
            await asyncio.sleep(max(0.0, began + moment - time.monotonic()))
            if time.monotonic() >= stop_at:
                return
            await self._kill_and_restart(http)

    async def _kill_and_restart(self, http: httpx.AsyncClient) -> None:
        outage = Outage(time.monotonic())
        self.outages.append(outage)
        os.kill(self.ingestor.process.pid, signal.SIGKILL)
        await asyncio.to_thread(self.ingestor.stop)
        self.ingestor = await asyncio.to_thread(self.restart)
        outage.listening_at = time.monotonic()
        # A restarted ingestor does not generate until asked: the first answer through the
        # function ends the outage.
        while True:
            answer = await http.post("/api/v1/start-ingestion")
            if answer.status_code == 200:
                break
            await asyncio.sleep(0.02)
        outage.recovered_at = time.monotonic()

    def expected(self, failure: Failure) -> bool:
        """Whether a failure is one an outage explains: unavailable, while the ingestor was down."""
        return failure.unavailable and any(
            outage.overlaps(failure.sent_at, failure.answered_at) for outage in self.outages
        )

    def report(self, began: float) -> None:
        for number, outage in enumerate(self.outages, 1):
            print(
                f"kill {number} at {outage.killed_at - began:5.1f} s: listening again after "
                f"{outage.listening_at - outage.killed_at:.2f} s, answering through the function after "
                f"{outage.recovered_at - outage.killed_at:.2f} s"
            )


def exactly_once(acknowledged: set[float], sent: set[float], held: np.ndarray) -> list[str]:
    """What is wrong with the pushed readings held (their values, each unique when sent): an
    acknowledged one missing, one held twice, or one that was never sent."""
    counts = Counter(held.tolist())
    problems = []
    if missing := acknowledged - counts.keys():
        problems.append(f"{len(missing)} acknowledged readings missing")
    if twice := [value for value, count in counts.items() if count > 1]:
        problems.append(f"{len(twice)} readings held more than once")
    if unknown := counts.keys() - sent:
        problems.append(f"{len(unknown)} readings held that were never sent")
    return problems
