"""Validation and decoding of readings written by producers, message form and columnar form."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ingestor.categories import check_categories, check_category
from ingestor.errors import InvalidArgument
from ingestor.store import CODE_DTYPE, NARROW_CODE_DTYPE, TIMESTAMP_DTYPE, VALUE_DTYPE, Columns, ReadingStore
from ingestor.v1 import ingestor_pb2 as pb

# Timestamps are stored as int64 nanoseconds: 1677-09-21 to 2262-04-11.
_MIN_SECONDS = -(2**63) // 1_000_000_000 + 1
_MAX_SECONDS = (2**63 - 1) // 1_000_000_000 - 1


@dataclass(frozen=True, slots=True)
class WrittenReadings:
    """A write request's readings, validated, their categories still named as the request named them:
    nothing is in the store's dictionary yet."""

    message_timestamps: np.ndarray
    message_values: np.ndarray
    message_names: list[str]
    column_timestamps: np.ndarray
    column_values: np.ndarray
    column_codes: np.ndarray
    """Indexes into ``column_categories``."""
    column_categories: Sequence[str]
    used_codes: np.ndarray
    """The column codes some reading carries, ascending: only their names enter the dictionary."""

    def __len__(self) -> int:
        return len(self.message_names) + len(self.column_codes)

    def used_column_names(self) -> list[str]:
        return [self.column_categories[code] for code in self.used_codes.tolist()]

    def encode(self, store: ReadingStore) -> Columns:
        """The readings ready to append, their names given codes of the store's dictionary."""
        names = self.message_names
        codes = store.encode_categories([*names, *self.used_column_names()])
        message_codes = codes[: len(names)]
        if not len(self.used_codes):
            return Columns(self.message_timestamps, self.message_values, message_codes)
        column_lookup = np.zeros(int(self.used_codes[-1]) + 1, dtype=codes.dtype)
        column_lookup[self.used_codes] = codes[len(names) :]
        if not names:
            # The bulk form alone: the request's own buffers, no joined copies.
            return Columns(self.column_timestamps, self.column_values, column_lookup[self.column_codes])
        return Columns(
            np.concatenate([self.message_timestamps, self.column_timestamps]),
            np.concatenate([self.message_values, self.column_values]),
            np.concatenate([message_codes, column_lookup[self.column_codes]]),
        )


def read_write_request(request: pb.WriteReadingsRequest) -> WrittenReadings:
    """Validate every reading of the request, all or nothing: the first bad item raises
    InvalidArgument naming it. Touches no store."""
    timestamps, values, names = _decode_messages(request.readings)
    column_timestamps, column_values, column_codes = _decode_columns(request)
    used = np.flatnonzero(np.bincount(column_codes)) if len(column_codes) else np.empty(0, np.intp)
    return WrittenReadings(
        timestamps, values, names, column_timestamps, column_values, column_codes, request.column_categories, used
    )


def decode_write_request(request: pb.WriteReadingsRequest, store: ReadingStore) -> Columns:
    """Validate every reading of the request and return them ready to append, codes included.

    All or nothing: the first bad item raises InvalidArgument naming it, and nothing is added to
    the store's category dictionary unless every reading is valid.
    """
    return read_write_request(request).encode(store)


def _decode_messages(readings: Iterable[pb.Reading]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    items = list(readings)
    count = len(items)
    # One pass per field with comprehensions: at 10k readings a batch, per-item numpy assignments
    # and per-item category validation were most of WriteReadings' time.
    has_timestamp = [reading.HasField("timestamp") for reading in items]
    if not all(has_timestamp):
        raise InvalidArgument(f"readings[{has_timestamp.index(False)}].timestamp is missing")
    stamps = [reading.timestamp for reading in items]
    seconds = np.fromiter([stamp.seconds for stamp in stamps], dtype=np.int64, count=count)
    nanos = np.fromiter([stamp.nanos for stamp in stamps], dtype=np.int64, count=count)
    values = np.fromiter([reading.value for reading in items], dtype=VALUE_DTYPE, count=count)
    names = [reading.category for reading in items]
    _check_finite(values, "readings[{}].value")
    bad = np.flatnonzero((seconds < _MIN_SECONDS) | (seconds > _MAX_SECONDS) | (nanos < 0) | (nanos > 999_999_999))
    if len(bad):
        i = int(bad[0])
        raise InvalidArgument(
            f"readings[{i}].timestamp must lie between 1677-09-22 and 2262-04-10 with nanos in "
            f"[0, 999999999], got seconds={seconds[i]} nanos={nanos[i]}"
        )
    for name in dict.fromkeys(names):  # each distinct name once, in order of first use
        check_category(name, f"readings[{names.index(name)}].category")
    return (seconds * 1_000_000_000 + nanos).astype(TIMESTAMP_DTYPE), values, names


def _decode_columns(request: pb.WriteReadingsRequest) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    columns = request.columns
    codes_field = columns.WhichOneof("codes") or "category_codes"
    code_dtype = NARROW_CODE_DTYPE if codes_field == "category_codes_u8" else CODE_DTYPE
    code_bytes = getattr(columns, codes_field)
    sizes = {
        "timestamps_ns": (len(columns.timestamps_ns), TIMESTAMP_DTYPE.itemsize),
        "values": (len(columns.values), VALUE_DTYPE.itemsize),
        codes_field: (len(code_bytes), code_dtype.itemsize),
    }
    for field, (length, itemsize) in sizes.items():
        if length % itemsize:
            raise InvalidArgument(f"columns.{field} holds {length} bytes, not a multiple of {itemsize}")
    counts = {field: length // itemsize for field, (length, itemsize) in sizes.items()}
    if len(set(counts.values())) != 1:
        raise InvalidArgument(f"columns must hold the same number of readings each, got {counts}")
    timestamps = np.frombuffer(columns.timestamps_ns, dtype=TIMESTAMP_DTYPE)
    values = np.frombuffer(columns.values, dtype=VALUE_DTYPE)
    codes: np.ndarray = np.frombuffer(code_bytes, dtype=code_dtype)
    _check_finite(values, "columns.values[{}]")
    if len(codes):
        check_categories(request.column_categories, "column_categories")
        out_of_range = np.flatnonzero(codes >= len(request.column_categories))
        if len(out_of_range):
            i = int(out_of_range[0])
            raise InvalidArgument(
                f"columns.{codes_field}[{i}] is {codes[i]}, but column_categories has "
                f"{len(request.column_categories)} entries"
            )
    return timestamps, values, codes


def _check_finite(values: np.ndarray, where: str) -> None:
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        i = int(bad[0])
        raise InvalidArgument(f"{where.format(i)} must be a finite number, got {values[i]}")
