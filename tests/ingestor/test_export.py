"""Export chunks without gRPC: each built when it is taken, so readings evicted in between are skipped."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ingestor.export import ExportQuery, export_messages
from ingestor.query import ReadingFilter
from ingestor.store import Columns, ReadingStore
from ingestor.v1 import ingestor_pb2 as pb


def append(store: ReadingStore, values: list[float], categories: list[str]) -> None:
    timestamps = np.array([int(value) * 1_000 for value in values], dtype=np.int64)
    store.append(Columns(timestamps, np.array(values), store.encode_categories(categories)))


class Reader:
    """Reads an export's messages as a client does: the stream's dictionary grows message by message."""

    def __init__(self, messages: Iterator[bytes]) -> None:
        self._messages = messages
        self._names: list[str] = []
        self.last = pb.ExportReadingsResponse()

    def take(self) -> list[tuple[float, str]]:
        """The next message's readings as (value, category)."""
        self.last = pb.ExportReadingsResponse.FromString(next(self._messages))
        self._names += self.last.new_categories
        columns = self.last.columns
        narrow = bool(columns.category_codes_u8)
        codes = np.frombuffer(
            columns.category_codes_u8 if narrow else columns.category_codes, "u1" if narrow else "<u2"
        )
        values = np.frombuffer(columns.values, "<f8")
        return [(value, self._names[code]) for value, code in zip(values.tolist(), codes.tolist(), strict=True)]

    def rest(self) -> list[list[tuple[float, str]]]:
        taken = []
        while True:
            try:
                taken.append(self.take())
            except StopIteration:
                return taken


def test_readings_evicted_between_two_chunks_are_skipped_not_repeated() -> None:
    store = ReadingStore(capacity=10)
    append(store, [float(n) for n in range(10)], ["A"] * 10)
    reader = Reader(export_messages(store, ExportQuery(chunk_size=4)))
    assert reader.take() == [(0.0, "A"), (1.0, "A"), (2.0, "A"), (3.0, "A")]
    assert reader.last.planned_readings == 10
    append(store, [10.0, 11.0, 12.0, 13.0, 14.0, 15.0], ["B"] * 6)  # evicts 0 to 5: 4 and 5 were not sent
    # What was held at the start only, less what was evicted meanwhile.
    assert reader.rest() == [[(6.0, "A"), (7.0, "A"), (8.0, "A"), (9.0, "A")]]
    assert reader.last.planned_readings == 0


def test_a_selective_export_skips_evicted_matches_and_says_where_to_continue() -> None:
    store = ReadingStore(capacity=8)
    append(store, [float(n) for n in range(8)], ["A", "B"] * 4)  # A at 0, 2, 4, 6
    query = ExportQuery(chunk_size=1, flt=ReadingFilter(frozenset({"A"})), max_readings=3, oldest_first=True)
    reader = Reader(export_messages(store, query))
    assert reader.take() == [(0.0, "A")]
    assert (reader.last.planned_readings, reader.last.HasField("next_sequence")) == (3, False)
    append(store, [8.0, 9.0, 10.0], ["B"] * 3)  # evicts 0 to 2: the match at 2 goes
    assert reader.rest() == [[(4.0, "A")]]
    # The last message says where the matches that max_readings left out continue: after 4.
    assert reader.last.next_sequence == 5
