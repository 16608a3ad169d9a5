"""Prometheus metrics of one ingestor: its registry, what the server feeds it, and its HTTP port.

Counts the ingestor keeps anyway (readings stored, evicted, late, refused; the buffer; the
generator; subscribers) are read at scrape time from a snapshot taken on the server's event loop,
the same numbers ``GetStatus`` answers: at a quiet moment they agree exactly. Calls and journal
commits are observed as they happen (histograms). Every server has a registry of its own, so that
several in one process (tests) do not mix.

Labels stay bounded: method and status code, a refusal's kind, and ``category`` only while the
dictionary holds at most :data:`MAX_CATEGORY_LABELS` names.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import platform
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    GC_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ingestor.errors import PortUnavailable
from ingestor.lateness import NO_WATERMARK

if TYPE_CHECKING:
    from ingestor.generator import GeneratorControl
    from ingestor.intake import Intake
    from ingestor.store import ReadingStore
    from ingestor.watch import WatchHub

log = logging.getLogger("ingestor")

REJECTION_REASONS = (
    "invalid_argument",
    "category_limit_error",
    "batch_id_reused",
    "backpressure",
    "disk_full",
    "journal_error",
    "shutting_down",
    "internal",
)
"""The kinds of refusal a write can meet (``ingestor/service.py``): each has a series from the start."""
MAX_CATEGORY_LABELS = 64
"""Per-category series only while the dictionary holds at most this many names."""
SNAPSHOT_TIMEOUT_S = 10.0
RPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
COMMIT_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the ingestor counts, read at one moment on its event loop."""

    ingested: dict[str, int]
    rejected: dict[str, int]
    duplicates: int
    evicted: int
    late: int
    late_by_category: dict[str, int] | None
    """None while the dictionary is too large for a label per category."""
    buffered: int
    capacity: int
    newest_event_time_s: float | None
    last_arrival_s: float | None
    generator_running: bool
    generator_rate_hz: float
    subscribers: int
    missed: int
    durable: bool
    data_dir_bytes: int
    journal_queue_bytes: int


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


class _SnapshotCollector(Collector):
    """The counts the ingestor keeps, as metric families, from a snapshot taken on its loop."""

    def __init__(self, snapshot: Callable[[], Snapshot | None]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        taken = self._snapshot()
        if taken is None:
            return
        yield from snapshot_families(taken)


def snapshot_families(s: Snapshot) -> Iterator[Metric]:
    ingested = CounterMetricFamily(
        "ingestor_readings_ingested", "Readings stored, by source (restored: carried over at start).", labels=["source"]
    )
    for source in ("generator", "write", "restored"):
        ingested.add_metric([source], s.ingested.get(source, 0))
    yield ingested
    rejected = CounterMetricFamily(
        "ingestor_readings_rejected",
        "Readings of writes refused, by reason; nothing of them stored.",
        labels=["reason"],
    )
    for reason in sorted({*REJECTION_REASONS, *s.rejected}):
        rejected.add_metric([reason], s.rejected.get(reason, 0))
    yield rejected
    yield CounterMetricFamily(
        "ingestor_write_duplicates", "Writes answered as retries of a batch id already stored.", value=s.duplicates
    )
    yield CounterMetricFamily("ingestor_readings_evicted", "Readings dropped from the buffer to make room.", s.evicted)
    yield CounterMetricFamily(
        "ingestor_readings_late", "Readings stored with an event time older than the newest stored before.", s.late
    )
    if s.late_by_category is not None:
        by_category = CounterMetricFamily(
            "ingestor_category_readings_late", "Late readings of each category in use.", labels=["category"]
        )
        for name, count in sorted(s.late_by_category.items()):
            by_category.add_metric([name], count)
        yield by_category
    yield GaugeMetricFamily("ingestor_buffer_readings", "Readings held in the buffer.", s.buffered)
    yield GaugeMetricFamily("ingestor_buffer_capacity_readings", "Readings the buffer holds at most.", s.capacity)
    if s.newest_event_time_s is not None:
        yield GaugeMetricFamily(
            "ingestor_newest_event_time_seconds", "Newest event time stored (Unix time).", s.newest_event_time_s
        )
    if s.last_arrival_s is not None:
        yield GaugeMetricFamily(
            "ingestor_last_arrival_time_seconds", "When the newest batch was stored (Unix time).", s.last_arrival_s
        )
    yield GaugeMetricFamily("ingestor_generator_running", "1 while the generator runs.", int(s.generator_running))
    yield GaugeMetricFamily(
        "ingestor_generator_rate_per_second", "Readings a second the generator is configured for.", s.generator_rate_hz
    )
    yield GaugeMetricFamily("ingestor_watch_subscribers", "Live WatchReadings subscribers.", s.subscribers)
    yield CounterMetricFamily(
        "ingestor_watch_missed_readings", "Readings live subscribers missed because they fell behind.", s.missed
    )
    if s.durable:
        yield GaugeMetricFamily("ingestor_data_dir_bytes", "Bytes the data directory takes.", s.data_dir_bytes)
        yield GaugeMetricFamily(
            "ingestor_journal_queue_bytes", "Bytes of batches waiting for the disk.", s.journal_queue_bytes
        )


class IngestorMetrics:
    """One server's registry: the process's defaults, build info, calls, commits and the snapshot."""

    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call] # the _created series only double what a scrape needs
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.registry.register(GC_COLLECTOR)
        Info("ingestor_build", "Versions of the ingestor and what it runs on.", registry=self.registry).info(
            {
                "version": _package_version("realtime-pipeline"),
                "python": platform.python_version(),
                "grpcio": _package_version("grpcio"),
                "numpy": _package_version("numpy"),
            }
        )
        self._rpc_requests = Counter(
            "ingestor_rpc_requests",
            "Calls handled, by method and status code.",
            ["method", "code"],
            registry=self.registry,
        )
        self._rpc_duration = Histogram(
            "ingestor_rpc_duration_seconds",
            "How long calls took (a stream: its whole life), by method and status code.",
            ["method", "code"],
            buckets=RPC_BUCKETS,
            registry=self.registry,
        )
        self._commit_duration = Histogram(
            "ingestor_journal_commit_duration_seconds",
            "How long each journal commit took, fsync included (durable mode).",
            buckets=COMMIT_BUCKETS,
            registry=self.registry,
        )
        self._batches_per_commit = Histogram(
            "ingestor_journal_batches_per_commit",
            "Batches each journal commit took (group commit, durable mode).",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self._children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
        self._lock = threading.Lock()
        self.commit_seconds = 0.0
        self.commits = 0

    def observe_call(self, method: str, code: str, seconds: float) -> None:
        """A call ended (``method`` its short name, ``code`` the status code's name)."""
        key = (method, code)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self._rpc_requests.labels(method, code),
                self._rpc_duration.labels(method, code),
            )
        children[0].inc()
        children[1].observe(seconds)

    def observe_commit(self, seconds: float, batches: int) -> None:
        """A journal commit went through (called from the writer thread)."""
        self._commit_duration.observe(seconds)
        self._batches_per_commit.observe(batches)
        with self._lock:
            self.commit_seconds += seconds
            self.commits += 1

    def read_from(self, loop: asyncio.AbstractEventLoop, take: Callable[[], Snapshot]) -> None:
        """Serve ``take()``'s numbers, run on ``loop`` at each scrape."""
        self.registry.register(_SnapshotCollector(lambda: _on_loop(loop, take)))


