"""ExportReadingsResponse and WatchReadingsResponse encoded straight from columns.

Building the protobuf message copies each column into the message and serialising it copies them
again; at a million readings those copies were most of what an export cost the ingestor. Here each
column is copied once, into the encoded message itself; a watch message in the default form, one
``Reading`` message a reading, is encoded for all its readings at once with numpy. The bytes are
exactly what protobuf's ``SerializeToString()`` gives for the same message (fields in number
order), so any protobuf client reads them as usual; the server sends them without serialising
again (see ``server.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from ingestor.store import Columns
from ingestor.v1 import ingestor_pb2 as pb

_WIRE_TYPES = {
    FieldDescriptor.TYPE_UINT64: 0,  # varint
    FieldDescriptor.TYPE_DOUBLE: 1,  # 64-bit
    FieldDescriptor.TYPE_INT64: 0,
    FieldDescriptor.TYPE_INT32: 0,
    FieldDescriptor.TYPE_ENUM: 0,
    FieldDescriptor.TYPE_STRING: 2,  # length-delimited
    FieldDescriptor.TYPE_BYTES: 2,
    FieldDescriptor.TYPE_MESSAGE: 2,
}


def field_key(message: type[Message], field: str) -> bytes:
    """The key that starts ``field`` of ``message`` on the wire: (field number << 3) | wire type."""
    descriptor = message.DESCRIPTOR.fields_by_name[field]
    return varint(descriptor.number << 3 | _WIRE_TYPES[descriptor.type])


def varint(value: int) -> bytes:
    """``value`` (unsigned) as a protobuf base-128 varint."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_COLUMNS = field_key(pb.ExportReadingsResponse, "columns")
_NEW_CATEGORY = field_key(pb.ExportReadingsResponse, "new_categories")
_NEXT_SEQUENCE = field_key(pb.ExportReadingsResponse, "next_sequence")
_PLANNED_READINGS = field_key(pb.ExportReadingsResponse, "planned_readings")
_DATA = field_key(pb.ExportReadingsResponse, "data")
_DATA_READINGS = field_key(pb.ExportReadingsResponse, "data_readings")
_FORMAT = field_key(pb.ExportReadingsResponse, "format")
_TIMESTAMPS = field_key(pb.ReadingColumns, "timestamps_ns")
_VALUES = field_key(pb.ReadingColumns, "values")
_CODES = field_key(pb.ReadingColumns, "category_codes")  # uint16
_CODES_U8 = field_key(pb.ReadingColumns, "category_codes_u8")
_SEQUENCES = field_key(pb.ReadingColumns, "sequences")
_LATE = field_key(pb.ReadingColumns, "late")
_WATCH_MISSED = field_key(pb.WatchReadingsResponse, "missed")
_WATCH_COLUMNS = field_key(pb.WatchReadingsResponse, "columns")
_WATCH_CATEGORY = field_key(pb.WatchReadingsResponse, "column_categories")
_CATEGORY = field_key(pb.Reading, "category")
# Keys the numpy encoder of Reading messages writes as single bytes.
_WATCH_READING, _READING_TIMESTAMP, _VALUE, _SECONDS, _NANOS = (
    ord(field_key(message, field))
    for message, field in (
        (pb.WatchReadingsResponse, "readings"),
        (pb.Reading, "timestamp"),
        (pb.Reading, "value"),
        (Timestamp, "seconds"),
        (Timestamp, "nanos"),
    )
)


def column_bytes(column: np.ndarray, dtype: str | np.dtype) -> memoryview:
    """The column's bytes as the wire (and the journal) holds them: ``dtype``, little-endian,
    contiguous; a copy only when the column is not laid out so already."""
    return np.ascontiguousarray(column, dtype=dtype).data.cast("B")


