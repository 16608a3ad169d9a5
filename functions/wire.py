"""ExportReadings messages read straight from their wire bytes into numpy views, and joined into columns.

Parsing the message with protobuf copies each column out of the received bytes before
``np.frombuffer`` can see it; at a million readings that copy and the parse cost more than the
aggregation's grouping. This reader finds the three column buffers in the message and views them
where they lie. It reads the proto3 wire format in full (fields in any order, a repeated singular
field's last value wins, unknown fields skipped), so a newer ingestor that adds fields stays
readable; only proto2's groups are refused, as a proto3 message never holds one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from functions.readings import Readings
from ingestor.v1 import ingestor_pb2 as pb


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
    late: np.ndarray | None = None
    """uint8 late flags, when the export asked for them."""
    data: memoryview | None = None
    """A file export's next bytes (a view of the message)."""
    data_readings: int = 0
    file_format: int = 0
    """The ExportFormat the message carries (0: columns)."""

    def __len__(self) -> int:
        return len(self.timestamps_ns)


_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5

_RESPONSE = pb.ExportReadingsResponse.DESCRIPTOR.fields_by_name
_COLUMNS, _NEW_CATEGORIES, _NEXT_SEQUENCE, _PLANNED, _DATA, _DATA_READINGS, _FORMAT = (
    _RESPONSE[name].number
    for name in ("columns", "new_categories", "next_sequence", "planned_readings", "data", "data_readings", "format")
)
_COLUMN = pb.ReadingColumns.DESCRIPTOR.fields_by_name
_TIMESTAMPS, _VALUES, _CODES_U16, _CODES_U8, _LATE = (
    _COLUMN[name].number for name in ("timestamps_ns", "values", "category_codes", "category_codes_u8", "late")
)
_COLUMN_DTYPES = {_TIMESTAMPS: "<i8", _VALUES: "<f8", _CODES_U16: "<u2", _CODES_U8: "u1", _LATE: "u1"}
_CODES_ONEOF = {_CODES_U16: _CODES_U8, _CODES_U8: _CODES_U16}
"""The two widths of the codes are members of one oneof: setting one clears the other."""


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
    planned_readings = data_readings = file_format = 0
    file_data: memoryview | None = None
    for number, value in _fields(memoryview(message)):
        if number == _COLUMNS and isinstance(value, memoryview):  # a message field merges
            for column, data in _fields(value):
                if column in _COLUMN_DTYPES and isinstance(data, memoryview):
                    columns[column] = data
                    if column in _CODES_ONEOF:
                        columns.pop(_CODES_ONEOF[column], None)
        elif number == _NEW_CATEGORIES and isinstance(value, memoryview):
            try:
                new_categories.append(str(value, "utf-8"))
            except UnicodeDecodeError:
                raise MalformedMessage("a category name is not UTF-8") from None
        elif number == _NEXT_SEQUENCE and isinstance(value, int):
            next_sequence = value
        elif number == _PLANNED and isinstance(value, int):
            planned_readings = value
        elif number == _DATA and isinstance(value, memoryview):
            file_data = value
        elif number == _DATA_READINGS and isinstance(value, int):
            data_readings = value
        elif number == _FORMAT and isinstance(value, int):
            file_format = value
    empty = memoryview(b"")
    codes = _CODES_U8 if _CODES_U8 in columns else _CODES_U16
    chunk = ExportChunk(
        _column(columns.get(_TIMESTAMPS, empty), _COLUMN_DTYPES[_TIMESTAMPS]),
        _column(columns.get(_VALUES, empty), _COLUMN_DTYPES[_VALUES]),
        _column(columns.get(codes, empty), _COLUMN_DTYPES[codes]),
        new_categories,
        next_sequence,
        planned_readings,
        _column(columns[_LATE], "u1") if _LATE in columns else None,
        file_data,
        data_readings,
        file_format,
    )
    if not len(chunk.timestamps_ns) == len(chunk.values) == len(chunk.codes):
        raise MalformedMessage("the columns have different lengths")
    if chunk.late is not None and len(chunk.late) != len(chunk.codes):
        raise MalformedMessage("the late flags do not match the readings")
    return chunk


