"""The function's channels to the ingestor: made once per process and loop, retried, replaced when dead.

The channels are the only state the function keeps between requests. They are created lazily and
reused, and bound to the event loop that made them: a request on another loop (a new Lambda
process, a test client) gets channels of its own. One carries calls and exports, the other live
streams (WatchReadings).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import grpc

from functions import logs, tracing
from functions.errors import IngestorUnavailable
from functions.settings import FunctionSettings
from ingestor.v1 import ingestor_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["IngestorService"]


def method_path(name: str) -> str:
    """``/ingestor.v1.IngestorService/<name>``; a KeyError for a method the contract lacks."""
    return f"/{SERVICE.full_name}/{SERVICE.methods_by_name[name].name}"


# Idempotent calls are retried once on UNAVAILABLE: after an idle (frozen) period or an ingestor
# restart the first attempt may meet a dead connection. WriteReadings is never retried blindly.
_RETRIED = ("StartIngestion", "StopIngestion", "GetStatus", "ListReadings", "ExportReadings")
_SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{"service": SERVICE.full_name, "method": SERVICE.methods_by_name[m].name} for m in _RETRIED],
                "retryPolicy": {
                    "maxAttempts": 2,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "0.2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)

_CHANNEL_OPTIONS: list[tuple[str, int | str]] = [
    ("grpc.service_config", _SERVICE_CONFIG),
    ("grpc.enable_retries", 1),
    # Reconnect quickly once the ingestor is back instead of backing off for up to two minutes.
    # (grpc.min_reconnect_backoff_ms is set per channel: it is the connect timeout, see below.)
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # Channels share subchannels (and their backoff) by default: a fresh channel must not.
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 5_000),
]

_LIVE_CHANNEL_OPTIONS: list[tuple[str, int | str]] = [("grpc.http2.bdp_probe", 0)]
"""Live streams (WatchReadings) get a channel of their own whose receive windows do not grow.

gRPC grows a stream's window with the bandwidth it measures, up to megabytes, and a stream the
function stops reading (because its HTTP client does not read) fills all of it: the function
would hold what the ingestor sends to every such stream. At the fixed 64 KiB a stream holds at
most that; exports keep the growing windows that make them fast."""


class _CallMetadata:
    """Adds the ingestor token, the current request's id and its ``traceparent`` to every call's metadata."""

    def __init__(self, token: str | None) -> None:
        self._authorization = ("authorization", f"Bearer {token}") if token else None

    def _with_metadata(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        if self._authorization is not None:
            metadata.add(*self._authorization)
        request_id = logs.request_id.get()
        if request_id:
            metadata.add("x-request-id", request_id)
        trace = tracing.current.get()
        if trace is not None:
            metadata.add("traceparent", trace.traceparent)
        return grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )


Request = TypeVar("Request")
Response = TypeVar("Response")


class _UnaryUnaryMetadata(_CallMetadata, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
        self,
        continuation: Callable[
            [grpc.aio.ClientCallDetails, Request], Awaitable[grpc.aio.UnaryUnaryCall[Request, Response]]
        ],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Request,
    ) -> grpc.aio.UnaryUnaryCall[Request, Response]:
        return await continuation(self._with_metadata(client_call_details), request)


class _UnaryStreamMetadata(_CallMetadata, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(
        self,
        continuation: Callable[
            [grpc.aio.ClientCallDetails, Request], Awaitable[grpc.aio.UnaryStreamCall[Request, Response]]
        ],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Request,
    ) -> grpc.aio.UnaryStreamCall[Request, Response]:
        return await continuation(self._with_metadata(client_call_details), request)


def _channel_options(settings: FunctionSettings, live: bool) -> list[tuple[str, int | str]]:
    # grpc gives each connection attempt (TCP, TLS and the HTTP/2 handshake) the larger of the
    # current backoff and min_reconnect_backoff_ms to complete: at 100 ms a handshake slower than
    # that never completes, however long the connect timeout. Each attempt may take all of it.
    connect = ("grpc.min_reconnect_backoff_ms", round(settings.ingestor_connect_timeout_s * 1000))
    return [*_CHANNEL_OPTIONS, connect, *(_LIVE_CHANNEL_OPTIONS if live else ())]


def _new_channel(settings: FunctionSettings, live: bool) -> grpc.aio.Channel:
    token = settings.ingestor_token.get_secret_value() if settings.ingestor_token else None
    interceptors: list[grpc.aio.ClientInterceptor] = [_UnaryUnaryMetadata(token), _UnaryStreamMetadata(token)]
    options = _channel_options(settings, live)
    if settings.ingestor_tls or settings.ingestor_ca_file is not None:
        roots = settings.ingestor_ca_file.read_bytes() if settings.ingestor_ca_file is not None else None
        credentials = grpc.ssl_channel_credentials(root_certificates=roots)
        return grpc.aio.secure_channel(
            settings.ingestor_address, credentials, options=options, interceptors=interceptors
        )
    return grpc.aio.insecure_channel(settings.ingestor_address, options=options, interceptors=interceptors)


@dataclass
class _SharedChannel:
    settings: FunctionSettings
    loop: asyncio.AbstractEventLoop
    channel: grpc.aio.Channel


_shared: dict[bool, _SharedChannel] = {}
"""The process's channels to the ingestor, made on first use (module state on purpose): one for
calls and exports, one for live streams (key True)."""


def _channel_for(settings: FunctionSettings, *, fresh: bool = False, live: bool = False) -> grpc.aio.Channel:
    """The shared channel for the running loop, made anew when the loop or the settings changed."""
    loop = asyncio.get_running_loop()
    shared = _shared.get(live)
    if fresh or shared is None or shared.loop is not loop or shared.settings != settings:
        shared = _shared[live] = _SharedChannel(settings, loop, _new_channel(settings, live))
    return shared.channel


async def close_shared_channel() -> None:
    """Close the shared channels, if this loop made them. For a server's shutdown, never per request."""
    channels = list(_shared.values())
    _shared.clear()
    for shared in channels:
        if shared.loop is asyncio.get_running_loop():
            await shared.channel.close()


async def _settle(channel: grpc.aio.Channel) -> grpc.ChannelConnectivity:
    """Wait while the channel is idle or connecting; return the state it lands in."""
    state = channel.get_state(try_to_connect=True)
    while state in (grpc.ChannelConnectivity.IDLE, grpc.ChannelConnectivity.CONNECTING):
        await channel.wait_for_state_change(state)
        state = channel.get_state(try_to_connect=True)
    return state


async def connected_channel(settings: FunctionSettings, live: bool = False) -> grpc.aio.Channel:
    """A channel that is READY, or IngestorUnavailable within the connect timeout.

    A channel that failed to connect waits out a reconnect backoff before it tries again, so a
    request right after the ingestor comes back would fail. Instead, a failed channel is replaced
    once per request by a fresh one, which tries at once.
    """
    channel = _channel_for(settings, live=live)
    if channel.get_state(try_to_connect=True) is grpc.ChannelConnectivity.READY:
        return channel
    try:
        async with asyncio.timeout(settings.ingestor_connect_timeout_s):
            if await _settle(channel) is grpc.ChannelConnectivity.READY:
                return channel
            channel = _channel_for(settings, fresh=True, live=live)
            if await _settle(channel) is grpc.ChannelConnectivity.READY:
                return channel
    except TimeoutError:
        raise IngestorUnavailable(
            f"the ingestor did not accept a connection within {settings.ingestor_connect_timeout_s:g} s"
        ) from None
    raise IngestorUnavailable("the ingestor is unavailable: it refused the connection")
