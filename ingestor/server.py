"""The gRPC server: IngestorService plus standard health and reflection, and a graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ingestor.archive_target import open_target
from ingestor.archiver import Archiver, stream_id
from ingestor.emf import EmfWriter, write_emf_every
from ingestor.errors import PortUnavailable
from ingestor.generator import GeneratorControl
from ingestor.intake import Intake
from ingestor.interceptors import CallContextInterceptor, TokenAuthInterceptor
from ingestor.journal import Journal
from ingestor.metrics import IngestorMetrics, MetricsEndpoint, Snapshot, serve_metrics, take_snapshot
from ingestor.retention import AgeRetention
from ingestor.rollup_feed import RollupFeed
from ingestor.sealer import BlockSealer
from ingestor.service import IngestorServicer
from ingestor.settings import IngestorSettings
from ingestor.storage import open_storage
from ingestor.store import ReadingStore
from ingestor.tasks import cancel_and_wait
from ingestor.v1 import ingestor_pb2, ingestor_pb2_grpc
from ingestor.watch import WatchHub

log = logging.getLogger("ingestor")

SERVICE_NAME = ingestor_pb2.DESCRIPTOR.services_by_name["IngestorService"].full_name


@dataclass
class RunningServer:
    server: grpc.aio.Server
    health: health.aio.HealthServicer
    generator: GeneratorControl
    store: ReadingStore
    port: int
    intake: Intake
    journal: Journal | None = None
    hub: WatchHub | None = None
    metrics: IngestorMetrics | None = None
    metrics_endpoint: MetricsEndpoint | None = None
    emf_task: asyncio.Task[None] | None = None
    sealer: BlockSealer | None = None
    archiver: Archiver | None = None
    feed: RollupFeed | None = None
    retention: AgeRetention | None = None

    async def shutdown(self, grace_s: float) -> None:
        """Report NOT_SERVING, stop generating, and let in-flight calls finish within ``grace_s``."""
        await cancel_and_wait(self.emf_task)
        await self.health.enter_graceful_shutdown()
        await self.generator.stop()
        if self.hub is not None:
            # Live streams end (UNAVAILABLE) once they have sent what is queued, instead of holding
            # the shutdown for the whole grace; one whose client reads nothing is cancelled at its end.
            self.hub.close()
        await self.server.stop(grace_s)
        if self.metrics_endpoint is not None:
            await asyncio.to_thread(self.metrics_endpoint.close)
        if self.sealer is not None:
            await self.sealer.stop()
        if self.archiver is not None:
            await self.archiver.close(grace_s)
        if self.feed is not None:
            await asyncio.to_thread(self.feed.close)
        if self.retention is not None:
            await self.retention.stop()
        if self.journal is not None:
            await asyncio.to_thread(self.journal.close)


def _add_ingestor_service(servicer: IngestorServicer, server: grpc.aio.Server) -> None:
    """Register IngestorService as the generated code does, except that ExportReadings and
    WatchReadings send the bytes their servicer encoded (ingestor/wire.py) as they are, instead of
    serialising a message."""
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    class Collect:
        def add_generic_rpc_handlers(self, _: object) -> None:
            pass

        def add_registered_method_handlers(self, _: str, methods: dict[str, grpc.RpcMethodHandler[Any, Any]]) -> None:
            handlers.update(methods)

    # The generated registration is untyped: protoc's gRPC plugin writes no stubs.
    ingestor_pb2_grpc.add_IngestorServiceServicer_to_server(servicer, Collect())  # type: ignore[no-untyped-call]
    for method in ("ExportReadings", "WatchReadings"):
        streaming = handlers[method].unary_stream
        assert streaming is not None
        handlers[method] = grpc.unary_stream_rpc_method_handler(streaming, handlers[method].request_deserializer)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


async def start_server(settings: IngestorSettings) -> RunningServer:
    """Build and start the server; it reports SERVING once it accepts calls."""
    store, intake, journal, rollups = await asyncio.to_thread(open_storage, settings)
    # Durable mode: the journal keeps the rollups, in the transactions that log the readings.
    feed = RollupFeed(store, rollups) if rollups is not None and journal is None else None
    generator = GeneratorControl(
        store,
        settings.rate_hz,
        settings.categories,
        append=intake.append_generated,
        pacing=intake if intake.durable else None,
    )
    metrics = IngestorMetrics()
    if journal is not None:
        journal.on_commit = metrics.observe_commit
    # The call context comes first so that refused calls are logged (and counted) with their request id too.
    measured = settings.metrics_port is not None or settings.metrics_emf
    interceptors: list[grpc.aio.ServerInterceptor] = [
        CallContextInterceptor(metrics.observe_call if measured else None)
    ]
    if settings.token is not None:
        interceptors.append(TokenAuthInterceptor(settings.token.get_secret_value()))
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            # A second ingestor on a taken port must fail to start, not share the port and split
            # the callers between two different buffers.
            ("grpc.so_reuseport", 0),
            # The receive window stays at HTTP/2's 64 KiB until a handler reads a message (grpc
            # then opens it to that message's size). With bandwidth probing it would grow by
            # itself, letting callers whose request is refused unread (no token) still park
            # megabytes each in the transport.
            ("grpc.http2.bdp_probe", 0),
            # The function pings every INGESTOR_KEEPALIVE_S (1 s at least), with calls or without,
            # to notice dead connections (functions/channel.py). gRPC's defaults would count pings
            # on a connection without calls, or more often than every 5 minutes without data, as
            # abuse, and close it (GOAWAY "too_many_pings"), also under a quiet WatchReadings stream.
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 1000),
        ],
    )
    hub = WatchHub(store, settings.watch_buffer, settings.watch_buffer_bytes, settings.max_subscribers)
    archiver = await open_archiver(settings, store, journal)
    servicer = IngestorServicer(
        store,
        generator,
        intake,
        hub,
        settings.watch_stall_s,
        settings.max_concurrent_exports,
        archiver=archiver,
        rollups=rollups,
    )
    _add_ingestor_service(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )

    def snapshot() -> Snapshot:
        return take_snapshot(store, intake, generator, hub)

    metrics.read_from(asyncio.get_running_loop(), snapshot)
    endpoint = None
    try:
        port = _add_port(server, settings)
        if settings.metrics_port is not None:
            endpoint = serve_metrics(metrics.registry, settings.host, settings.metrics_port)
        await server.start()
    except BaseException:
        if endpoint is not None:
            endpoint.close()
        if archiver is not None:
            await archiver.close(0)
        if feed is not None:
            await asyncio.to_thread(feed.close)
        if journal is not None:
            await asyncio.to_thread(journal.close)
        raise
    sealer = None
    if settings.block_partials:
        sealer = BlockSealer(store)
        sealer.start()
    retention = None
    if settings.max_age_ns is not None:
        retention = AgeRetention(store, settings.max_age_ns, journal)
        retention.start()
    for service in ("", SERVICE_NAME):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    emf_task = None
    if settings.metrics_emf:
        writer = EmfWriter(metrics, settings.metrics_namespace)
        emf_task = asyncio.create_task(write_emf_every(settings.metrics_emf_interval_s, snapshot, writer))
    return RunningServer(
        server,
        health_servicer,
        generator,
        store,
        port,
        intake,
        journal,
        hub,
        metrics=metrics,
        metrics_endpoint=endpoint,
        emf_task=emf_task,
        sealer=sealer,
        archiver=archiver,
        feed=feed,
        retention=retention,
    )


async def open_archiver(settings: IngestorSettings, store: ReadingStore, journal: Journal | None) -> Archiver | None:
    """The archive's background task when ``INGESTOR_ARCHIVE_URL`` is set (``ingestor/archiver.py``)."""
    if settings.archive_url is None:
        return None
    spool = settings.archive_spool_dir
    if spool is None and settings.data_dir is not None:
        spool = settings.data_dir / "archive-spool"
    target = await asyncio.to_thread(open_target, settings.archive_url, settings.archive_endpoint_url, spool)
    archiver = Archiver(
        store,
        target,
        stream_id(settings.data_dir),
        (lambda: journal.committed_total) if journal is not None else None,
        settings.archive_interval_s,
        settings.archive_file_readings,
    )
    archiver.start()
    log.info("archiving readings to %s", target.url)
    return archiver


def _add_port(server: grpc.aio.Server, settings: IngestorSettings) -> int:
    address = f"{settings.host}:{settings.port}"
    tls = settings.tls_files()
    try:
        if tls is None:
            return server.add_insecure_port(address)
        certificate, key = (path.read_bytes() for path in tls)
        return server.add_secure_port(address, grpc.ssl_server_credentials([(key, certificate)]))
    except RuntimeError:
        raise PortUnavailable(f"cannot listen on {address}: the port is in use or the address is not local") from None


async def serve(settings: IngestorSettings) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Before anything else: a signal that arrives while starting up still shuts down gracefully.
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    running = await start_server(settings)
    log.info(
        "listening on %s:%d",
        settings.host,
        running.port,
        extra={"tls": settings.tls_files() is not None, "auth": settings.token is not None},
    )
    if running.metrics_endpoint is not None:
        log.info("metrics on http://%s:%d/metrics", settings.host, running.metrics_endpoint.port)
    await stop.wait()
    log.info("shutting down")
    await running.shutdown(settings.shutdown_grace_s)
    log.info("stopped")