class ExportDecoder:
    """Collects ExportReadings messages as they arrive into one array per column.

    When the first message says how many readings are coming, the columns are allocated once and
    each chunk is copied into place on arrival, while the ingestor builds the next one; otherwise
    the chunks are kept as views of their messages and joined at the end. Either way each reading
    is copied once on this side, and the codes come out as uint16 whichever width a message used.
    """

    def __init__(self) -> None:
        self._columns: tuple[np.ndarray, ...] | None = None
        self._filled = 0
        self._chunks: list[ExportChunk] = []
        self._categories: list[str] = []
        self.next_sequence: int | None = None
        """Where the selection continues, from the last message (None when nothing is left)."""

    def add(self, message: bytes) -> None:
        """Add one ExportReadingsResponse in wire format. MalformedMessage when it is not one."""
        chunk = decode_export_response(message)
        self._categories.extend(chunk.new_categories)
        self.next_sequence = chunk.next_sequence
        if self._columns is None and not self._chunks and chunk.planned_readings:
            planned = chunk.planned_readings
            self._columns = (np.empty(planned, "<i8"), np.empty(planned, "<f8"), np.empty(planned, "<u2"))
            if chunk.late is not None:
                self._columns += (np.empty(planned, "u1"),)
        if self._columns is None:
            self._chunks.append(chunk)
            return
        end = self._filled + len(chunk)
        if end > len(self._columns[0]):
            raise MalformedMessage("the stream carried more readings than it planned")
        parts = (chunk.timestamps_ns, chunk.values, chunk.codes, chunk.late)[: len(self._columns)]
        if any(part is None for part in parts):
            raise MalformedMessage("a message lacks the late flags the stream started with")
        for column, part in zip(self._columns, parts, strict=True):
            column[self._filled : end] = part
        self._filled = end

    def readings(self) -> Readings:
        """The readings received, oldest first."""
        if self._columns is not None:
            timestamps_ns, values, codes, *late = (column[: self._filled] for column in self._columns)
            return Readings(timestamps_ns, values, codes, self._categories, late[0] if late else None)
        if not self._chunks:
            return Readings.empty()
        lates = [chunk.late for chunk in self._chunks]
        return Readings(
            np.concatenate([chunk.timestamps_ns for chunk in self._chunks]),
            np.concatenate([chunk.values for chunk in self._chunks]),
            np.concatenate([chunk.codes for chunk in self._chunks], dtype=np.uint16),
            self._categories,
            np.concatenate(lates) if all(late is not None for late in lates) else None,  # type: ignore[arg-type]
        )


def decode_export(messages: Iterable[pb.ExportReadingsResponse]) -> Readings:
    """Join parsed ExportReadings messages into columns, as the client does with the raw stream."""
    decoder = ExportDecoder()
    for message in messages:
        decoder.add(message.SerializeToString())
    return decoder.readings()


HEALTH_CHECK_REQUEST = b""
"""grpc.health.v1.HealthCheckRequest for the whole server (``service`` empty: no field at all)."""
HEALTH_STATUS_NAMES = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


def decode_health_status(message: bytes) -> str:
    """The ``status`` (field 1) of a grpc.health.v1.HealthCheckResponse, by name: read from the wire,
    so that the function needs no health-checking package for its one call."""
    status = 0
    for number, value in _fields(memoryview(message)):
        if number == 1 and isinstance(value, int):
            status = value
    return HEALTH_STATUS_NAMES.get(status, f"status {status}")


_PARTIAL_COLUMNS = {
    "count": ("counts", "<i8"),
    "total": ("sums", "<f8"),
    "minimum": ("minimums", "<f8"),
    "maximum": ("maximums", "<f8"),
    "first_ns": ("first_timestamps_ns", "<i8"),
    "last_ns": ("last_timestamps_ns", "<i8"),
    "mean": ("means", "<f8"),
    "m2": ("m2s", "<f8"),
}


def decode_partials(response: pb.AggregateReadingsResponse | pb.GetHistoryResponse) -> pd.DataFrame:
    """AggregateReadings' (or GetHistory's) rows as the frame ``functions/partials.py`` merges: category names, keys
    and the partial columns; MalformedMessage when the columns disagree or a code names nothing."""
    partials = response.partials
    codes = _column(memoryview(partials.category_codes), "<u2")
    columns: dict[str, np.ndarray] = {"key": _column(memoryview(partials.keys), "<i8")}
    for name, (field_name, dtype) in _PARTIAL_COLUMNS.items():
        columns[name] = _column(memoryview(getattr(partials, field_name)), dtype)
    if any(len(column) != len(codes) for column in columns.values()):
        raise MalformedMessage("partial columns of different lengths")
    names = np.asarray(list(response.categories), dtype=object)
    if len(codes) and int(codes.max()) >= len(names):
        raise MalformedMessage("a category code outside the dictionary")
    return pd.DataFrame({"category": names[codes] if len(codes) else np.empty(0, object), **columns}, copy=False)
