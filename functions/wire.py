"""ExportReadingsResponse read straight from its wire bytes into numpy views.

Parsing the message with protobuf copies each column out of the received bytes before
``np.frombuffer`` can see it; at a million readings that copy and the parse cost more than the
aggregation's grouping. This reader finds the three column buffers in the message and views them
where they lie. It reads the proto3 wire format in full (fields in any order, a repeated singular
field's last value wins, unknown fields skipped), so a newer ingestor that adds fields stays
readable; only proto2's groups are refused, as a proto3 message never holds one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class MalformedMessage(ValueError):
    """The bytes are not a well-formed ExportReadingsResponse."""


@dataclass(frozen=True, slots=True)
class ExportChunk:
    """One ExportReadingsResponse: column views into the received bytes, and the rest of the message."""

    timestamps_ns: np.ndarray
    values: np.ndarray
    codes: np.ndarray
    """uint8 or uint16, as the message carried them."""
    new_categories: list[str] = field(default_factory=list)
    next_sequence: int | None = None
    planned_readings: int = 0

    def __len__(self) -> int:
        return len(self.timestamps_ns)


_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5

# ReadingColumns: timestamps_ns = 1, values = 2, and the codes, category_codes = 3 (uint16) or
# category_codes_u8 = 4, members of one oneof.
_COLUMN_DTYPES = {1: "<i8", 2: "<f8", 3: "<u2", 4: "u1"}
_CODES_ONEOF = {3: 4, 4: 3}


def _varint(data: memoryview, position: int) -> tuple[int, int]:
    """The varint at ``position`` and the position after it."""
    result = shift = 0
    while True:
        if position >= len(data) or shift > 63:
            raise MalformedMessage("truncated or overlong varint")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position
        shift += 7


def _fields(data: memoryview) -> list[tuple[int, int | memoryview]]:
    """(field number, value) for each field in ``data``: an int for varints, a view of the bytes of
    length-delimited fields; fixed-width fields are skipped, as this message has none."""
    fields: list[tuple[int, int | memoryview]] = []
    position = 0
    while position < len(data):
        key, position = _varint(data, position)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise MalformedMessage("field number 0")
        if wire_type == _VARINT:
            value, position = _varint(data, position)
            fields.append((number, value))
        elif wire_type == _LENGTH_DELIMITED:
            size, position = _varint(data, position)
            if position + size > len(data):
                raise MalformedMessage("a field runs past the end of the message")
            fields.append((number, data[position : position + size]))
            position += size
        elif wire_type in (_FIXED64, _FIXED32):
            position += 8 if wire_type == _FIXED64 else 4
            if position > len(data):
                raise MalformedMessage("a field runs past the end of the message")
        else:
            raise MalformedMessage(f"unsupported wire type {wire_type}")
    return fields


def _column(data: memoryview, dtype: str) -> np.ndarray:
    if len(data) % np.dtype(dtype).itemsize:
        raise MalformedMessage(f"a column of {len(data)} bytes is not a whole number of {dtype} items")
    return np.frombuffer(data, dtype=dtype)


def decode_export_response(message: bytes) -> ExportChunk:
    """Read one ExportReadingsResponse; the column arrays are read-only views of ``message``."""
    columns: dict[int, memoryview] = {}
    new_categories: list[str] = []
    next_sequence: int | None = None
    planned_readings = 0
    for number, value in _fields(memoryview(message)):
        if number == 1 and isinstance(value, memoryview):  # columns: a message field merges
            for column, data in _fields(value):
                if column in _COLUMN_DTYPES and isinstance(data, memoryview):
                    columns[column] = data
                    if column in _CODES_ONEOF:  # setting one member of a oneof clears the other
                        columns.pop(_CODES_ONEOF[column], None)
        elif number == 2 and isinstance(value, memoryview):
            try:
                new_categories.append(str(value, "utf-8"))
            except UnicodeDecodeError:
                raise MalformedMessage("a category name is not UTF-8") from None
        elif number == 3 and isinstance(value, int):
            next_sequence = value
        elif number == 4 and isinstance(value, int):
            planned_readings = value
    empty = memoryview(b"")
    codes = 4 if 4 in columns else 3
    chunk = ExportChunk(
        _column(columns.get(1, empty), _COLUMN_DTYPES[1]),
        _column(columns.get(2, empty), _COLUMN_DTYPES[2]),
        _column(columns.get(codes, empty), _COLUMN_DTYPES[codes]),
        new_categories,
        next_sequence,
        planned_readings,
    )
    if not len(chunk.timestamps_ns) == len(chunk.values) == len(chunk.codes):
        raise MalformedMessage("the columns have different lengths")
    return chunk