def _on_loop(loop: asyncio.AbstractEventLoop, take: Callable[[], Snapshot]) -> Snapshot | None:
    """``take()`` run on ``loop`` (whose objects it reads), from the scraping thread."""
    result: concurrent.futures.Future[Snapshot] = concurrent.futures.Future()

    def run() -> None:
        try:
            result.set_result(take())
        except BaseException as error:  # handed over to the scraping thread
            result.set_exception(error)

    try:
        loop.call_soon_threadsafe(run)
        return result.result(timeout=SNAPSHOT_TIMEOUT_S)
    except (RuntimeError, concurrent.futures.TimeoutError):  # the loop is closed, or too busy to answer
        return None


@dataclass
class MetricsEndpoint:
    """The HTTP server of ``/metrics``, in a thread of its own."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> MetricsEndpoint:
    """Serve ``registry`` at http://host:port/metrics; PortUnavailable when the port is taken."""
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as error:
        raise PortUnavailable(f"cannot serve metrics on {host}:{port}: {error.strerror or error}") from None
    return MetricsEndpoint(server, thread)


def take_snapshot(store: ReadingStore, intake: Intake, generator: GeneratorControl, hub: WatchHub) -> Snapshot:
    """The counts as ``GetStatus`` answers them; on the event loop that changes them."""
    lateness = store.lateness
    small = store.dictionary.in_use <= MAX_CATEGORY_LABELS
    watermark = lateness.watermark
    return Snapshot(
        ingested=dict(intake.ingested),
        rejected=dict(intake.rejected),
        duplicates=intake.duplicates,
        evicted=store.evicted,
        late=lateness.late,
        late_by_category=dict(lateness.by_category) if small else None,
        buffered=store.buffered,
        capacity=store.capacity,
        newest_event_time_s=None if watermark == int(NO_WATERMARK) else watermark / 1e9,
        last_arrival_s=intake.last_arrival_s,
        generator_running=generator.running,
        generator_rate_hz=generator.rate_hz,
        subscribers=hub.subscribers,
        missed=hub.missed_total,
        durable=intake.durable,
        data_dir_bytes=intake.data_dir_bytes(),
        journal_queue_bytes=intake.backlog.pending_bytes if intake.backlog is not None else 0,
    )
