"""The key metrics as CloudWatch Embedded Metric Format lines on stdout, every ``interval_s``.

On ECS the container's log stream goes to CloudWatch Logs, which extracts these lines as metrics:
no agent and no scraping. Counters are written as what they grew by since the previous line, so
that CloudWatch's Sum over a period is the count of that period; gauges as they are. One
dimension only, ``service``: nothing per call or per category.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ingestor.metrics import IngestorMetrics, Snapshot

SERVICE = "ingestor"


class EmfWriter:
    """Turns successive snapshots into EMF lines (Powertools' Metrics does the format)."""

    def __init__(self, metrics: IngestorMetrics, namespace: str) -> None:
        self._metrics = metrics
        self._namespace = namespace
        self._previous: dict[str, float] = {}

    def write(self, snapshot: Snapshot, now_s: float) -> None:
        # Imported here: only an ingestor that writes EMF loads Powertools.
        from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

        emf = EphemeralMetrics(namespace=self._namespace, service=SERVICE)
        totals = {
            "ReadingsIngested": float(sum(snapshot.ingested.values())),
            "ReadingsRejected": float(sum(snapshot.rejected.values())),
            "ReadingsEvicted": float(snapshot.evicted),
            "ReadingsLate": float(snapshot.late),
            "SubscriberMissedReadings": float(snapshot.missed),
            "JournalCommits": float(self._metrics.commits),
            "JournalCommitSeconds": self._metrics.commit_seconds,
        }
        grown = {name: max(0.0, value - self._previous.get(name, 0.0)) for name, value in totals.items()}
        self._previous = totals
        for name in ("ReadingsIngested", "ReadingsRejected", "ReadingsEvicted", "ReadingsLate"):
            emf.add_metric(name=name, unit=MetricUnit.Count, value=grown[name])
        emf.add_metric(name="SubscriberMissedReadings", unit=MetricUnit.Count, value=grown["SubscriberMissedReadings"])
        emf.add_metric(name="BufferedReadings", unit=MetricUnit.Count, value=snapshot.buffered)
        emf.add_metric(
            name="BufferFillPercent", unit=MetricUnit.Percent, value=100.0 * snapshot.buffered / snapshot.capacity
        )
        emf.add_metric(name="GeneratorRunning", unit=MetricUnit.Count, value=int(snapshot.generator_running))
        emf.add_metric(name="WatchSubscribers", unit=MetricUnit.Count, value=snapshot.subscribers)
        if snapshot.newest_event_time_s is not None:
            emf.add_metric(
                name="NewestEventAgeSeconds",
                unit=MetricUnit.Seconds,
                value=max(0.0, now_s - snapshot.newest_event_time_s),
            )
        if snapshot.durable:
            emf.add_metric(name="DataDirBytes", unit=MetricUnit.Bytes, value=snapshot.data_dir_bytes)
            if grown["JournalCommits"]:
                mean_ms = 1000 * grown["JournalCommitSeconds"] / grown["JournalCommits"]
                emf.add_metric(name="JournalCommitMilliseconds", unit=MetricUnit.Milliseconds, value=mean_ms)
        emf.flush_metrics()


async def write_emf_every(interval_s: float, take: Callable[[], Snapshot], writer: EmfWriter) -> None:
    """Write a line every ``interval_s`` until cancelled (the first one after ``interval_s``)."""
    while True:
        await asyncio.sleep(interval_s)
        writer.write(take(), time.time())
