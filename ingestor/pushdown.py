"""AggregateReadings' answer: partials of the matching readings, from sealed blocks where they can be.

Blocks are pruned by their event-time bounds: a sealed block wholly outside ``since``/``until`` is
skipped, one wholly inside answers with its partials (per category, or per second re-keyed to the
asked bucket), and the readings of every other block (partly inside, partly evicted, the open one)
are read from the ring and reduced to partials here. A complete block not sealed yet is sealed
first, and kept. Everything is computed in one go
on the event loop, so the answer is that of one snapshot of the ring. Knows nothing of gRPC.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ingestor.blocks import SealedBlock, seal_block
from ingestor.partials import (
    SECOND_NS,
    PartialTable,
    compute_partials,
    concat_partials,
    merge_partials,
    partials_by_bucket,
)
from ingestor.query import ReadingFilter
from ingestor.store import Columns, ReadingStore


@dataclass(frozen=True, slots=True)
class Aggregation:
    from_blocks: PartialTable
    """The sealed blocks' partials, merged per (code, key)."""
    from_readings: PartialTable
    """The partials of the readings read from the ring."""
    readings_read: int
    """How many readings were read from the ring (matching or not)."""
    blocks_used: int
    """How many sealed blocks answered with their partials."""


def aggregate_partials(store: ReadingStore, flt: ReadingFilter, bucket_ns: int) -> Aggregation:
    """Partials of the held readings that match ``flt``, per (code, event time // bucket_ns), or per
    code alone when ``bucket_ns`` is 0."""
    if bucket_ns < 0:
        raise ValueError("bucket_ns must not be negative")
    oldest, total = store.oldest_sequence, store.total_ingested
    blocks = store.blocks
    size = blocks.block_size
    code_mask = flt.code_mask(store)
    since = flt.since_ns if flt.since_ns is not None else np.iinfo(np.int64).min
    until = flt.until_ns
    whole_seconds = bucket_ns % SECOND_NS == 0
    tables: list[PartialTable] = []
    raw: list[tuple[int, int]] = []  # sequence ranges to read from the ring
    position = oldest
    for number in blocks.wholly_held(oldest, total):
        block = blocks.get(number) or _seal(store, number)
        table = block.by_category if bucket_ns == 0 else block.by_second if whole_seconds else None
        outside = block.last_ns < since or (until is not None and block.first_ns >= until)
        inside = block.first_ns >= since and (until is None or block.last_ns < until)
        if not outside and not (inside and table is not None):
            continue  # read with the readings around it
        if position < number * size:
            raw.append((position, number * size))
        position = (number + 1) * size
        if outside:
            continue
        assert table is not None
        if code_mask is not None:
            table = table.take(code_mask[table.codes])
        if bucket_ns:
            table = table.with_keys(table.keys // (bucket_ns // SECOND_NS))
        tables.append(table)
    raw.append((position, total))
    readings = _matching(store, flt, code_mask, raw)
    return Aggregation(
        from_blocks=merge_partials(tables) if tables else concat_partials([]),
        from_readings=(
            partials_by_bucket(readings.timestamps_ns, readings.values, readings.codes, bucket_ns)
            if bucket_ns
            else compute_partials(readings.timestamps_ns, readings.values, readings.codes)
        ),
        readings_read=sum(stop - start for start, stop in raw),
        blocks_used=len(tables),
    )


def _seal(store: ReadingStore, number: int) -> SealedBlock:
    """Seal a complete block the sealer has not come to yet: it costs what reading it would."""
    columns = store.block_columns(number)
    block = seal_block(columns.timestamps_ns, columns.values, columns.codes, store.blocks.max_second_rows)
    store.blocks.add(number, block, store.oldest_sequence)
    return block


def _matching(
    store: ReadingStore, flt: ReadingFilter, code_mask: np.ndarray | None, ranges: list[tuple[int, int]]
) -> Columns:
    """The readings of ``ranges`` (sequence numbers) that match, copied out of the ring."""
    parts: list[Columns] = []
    for start, stop in ranges:
        for run in store.views(start, stop):
            keep = flt.mask(run, code_mask)
            parts.append(Columns(run.timestamps_ns[keep], run.values[keep], run.codes[keep]))
    if not parts:
        return Columns(np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.uint16))
    return Columns(
        *(np.concatenate([getattr(part, name) for part in parts]) for name in ("timestamps_ns", "values", "codes"))
    )
