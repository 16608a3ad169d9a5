"""The archive's Parquet files: their schema, their names, and one segment written date by date.

A segment is a range of sequence numbers ``[start, end)``. Its readings go to one file per event
date, ``date=YYYY-MM-DD/<stream>-<start>-<end>.parquet`` (Hive partitioning), so a reading is in
exactly one file, and the name says which readings it holds: writing the same range again after a
crash gives the same names, never a second copy. ``<stream>`` tells apart the runs that number
readings independently (a memory-only ingestor starts again at 0 each time; a data directory keeps
its numbers, and its stream, across restarts).

Columns: ``timestamp`` (timestamp[ns, UTC], delta-encoded), ``value`` (float64, dictionary-encoded
while the distinct values fit a page, as generated values do), ``category`` (dictionary-encoded,
only the names the file uses) and ``sequence`` (int64, delta-encoded); zstd. Generated readings
take about 1.7 bytes each. Knows nothing of where files go (``ingestor/archive_target.py``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ingestor.store import Columns

DAY_NS = 86_400 * 1_000_000_000
ROW_GROUP_READINGS = 1 << 20
"""Readings a row group holds (the last one of a file fewer)."""
_NAME = re.compile(r"(?:.*/)?date=(\d{4}-\d{2}-\d{2})/([0-9a-f]{1,32})-(\d{20})-(\d{20})\.parquet")
WRITE_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "use_dictionary": ["category", "value"],
    "column_encoding": {"timestamp": "DELTA_BINARY_PACKED", "sequence": "DELTA_BINARY_PACKED"},
}


def file_key(date: str, stream: str, start_seq: int, end_seq: int) -> str:
    """The name of the file of event date ``date`` of the segment ``[start_seq, end_seq)``."""
    return f"date={date}/{stream}-{start_seq:020d}-{end_seq:020d}.parquet"


@dataclass(frozen=True, slots=True)
class ArchivedRange:
    date: str
    stream: str
    start_seq: int
    end_seq: int


def parse_key(key: str) -> ArchivedRange | None:
    """What a file name says, or None for anything else (temporary files included)."""
    match = _NAME.fullmatch(key)
    if match is None:
        return None
    return ArchivedRange(match[1], match[2], int(match[3]), int(match[4]))


def day_of(day_index: int) -> str:
    return datetime.fromtimestamp(day_index * 86_400, UTC).strftime("%Y-%m-%d")


def schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("timestamp", pa.timestamp("ns", tz="UTC")),
            ("value", pa.float64()),
            ("category", pa.dictionary(pa.int32(), pa.string())),
            ("sequence", pa.int64()),
        ]
    )


def to_table(columns: Columns, names: Sequence[str], first_seq: int, rows: np.ndarray | None = None) -> Any:
    """The readings ``columns`` (numbered from ``first_seq``; only ``rows`` of them when given) as a
    table of the archive's schema, the category dictionary reduced to the names they use."""
    import pyarrow as pa

    sequences = np.arange(first_seq, first_seq + len(columns), dtype=np.int64)
    timestamps, values, codes = columns.timestamps_ns, columns.values, columns.codes
    if rows is not None:
        timestamps, values, codes, sequences = timestamps[rows], values[rows], codes[rows], sequences[rows]
    used = np.flatnonzero(np.bincount(codes, minlength=len(names)))
    renumber = np.zeros(len(names), dtype=np.int32)
    renumber[used] = np.arange(len(used), dtype=np.int32)
    category = pa.DictionaryArray.from_arrays(
        pa.array(renumber[codes], pa.int32()), pa.array([names[code] for code in used.tolist()], pa.string())
    )
    return pa.Table.from_arrays(
        [pa.array(timestamps, pa.timestamp("ns", tz="UTC")), pa.array(values, pa.float64()), category, sequences],
        schema=schema(),
    )


@dataclass
class _DateFile:
    path: Path
    writer: Any = None
    waiting: list[Any] = field(default_factory=list)
    waiting_rows: int = 0


class SegmentWriter:
    """The files of one segment, one per event date, written to local paths a row group at a time.

    Not thread-safe: one thread adds to it and closes it.
    """

    def __init__(self, start_seq: int, local_path: Any) -> None:
        """``local_path(date)`` is where the file of that date is written until it is published."""
        self.start_seq = start_seq
        self.end_seq = start_seq
        self.readings = 0
        self._local_path = local_path
        self._dates: dict[str, _DateFile] = {}

    def add(self, columns: Columns, names: Sequence[str], first_seq: int) -> None:
        """Add readings numbered ``[first_seq, first_seq + len(columns))``, at or after the segment's end."""
        days = np.floor_divide(columns.timestamps_ns, DAY_NS)
        if len(days) and days[0] == days[-1] and (days == days[0]).all():
            self._add_to(day_of(int(days[0])), to_table(columns, names, first_seq))
        else:
            for day in np.unique(days).tolist():
                self._add_to(day_of(day), to_table(columns, names, first_seq, np.flatnonzero(days == day)))
        self.end_seq = first_seq + len(columns)
        self.readings += len(columns)

    def _add_to(self, date: str, table: Any) -> None:
        file = self._dates.get(date)
        if file is None:
            file = self._dates[date] = _DateFile(self._local_path(date))
        file.waiting.append(table)
        file.waiting_rows += table.num_rows
        if file.waiting_rows >= ROW_GROUP_READINGS:
            self._flush(file)

    def _flush(self, file: _DateFile) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not file.waiting:
            return
        if file.writer is None:
            file.path.parent.mkdir(parents=True, exist_ok=True)
            file.writer = pq.ParquetWriter(file.path, schema(), **WRITE_OPTIONS)
        file.writer.write_table(pa.concat_tables(file.waiting), row_group_size=ROW_GROUP_READINGS)
        file.waiting, file.waiting_rows = [], 0

    def close(self) -> list[tuple[str, Path]]:
        """Finish every file, on disk (fsync'd), and return (date, local path) of each."""
        done = []
        for date, file in sorted(self._dates.items()):
            self._flush(file)
            file.writer.close()
            with open(file.path, "rb") as written:
                os.fsync(written.fileno())
            done.append((date, file.path))
        return done

    def discard(self) -> None:
        for file in self._dates.values():
            if file.writer is not None:
                file.writer.close()
            file.path.unlink(missing_ok=True)
