"""The gRPC server: IngestorService plus standard health and reflection, and a graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ingestor.generator import Ingestion
from ingestor.service import IngestorServicer
from ingestor.settings import IngestorSettings
from ingestor.store import ReadingStore
from ingestor.v1 import ingestor_pb2, ingestor_pb2_grpc
from ingestor.watch import WatchHub

log = logging.getLogger("ingestor")

SERVICE_NAME = ingestor_pb2.DESCRIPTOR.services_by_name["IngestorService"].full_name


@dataclass
class RunningServer:
    server: grpc.aio.Server
    health: health.aio.HealthServicer
    ingestion: Ingestion
    store: ReadingStore
    port: int
    hub: WatchHub | None = None

    async def shutdown(self, grace_s: float) -> None:
        """Report NOT_SERVING, stop generating, and let in-flight calls finish within ``grace_s``."""
        await self.health.enter_graceful_shutdown()
        await self.ingestion.stop()
        if self.hub is not None:
            self.hub.close()  # live streams end instead of holding the shutdown for the whole grace
        await self.server.stop(grace_s)


async def start_server(settings: IngestorSettings) -> RunningServer:
    """Build and start the server; it reports SERVING once it accepts calls."""
    store = ReadingStore(settings.capacity)
    ingestion = Ingestion(store, settings.rate_hz, settings.categories)
    server = grpc.aio.server()
    hub = WatchHub(store, settings.watch_buffer)
    ingestor_pb2_grpc.add_IngestorServiceServicer_to_server(IngestorServicer(store, ingestion, hub), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )
    port = server.add_insecure_port(f"{settings.host}:{settings.port}")
    await server.start()
    for service in ("", SERVICE_NAME):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server, health_servicer, ingestion, store, port, hub)


async def serve(settings: IngestorSettings) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Before anything else: a signal that arrives while starting up still shuts down gracefully.
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    running = await start_server(settings)
    log.info("listening on %s:%d", settings.host, running.port)
    await stop.wait()
    log.info("shutting down")
    await running.shutdown(settings.shutdown_grace_s)
    log.info("stopped")
