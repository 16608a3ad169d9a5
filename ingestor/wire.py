"""ExportReadingsResponse encoded straight from the store's column views.

Building the protobuf message copies each column into the message and serialising it copies them
again; at a million readings those copies were most of what an export cost the ingestor. Here each
column is copied once, into the encoded message itself. The bytes are exactly what
``pb.ExportReadingsResponse(...).SerializeToString()`` gives (fields in number order), so any
protobuf client reads them as usual; the server sends them without serialising again (see
``server.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ingestor.store import Columns

# Field keys: (field number << 3) | wire type, where 0 is a varint and 2 is length-delimited.
_COLUMNS = b"\x0a"  # ExportReadingsResponse.columns = 1
_NEW_CATEGORY = b"\x12"  # ExportReadingsResponse.new_categories = 2
_NEXT_SEQUENCE = b"\x18"  # ExportReadingsResponse.next_sequence = 3
_PLANNED_READINGS = b"\x20"  # ExportReadingsResponse.planned_readings = 4
_TIMESTAMPS = b"\x0a"  # ReadingColumns.timestamps_ns = 1
_VALUES = b"\x12"  # ReadingColumns.values = 2
_CODES = b"\x1a"  # ReadingColumns.category_codes = 3 (uint16)
_CODES_U8 = b"\x22"  # ReadingColumns.category_codes_u8 = 4


def varint(value: int) -> bytes:
    """``value`` (unsigned) as a protobuf base-128 varint."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _little_endian(column: np.ndarray, dtype: str) -> memoryview:
    """The column's bytes as the wire wants them: little-endian, contiguous (a copy only if not)."""
    return memoryview(np.ascontiguousarray(column, dtype=dtype)).cast("B")


def encode_export_response(
    columns: Columns,
    new_categories: Sequence[str] = (),
    next_sequence: int | None = None,
    planned_readings: int = 0,
) -> bytes:
    """One ExportReadingsResponse in wire format, copying each column once.

    Codes go out in the store's width: one byte each when it holds them so, two otherwise.
    """
    narrow = columns.codes.dtype.itemsize == 1
    parts: list[bytes | memoryview] = []
    for key, column, dtype in (
        (_TIMESTAMPS, columns.timestamps_ns, "<i8"),
        (_VALUES, columns.values, "<f8"),
        (_CODES_U8, columns.codes, "u1") if narrow else (_CODES, columns.codes, "<u2"),
    ):
        if len(column):  # proto3 leaves empty bytes fields out
            data = _little_endian(column, dtype)
            parts += (key, varint(data.nbytes), data)
    inner_size = sum(len(part) if isinstance(part, bytes) else part.nbytes for part in parts)
    # Present even when empty, as a message field set to an empty message is.
    parts[:0] = (_COLUMNS, varint(inner_size))
    for name in new_categories:
        encoded = name.encode()
        parts += (_NEW_CATEGORY, varint(len(encoded)), encoded)
    if next_sequence is not None:
        parts += (_NEXT_SEQUENCE, varint(next_sequence))
    if planned_readings:
        parts += (_PLANNED_READINGS, varint(planned_readings))
    return b"".join(parts)