def _reading_columns(columns: Columns, sequences: np.ndarray | None = None) -> list[bytes | memoryview]:
    """The fields of a ReadingColumns message, in number order; codes in the width they come in (one
    or two bytes), the sequence numbers when given, and the late flags when the columns carry them."""
    narrow = columns.codes.dtype.itemsize == 1
    parts: list[bytes | memoryview] = []
    fields = [
        (_TIMESTAMPS, columns.timestamps_ns, "<i8"),
        (_VALUES, columns.values, "<f8"),
        (_CODES_U8, columns.codes, "u1") if narrow else (_CODES, columns.codes, "<u2"),
    ]
    if sequences is not None:
        fields.append((_SEQUENCES, sequences, "<u8"))
    if columns.late is not None:
        fields.append((_LATE, columns.late, "u1"))
    for key, column, dtype in fields:
        if len(column):  # proto3 leaves empty bytes fields out
            data = column_bytes(column, dtype)
            parts += (key, varint(data.nbytes), data)
    return parts


def _size(parts: Sequence[bytes | memoryview]) -> int:
    return sum(len(part) if isinstance(part, bytes) else part.nbytes for part in parts)


def encode_export_response(
    columns: Columns,
    new_categories: Sequence[str] = (),
    next_sequence: int | None = None,
    planned_readings: int = 0,
) -> bytes:
    """One ExportReadingsResponse in wire format, copying each column once.

    Codes go out in the store's width: one byte each when it holds them so, two otherwise.
    """
    parts = _reading_columns(columns)
    # Present even when empty, as a message field set to an empty message is.
    parts[:0] = (_COLUMNS, varint(_size(parts)))
    for name in new_categories:
        encoded = name.encode()
        parts += (_NEW_CATEGORY, varint(len(encoded)), encoded)
    if next_sequence is not None:
        parts += (_NEXT_SEQUENCE, varint(next_sequence))
    if planned_readings:
        parts += (_PLANNED_READINGS, varint(planned_readings))
    return b"".join(parts)


def encode_export_data(
    pieces: Sequence[bytes | memoryview],
    readings: int,
    export_format: int,
    next_sequence: int | None = None,
    planned_readings: int = 0,
) -> bytes:
    """One ExportReadingsResponse of a file export: the file's next bytes (``pieces`` in order,
    copied once, into the message), how many readings they add, and the format."""
    parts: list[bytes | memoryview] = []
    if next_sequence is not None:
        parts += (_NEXT_SEQUENCE, varint(next_sequence))
    if planned_readings:
        parts += (_PLANNED_READINGS, varint(planned_readings))
    size = sum(len(piece) for piece in pieces)
    if size:
        parts += (_DATA, varint(size), *pieces)
    if readings:
        parts += (_DATA_READINGS, varint(readings))
    parts += (_FORMAT, varint(export_format))
    return b"".join(parts)


def encode_watch_response(
    columns: Columns,
    names: Sequence[str],
    missed: int = 0,
    *,
    columnar: bool = False,
    sequences: np.ndarray | None = None,
) -> bytes:
    """One WatchReadingsResponse in wire format: ``columns`` (codes indexing ``names``), then ``missed``;
    in the columnar form with each reading's sequence number when ``sequences`` are given.

    The bytes are exactly what protobuf serialises for the same message: its fields in number order.
    """
    if columnar:
        return encode_watch_missed(missed) + encode_watch_columns(columns, names, sequences)
    return encode_watch_readings(columns, names) + encode_watch_missed(missed)


def encode_watch_readings(columns: Columns, names: Sequence[str]) -> bytes:
    """The ``readings`` field of a WatchReadingsResponse (the default form): one Reading each.

    Encoded for all readings at once with numpy instead of one protobuf object a reading. A
    repeated field is the concatenation of its items, so the fields of consecutive batches join
    into the field of them all.
    """
    return _reading_messages(columns, names).tobytes()


def encode_watch_missed(missed: int) -> bytes:
    """The ``missed`` field of a WatchReadingsResponse; nothing when it is 0."""
    return _WATCH_MISSED + varint(missed) if missed else b""


def encode_watch_columns(columns: Columns, names: Sequence[str], sequences: np.ndarray | None = None) -> bytes:
    """The ``columns`` and ``column_categories`` fields of a WatchReadingsResponse (the columnar form),
    the columns with ``sequences`` (uint64, one a reading) when given."""
    if not len(columns):
        return b""
    inner = _reading_columns(columns, sequences)
    parts: list[bytes | memoryview] = [_WATCH_COLUMNS, varint(_size(inner)), *inner]
    for name in names:
        encoded = name.encode()
        parts += (_WATCH_CATEGORY, varint(len(encoded)), encoded)
    return b"".join(parts)


