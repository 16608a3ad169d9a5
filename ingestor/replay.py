"""A resuming subscriber's replay: the held readings from a sequence number on, as deliveries.

A subscriber that asks for ``after_sequence`` is subscribed first, which fixes the sequence number
its live readings start at; the readings held before that, from ``after_sequence`` on, are read
from the ring here, a piece at a time, just before each is sent. So no reading comes twice (the
live ones start where the replay stops) and none is left out silently: readings of the range that
are evicted before their turn are counted as missed, in their place. Knows nothing of gRPC.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ingestor.named_columns import PIECE_READINGS, name_columns
from ingestor.query import ReadingFilter, gather, matching_sequences
from ingestor.store import Columns, ReadingStore
from ingestor.watch import Delivery


def replay_deliveries(
    store: ReadingStore,
    categories: frozenset[str],
    start_seq: int,
    stop_seq: int,
    late_flags: bool = False,
    size: int = PIECE_READINGS,
) -> Iterator[Delivery]:
    """Deliveries of the readings held in ``[start_seq, stop_seq)`` that match ``categories`` (all
    when empty), each read from the ring when it is due; a reading of that range evicted by then is
    counted as missed (of any category: its own is gone). At most ``size`` readings a delivery; with
    ``late_flags``, their late flags too."""
    wanted = ReadingFilter(categories)
    cursor = start_seq
    while cursor < stop_seq:
        oldest = store.oldest_sequence
        if oldest > cursor:
            skipped = min(oldest, stop_seq) - cursor
            cursor += skipped
            yield Delivery([], skipped)
            continue
        end = min(cursor + size, stop_seq)
        sequences = matching_sequences(store, wanted, cursor, end)
        cursor = end
        if not len(sequences):
            continue
        first = int(sequences[0])
        consecutive = int(sequences[-1]) - first == len(sequences) - 1
        offsets = None if consecutive else (sequences - first).astype(np.uint16)
        columns = gather(store, sequences)
        if late_flags:
            columns = Columns(columns.timestamps_ns, columns.values, columns.codes, store.late_flags(sequences))
        piece = name_columns(columns, store.categories, first, offsets)
        yield Delivery([piece], 0)
