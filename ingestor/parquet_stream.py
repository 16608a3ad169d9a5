"""Readings as one Parquet file, written a row group at a time, its bytes handed out as they are made.

An export's Parquet is the columns the ring already holds, framed: event times (INT64, a UTC
timestamp in nanoseconds) DELTA_BINARY_PACKED (nearly in order, they take a byte or two each),
values (DOUBLE) as a PLAIN page, which is the array's own bytes, and categories dictionary-encoded
(BYTE_ARRAY, UTF8): a dictionary page of the stream's names so far and a page of the codes
bit-packed (``ingestor/parquet_encodings.py``). Every column is REQUIRED, so pages carry no
levels, and nothing is compressed. The footer also holds the Arrow
schema (``ARROW:schema``), so that Arrow readers get the categories back as a dictionary.

Written here rather than by pyarrow's writer because an export is bound by its encoder and its
bytes: pyarrow encodes the codes a value at a time (11 ms for a million), here they are packed with
numpy, and fewer bytes are fewer copies through gRPC, the function and HTTP. The file is checked
against pyarrow's reader in ``tests/ingestor/test_parquet_stream.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ingestor.parquet_encodings import bit_packed_run, delta_binary_packed, index_width
from ingestor.thrift_compact import Field, ListOf, struct

MAGIC = b"PAR1"
CREATED_BY = b"realtime-pipeline export"

# parquet.thrift's enums.
_INT64, _DOUBLE, _BYTE_ARRAY = 2, 5, 6
_REQUIRED = 0
_UTF8 = 0
_PLAIN, _RLE, _DELTA_BINARY_PACKED, _RLE_DICTIONARY = 0, 3, 5, 8
_UNCOMPRESSED = 0
_DATA_PAGE, _DICTIONARY_PAGE = 0, 2

COLUMNS = ("timestamp", "value", "category")


@dataclass(frozen=True, slots=True)
class _Chunk:
    """What the footer says of one column chunk."""

    physical_type: int
    encodings: tuple[int, ...]
    name: str
    values: int
    size: int
    data_page_offset: int
    dictionary_page_offset: int | None = None
    statistics: bytes | None = None


@lru_cache(maxsize=64)  # the pages of every full chunk are alike
def _page_header(page_type: int, size: int, values: int, encoding: int) -> bytes:
    if page_type == _DICTIONARY_PAGE:
        header = Field(7, "struct", struct(Field(1, "i32", values), Field(2, "i32", encoding)))
    else:
        data = struct(Field(1, "i32", values), Field(2, "i32", encoding), Field(3, "i32", _RLE), Field(4, "i32", _RLE))
        header = Field(5, "struct", data)
    return struct(Field(1, "i32", page_type), Field(2, "i32", size), Field(3, "i32", size), header)


ARROW_SCHEMA = (
    b"/////yABAAAQAAAAAAAKAAwABgAFAAgACgAAAAABBAAEAAAArP///wQAAAADAAAAtAAAAHAAAAAUAAAAEAAYAAgAAAAHAAwA"
    b"EAAUABAAAAAAAAAFFAAAAEgAAAAkAAAABAAAAAAAAAAIAAAAY2F0ZWdvcnkAAAAACAAIAAAABAAIAAAADAAAAAgADAAIAAcA"
    b"CAAAAAAAAAEgAAAABAAEAAQAAADQ////AAAAAxAAAAAcAAAABAAAAAAAAAAFAAAAdmFsdWUABgAIAAYABgAAAAAAAgAQABQA"
    b"CAAAAAcADAAAABAAEAAAAAAAAAoQAAAAJAAAAAQAAAAAAAAACQAAAHRpbWVzdGFtcAAAAAgADAAGAAgACAAAAAAAAwAEAAAA"
    b"AwAAAFVUQwA="
)
"""The Arrow schema the columns read back as (timestamp[ns, UTC], float64, dictionary<int32, string>, all
not null), serialised and base64-encoded as Arrow's own writer stores it under ``ARROW:schema``:
a constant, so that an export does not load pyarrow; a test checks it against pyarrow's."""


