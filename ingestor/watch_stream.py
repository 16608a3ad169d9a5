"""One subscriber's stream: its deliveries paced, encoded, and the stream ended when it stalls.

Knows nothing of gRPC: messages go out through the ``write`` it is given, already encoded
(``ingestor/wire.py``), and the stream ends by raising ShuttingDown or SubscriberDropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Never

from ingestor.errors import SubscriberDropped
from ingestor.named_columns import PIECE_READINGS, NamedColumns, join
from ingestor.watch import Delivery, Subscription
from ingestor.wire import encode_watch_columns, encode_watch_missed, encode_watch_readings

log = logging.getLogger(__name__)

MAX_WATCH_MESSAGE = PIECE_READINGS
DEFAULT_STALL_S = 10.0
WATCH_INTERVAL_S = 0.1
"""A subscriber gets a message at most every 100 ms unless readings fill one: 200 subscribers of a
generator that ticks 100 times a second would otherwise cost 20,000 messages a second, and wake
all at once at each tick."""
FINAL_MESSAGE_TIMEOUT_S = 1.0
"""How long a subscriber dropped for falling behind has to take the message that says what it lost."""

Write = Callable[[bytes], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class MessageForm:
    """How a subscriber's messages carry readings: one Reading each, or columns (optionally with
    each reading's sequence number)."""

    columnar: bool = False
    sequences: bool = False


async def send_deliveries(
    subscription: Subscription,
    write: Write,
    form: MessageForm,
    stall_s: float,
    replay: Iterable[Delivery] = (),
) -> Never:
    """Send the ``replay`` deliveries, then what the subscription takes, until it ends: ShuttingDown
    once the hub closed and the queue is empty, SubscriberDropped when the subscriber fell
    ``stall_s`` behind or took nothing for that long."""
    for delivery in replay:  # each read from the ring only when it is about to be sent
        await _write_or_drop(subscription, write, watch_message(delivery, form), stall_s)
    loop = asyncio.get_running_loop()
    phase = random.uniform(0, WATCH_INTERVAL_S)
    while True:
        await subscription.wait()
        if subscription.queued < MAX_WATCH_MESSAGE:
            # Let readings gather until this subscriber's next turn: at most one message an
            # interval unless they fill one. The turns of subscribers are spread over the
            # interval, so that a batch stored does not wake them all at once.
            await asyncio.sleep(WATCH_INTERVAL_S - (loop.time() - phase) % WATCH_INTERVAL_S)
        delivery = await subscription.take(MAX_WATCH_MESSAGE)
        if delivery.waited_s > stall_s:
            lost = len(delivery) + delivery.missed + subscription.abandon()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FINAL_MESSAGE_TIMEOUT_S):
                    await write(encode_watch_missed(lost))
            log.warning("dropped a subscriber %.1f s behind", delivery.waited_s)
            raise SubscriberDropped(
                f"this stream fell {delivery.waited_s:.0f} s behind (the limit is {stall_s:g} s) "
                f"and ends: its last message counts the {lost} readings it lost"
            )
        await _write_or_drop(subscription, write, watch_message(delivery, form), stall_s)


async def _write_or_drop(subscription: Subscription, write: Write, message: bytes, stall_s: float) -> None:
    try:
        async with asyncio.timeout(stall_s):
            await write(message)
    except TimeoutError:
        # The message stays queued for the client; another one cannot be sent behind it.
        lost = subscription.abandon()
        log.warning("dropped a subscriber that took nothing for %g s", stall_s)
        raise SubscriberDropped(
            f"this stream took no readings for {stall_s:g} s and ends: it lost {lost} readings after its last message"
        ) from None


def watch_message(delivery: Delivery, form: MessageForm) -> bytes:
    """The WatchReadingsResponse of a delivery, in wire format.

    In the default form each piece's Reading messages are encoded once, and shared by every
    subscriber that takes the same piece; in the columnar form encoding is a copy of the columns.
    """
    if form.columnar:
        joined = join(delivery.batches) if delivery.batches else None
        columns = b""
        if joined is not None:
            sequences = joined.sequences if form.sequences else None
            columns = encode_watch_columns(joined.columns, joined.names, sequences)
        return encode_watch_missed(delivery.missed) + columns
    readings = [piece.cached("readings", _encode_readings) for piece in delivery.batches]
    return b"".join([*readings, encode_watch_missed(delivery.missed)])


def _encode_readings(piece: NamedColumns) -> bytes:
    return encode_watch_readings(piece.columns, piece.names)
