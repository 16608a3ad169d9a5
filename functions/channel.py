"""The function's channels to the ingestor: made once per process and loop, retried, replaced when dead.

The channels are the only state the function keeps between requests. They are created lazily and
reused, and bound to the event loop that made them: a request on another loop (a new Lambda
process, a test client) gets channels of its own. One carries calls and exports, the other live
streams (WatchReadings). A channel left without calls for longer than the keepalive interval is
not trusted with the next one (see ``_Activity``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
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
    # Keepalive (grpc.keepalive_time_ms is INGESTOR_KEEPALIVE_S, set per channel): a ping every
    # interval, with calls or without, and at most 5 s for its answer, so that while the process
    # runs a connection that died silently (a NAT or load balancer that forgot it, a host that
    # vanished) is noticed and replaced before a request needs it. Without calls gRPC would stop
    # after two pings (max_pings_without_data). The ingestor accepts a ping a second without calls
    # (ingestor/server.py). A frozen process sends no pings: see _Activity for what covers a thaw.
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]

_LIVE_CHANNEL_OPTIONS: list[tuple[str, int | str]] = [("grpc.http2.bdp_probe", 0)]
"""Live streams (WatchReadings) get a channel of their own whose receive windows do not grow.

gRPC grows a stream's window with the bandwidth it measures, up to megabytes, and a stream the
function stops reading (because its HTTP client does not read) fills all of it: the function
would hold what the ingestor sends to every such stream. At the fixed 64 KiB a stream holds at
most that; exports keep the growing windows that make them fast."""


@dataclass
class _Activity:
    """The calls under way on a channel, and when the last one started or ended.

    A Lambda instance is frozen between invocations, for seconds or hours, and an ingestor may have
    restarted or a network path forgotten the connection meanwhile: neither keepalive nor
    reconnection can tell while the process is frozen, and after the thaw the first call would go
    to a connection that is gone. A refused one (the peer restarted) fails at once, but a silently
    dropped one waits out the call's whole deadline, and a write is never retried. So a channel
    that has had no call under way for longer than the keepalive interval (so that no ping is known
    to have crossed it since) is replaced by a fresh one before the next call: one handshake,
    within the connect timeout, instead of a deadline. A process that runs keeps its connection
    verified by the pings, and one that is busy never goes that long without a call.
    """

    in_flight: int = 0
    last_active: float = field(default_factory=time.monotonic)

    def started(self) -> None:
        self.in_flight += 1
        self.last_active = time.monotonic()

    def ended(self, _call: object) -> None:
        self.in_flight -= 1
        self.last_active = time.monotonic()

    def idle_for(self) -> float:
        """Seconds since a call last started or ended; 0 while one is under way."""
        return 0.0 if self.in_flight else time.monotonic() - self.last_active


class _CallMetadata:
    """Adds the ingestor token, the current request's id and its ``traceparent`` to every call's
    metadata, and counts the channel's calls in its ``_Activity``."""

    def __init__(self, token: str | None, activity: _Activity) -> None:
        self._authorization = ("authorization", f"Bearer {token}") if token else None
        self._activity = activity

    def _track(self, call: Call) -> Call:
        self._activity.started()
        call.add_done_callback(self._activity.ended)
        return call

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
Call = TypeVar("Call", bound=grpc.aio.Call)


class _UnaryUnaryMetadata(_CallMetadata, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
        self,
        continuation: Callable[
            [grpc.aio.ClientCallDetails, Request], Awaitable[grpc.aio.UnaryUnaryCall[Request, Response]]
        ],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Request,
    ) -> grpc.aio.UnaryUnaryCall[Request, Response]:
        return self._track(await continuation(self._with_metadata(client_call_details), request))


class _UnaryStreamMetadata(_CallMetadata, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(
        self,
        continuation: Callable[
            [grpc.aio.ClientCallDetails, Request], Awaitable[grpc.aio.UnaryStreamCall[Request, Response]]
        ],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Request,
    ) -> grpc.aio.UnaryStreamCall[Request, Response]:
        return self._track(await continuation(self._with_metadata(client_call_details), request))


def _channel_options(settings: FunctionSettings, live: bool) -> list[tuple[str, int | str]]:
    # grpc gives each connection attempt (TCP, TLS and the HTTP/2 handshake) the larger of the
    # current backoff and min_reconnect_backoff_ms to complete: at 100 ms a handshake slower than
    # that never completes, however long the connect timeout. Each attempt may take all of it.
    connect = ("grpc.min_reconnect_backoff_ms", round(settings.ingestor_connect_timeout_s * 1000))
    keepalive = ("grpc.keepalive_time_ms", round(settings.ingestor_keepalive_s * 1000))
    return [*_CHANNEL_OPTIONS, connect, keepalive, *(_LIVE_CHANNEL_OPTIONS if live else ())]


def _new_channel(settings: FunctionSettings, live: bool, activity: _Activity) -> grpc.aio.Channel:
    token = settings.ingestor_token.get_secret_value() if settings.ingestor_token else None
    interceptors: list[grpc.aio.ClientInterceptor] = [
        _UnaryUnaryMetadata(token, activity),
        _UnaryStreamMetadata(token, activity),
    ]
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
    activity: _Activity

    @classmethod
    def open(cls, settings: FunctionSettings, loop: asyncio.AbstractEventLoop, live: bool) -> _SharedChannel:
        activity = _Activity()
        return cls(settings, loop, _new_channel(settings, live, activity), activity)


_shared: dict[bool, _SharedChannel] = {}
"""The process's channels to the ingestor, made on first use (module state on purpose): one for
calls and exports, one for live streams (key True)."""


def _channel_for(settings: FunctionSettings, *, fresh: bool = False, live: bool = False) -> grpc.aio.Channel:
    """The shared channel for the running loop, made anew when the loop or the settings changed or
    it sat unused for longer than the keepalive interval (one replaced for that is closed when
    collected, which cancels nothing: it has no call under way)."""
    loop = asyncio.get_running_loop()
    shared = _shared.get(live)
    if (
        fresh
        or shared is None
        or shared.loop is not loop
        or shared.settings != settings
        or shared.activity.idle_for() > settings.ingestor_keepalive_s
    ):
        shared = _shared[live] = _SharedChannel.open(settings, loop, live)
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