class ParquetStream:
    """One Parquet file: :meth:`row_group` for each chunk of readings, then :meth:`finish`.

    Each call returns the file's next bytes, as pieces (the columns' own memory where it can)."""

    def __init__(self) -> None:
        self._position = 0
        self._row_groups: list[bytes] = []
        self._rows = 0

    def _take(self, pieces: list[bytes | memoryview]) -> list[bytes | memoryview]:
        self._position += sum(len(piece) for piece in pieces)
        return pieces

    def row_group(
        self, timestamps_ns: np.ndarray, values: np.ndarray, codes: np.ndarray, names: Sequence[str]
    ) -> list[bytes | memoryview]:
        """A row group of these readings (``codes`` index ``names``); the file's magic before the first."""
        count = len(timestamps_ns)
        pieces: list[bytes | memoryview] = [MAGIC] if self._position == 0 else []
        start = self._position + sum(len(piece) for piece in pieces)
        offset = start
        chunks: list[_Chunk] = []
        times = np.asarray(timestamps_ns, dtype=np.int64)
        columns: tuple[tuple[str, int, int, bytes | memoryview], ...] = (
            ("timestamp", _INT64, _DELTA_BINARY_PACKED, delta_binary_packed(times)),
            ("value", _DOUBLE, _PLAIN, np.ascontiguousarray(values, dtype="<f8").data.cast("B")),
        )
        for name, physical, encoding, data in columns:
            header = _page_header(_DATA_PAGE, len(data), count, encoding)
            statistics = None
            if name == "timestamp" and count:
                low, high = times.min().astype("<i8").tobytes(), times.max().astype("<i8").tobytes()
                statistics = struct(
                    Field(1, "binary", high), Field(2, "binary", low), Field(5, "binary", high), Field(6, "binary", low)
                )
            size = len(header) + len(data)
            chunks.append(_Chunk(physical, (encoding,), name, count, size, offset, None, statistics))
            pieces += (header, data)
            offset += size
        encoded_names = [name.encode() for name in names] or [b""]
        dictionary = b"".join(len(name).to_bytes(4, "little") + name for name in encoded_names)
        dictionary_header = _page_header(_DICTIONARY_PAGE, len(dictionary), len(encoded_names), _PLAIN)
        width = index_width(len(encoded_names))
        indices = bytes([width]) + bit_packed_run(np.asarray(codes), width)
        indices_header = _page_header(_DATA_PAGE, len(indices), count, _RLE_DICTIONARY)
        dictionary_size = len(dictionary_header) + len(dictionary)
        chunks.append(
            _Chunk(
                _BYTE_ARRAY,
                (_PLAIN, _RLE_DICTIONARY),
                "category",
                count,
                dictionary_size + len(indices_header) + len(indices),
                offset + dictionary_size,
                offset,
            )
        )
        pieces += (dictionary_header, dictionary, indices_header, indices)
        self._row_groups.append(self._row_group_metadata(chunks, count, start))
        self._rows += count
        return self._take(pieces)

    @staticmethod
    def _row_group_metadata(chunks: list[_Chunk], rows: int, start: int) -> bytes:
        columns = [
            struct(
                Field(2, "i64", chunk.dictionary_page_offset or chunk.data_page_offset),
                Field(
                    3,
                    "struct",
                    struct(
                        Field(1, "i32", chunk.physical_type),
                        Field(2, "list", ListOf("i32", chunk.encodings)),
                        Field(3, "list", ListOf("binary", [chunk.name.encode()])),
                        Field(4, "i32", _UNCOMPRESSED),
                        Field(5, "i64", chunk.values),
                        Field(6, "i64", chunk.size),
                        Field(7, "i64", chunk.size),
                        Field(9, "i64", chunk.data_page_offset),
                        Field(11, "i64", chunk.dictionary_page_offset),
                        Field(12, "struct", chunk.statistics),
                    ),
                ),
            )
            for chunk in chunks
        ]
        size = sum(chunk.size for chunk in chunks)
        return struct(
            Field(1, "list", ListOf("struct", columns)),
            Field(2, "i64", size),
            Field(3, "i64", rows),
            Field(5, "i64", start),
            Field(6, "i64", size),
        )

    def finish(self) -> bytes:
        """The footer (and the magic first, if no row group came): the file's last bytes."""
        head = MAGIC if self._position == 0 else b""
        timestamp_type = struct(
            Field(8, "struct", struct(Field(1, "bool", True), Field(2, "struct", struct(Field(3, "struct", struct())))))
        )
        schema = [
            struct(Field(4, "binary", b"schema"), Field(5, "i32", len(COLUMNS))),
            struct(
                Field(1, "i32", _INT64),
                Field(3, "i32", _REQUIRED),
                Field(4, "binary", b"timestamp"),
                Field(10, "struct", timestamp_type),
            ),
            struct(Field(1, "i32", _DOUBLE), Field(3, "i32", _REQUIRED), Field(4, "binary", b"value")),
            struct(
                Field(1, "i32", _BYTE_ARRAY),
                Field(3, "i32", _REQUIRED),
                Field(4, "binary", b"category"),
                Field(6, "i32", _UTF8),
                Field(10, "struct", struct(Field(1, "struct", struct()))),
            ),
        ]
        type_defined_order = struct(Field(1, "struct", struct()))
        footer = struct(
            Field(1, "i32", 2),
            Field(2, "list", ListOf("struct", schema)),
            Field(3, "i64", self._rows),
            Field(4, "list", ListOf("struct", self._row_groups)),
            Field(
                5,
                "list",
                ListOf("struct", [struct(Field(1, "binary", b"ARROW:schema"), Field(2, "binary", ARROW_SCHEMA))]),
            ),
            Field(6, "binary", CREATED_BY),
            Field(7, "list", ListOf("struct", [type_defined_order] * len(COLUMNS))),
        )
        self._position += len(head) + len(footer) + 8
        return head + footer + len(footer).to_bytes(4, "little") + MAGIC