def _varint_sizes(values: np.ndarray) -> np.ndarray:
    """How many bytes each uint64 takes as a varint: 1 to 10."""
    sizes = np.ones(len(values), dtype=np.int64)
    for shift in range(7, 64, 7):
        sizes += values >= np.uint64(1 << shift)
    return sizes


def _put_varints(out: np.ndarray, at: np.ndarray, values: np.ndarray, sizes: np.ndarray) -> None:
    """Write ``values[i]`` as a varint of ``sizes[i]`` bytes at ``out[at[i]:]``."""
    for k in range(int(sizes.max(initial=0))):
        rows = np.flatnonzero(sizes > k)
        byte = ((values[rows] >> np.uint64(7 * k)) & np.uint64(0x7F)).astype(np.uint8)
        byte[sizes[rows] > k + 1] |= 0x80
        out[at[rows] + k] = byte


def _reading_messages(columns: Columns, names: Sequence[str]) -> np.ndarray:
    """The repeated ``readings`` field of a WatchReadingsResponse, as bytes: one Reading each.

    Each reading is ``0a <size> 0a <ts size> [08 <seconds>] [10 <nanos>] [11 <value>] 1a <name>``:
    proto3 leaves out zero seconds, nanos and values (but not -0.0), and the timestamp is always set.
    """
    seconds, nanos = np.divmod(np.asarray(columns.timestamps_ns, dtype=np.int64), 1_000_000_000)
    seconds_u = seconds.view(np.uint64)  # negative seconds go out as ten-byte two's complement varints
    nanos_u = nanos.astype(np.uint64)
    values = np.ascontiguousarray(columns.values, dtype="<f8")
    has_value = values.view(np.uint64) != 0
    seconds_sizes = _varint_sizes(seconds_u)
    nanos_sizes = _varint_sizes(nanos_u)
    seconds_field = np.where(seconds != 0, 1 + seconds_sizes, 0)
    nanos_field = np.where(nanos != 0, 1 + nanos_sizes, 0)
    timestamp_size = seconds_field + nanos_field  # at most 17 bytes: its size is one byte
    name_fields = [_CATEGORY + varint(len(encoded)) + encoded for encoded in (name.encode() for name in names)]
    name_sizes = np.array([len(field) for field in name_fields], dtype=np.int64)
    codes = np.asarray(columns.codes, dtype=np.intp)
    reading_size = 2 + timestamp_size + np.where(has_value, 9, 0) + name_sizes[codes]
    reading_size_sizes = _varint_sizes(reading_size.astype(np.uint64))
    total = 1 + reading_size_sizes + reading_size
    starts = np.cumsum(total) - total
    out = np.empty(int(total.sum()), dtype=np.uint8)
    out[starts] = _WATCH_READING
    _put_varints(out, starts + 1, reading_size.astype(np.uint64), reading_size_sizes)
    at = starts + 1 + reading_size_sizes
    out[at] = _READING_TIMESTAMP
    out[at + 1] = timestamp_size
    at = at + 2
    for field, key, field_values, sizes in (
        (seconds_field, _SECONDS, seconds_u, seconds_sizes),
        (nanos_field, _NANOS, nanos_u, nanos_sizes),
    ):
        rows = np.flatnonzero(field)
        out[at[rows]] = key
        _put_varints(out, at[rows] + 1, field_values[rows], sizes[rows])
        at = at + field
    rows = np.flatnonzero(has_value)
    out[at[rows]] = _VALUE
    out[(at[rows] + 1)[:, None] + np.arange(8)] = values[rows].view(np.uint8).reshape(-1, 8)
    at = at + np.where(has_value, 9, 0)
    # The names: each reading's whole field copied from one blob of every name's field.
    blob = np.frombuffer(b"".join(name_fields), dtype=np.uint8)
    blob_starts = np.cumsum(name_sizes) - name_sizes
    sizes = name_sizes[codes]
    run_starts = np.cumsum(sizes) - sizes
    within = np.arange(int(sizes.sum())) - np.repeat(run_starts, sizes)
    out[np.repeat(at, sizes) + within] = blob[np.repeat(blob_starts[codes], sizes) + within]
    return out
