"""Readings and aggregates as CSV, NDJSON, Parquet and Arrow: encoders that go chunk by chunk.

The ingestor writes exports as CSV and Parquet itself (the function passes them on, see
functions/api/export.py); the function writes NDJSON and Arrow exports and every /processed-data file.

pyarrow does the formats; it is imported on the first export, so that the function's cold start
does not pay for it (see functions/__init__.py). Parquet and Arrow type timestamps as timestamps (ns,
UTC) and dictionary-encode the categories; CSV and NDJSON carry the API's JSON shapes (ISO 8601
timestamps with six fractional digits and a Z), written by functions/text_columns.py.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pandas as pd

from functions.processing import NO_TIME
from functions.readings import Readings
from functions.text_columns import NDJSON_SHAPE, text_lines

if TYPE_CHECKING:
    import pyarrow as pa

MEDIA_TYPES = {
    "csv": "text/csv",
    "ndjson": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
    "arrow": "application/vnd.apache.arrow.stream",
}
EXTENSIONS = {"csv": "csv", "ndjson": "ndjson", "parquet": "parquet", "arrow": "arrows"}
TIME_COLUMNS = ("last_timestamp", "window_start", "window_end", "first_timestamp")


def negotiate(asked: str | None, accept: str | None, default: str, with_json: bool = True) -> str:
    """The format: ``asked`` (format=) when given, else the first type of ``Accept`` (by quality)
    that is one of them (``application/json``: json, ``with_json``), else ``default``."""
    if asked is not None:
        return asked
    by_type = {media: name for name, media in MEDIA_TYPES.items()}
    if with_json:
        by_type["application/json"] = "json"
    ranges = []
    for position, item in enumerate((accept or "").split(",")):
        media, _, parameters = item.strip().partition(";")
        quality = 1.0
        for parameter in parameters.split(";"):
            key, _, value = parameter.strip().partition("=")
            if key == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        ranges.append((-quality, position, media.strip().lower()))
    for quality, _, media in sorted(ranges):
        if quality < 0 and media in by_type:
            return by_type[media]
    return default


class _Sink:
    """A file that keeps what is written until it is taken: pyarrow's writers write here."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._position = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        self._position += len(data)
        return len(data)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        taken, self._parts = b"".join(self._parts), []
        return taken


def _categories(readings: Readings) -> pa.Array:
    import pyarrow as pa

    return pa.DictionaryArray.from_arrays(
        pa.array(readings.codes.astype(np.int32)), pa.array(list(readings.categories), type=pa.string())
    )


class ReadingsEncoder:
    """One export's bytes, chunk by chunk, in a format the function writes itself (NDJSON, Arrow;
    the ingestor writes CSV and Parquet): :meth:`chunk` for each batch of readings, then
    :meth:`finish`."""

    def __init__(self, format_name: str) -> None:
        import pyarrow as pa
        import pyarrow.ipc

        if format_name not in ("ndjson", "arrow"):
            raise ValueError(f"the ingestor writes {format_name} exports, not the function")
        self.format = format_name
        self._sink = _Sink()
        self._schema = pa.schema(
            [
                pa.field("timestamp", pa.timestamp("ns", tz="UTC"), nullable=False),
                pa.field("value", pa.float64(), nullable=False),
                pa.field("category", pa.dictionary(pa.int32(), pa.string()), nullable=False),
            ]
        )
        self._writer: Any = None
        if format_name == "arrow":
            options = pyarrow.ipc.IpcWriteOptions(emit_dictionary_deltas=True)
            self._writer = pyarrow.ipc.new_stream(self._sink, self._schema, options=options)

    def chunk(self, readings: Readings) -> bytes | memoryview:
        """The bytes of these readings (codes indexing the stream's dictionary so far)."""
        import pyarrow as pa

        if not len(readings):
            return self._sink.take()
        if self.format == "ndjson":
            return text_lines(
                readings.timestamps_ns, readings.values, readings.codes, readings.categories, NDJSON_SHAPE
            )
        columns = [
            pa.array(readings.timestamps_ns, type=pa.timestamp("ns", tz="UTC")),
            pa.array(readings.values),
            _categories(readings),
        ]
        self._writer.write(pa.record_batch(columns, schema=self._schema))
        return self._sink.take()

    def finish(self) -> bytes:
        """The last bytes (Arrow's end of stream)."""
        if self._writer is not None:
            self._writer.close()
        return self._sink.take()


def aggregates_bytes(
    format_name: str, aggregates: pd.DataFrame, records: list[dict[str, Any]], keys: Sequence[str]
) -> bytes:
    """/processed-data's rows as a file: CSV and NDJSON from the JSON records (``keys`` their
    columns), Parquet and Arrow from the aggregates themselves, typed."""
    if format_name == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(keys), lineterminator="\n")
        writer.writeheader()
        for record in records:
            writer.writerow({key: _csv_value(value) for key, value in record.items()})
        return out.getvalue().encode()
    if format_name == "ndjson":
        return b"".join(orjson.dumps(record) + b"\n" for record in records)
    import pyarrow as pa
    import pyarrow.ipc
    import pyarrow.parquet

    table = pa.table({key: _typed(key, aggregates.get(key), len(records)) for key in keys})
    sink = _Sink()
    if format_name == "parquet":
        pyarrow.parquet.write_table(table, sink)
    else:
        with pyarrow.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    return sink.take()


def _csv_value(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _typed(key: str, column: pd.Series | None, rows: int) -> pa.Array:
    import pyarrow as pa

    if column is None or rows == 0:
        return pa.nulls(rows)
    if key == "category":
        return pa.array(column.astype(object).tolist(), type=pa.string()).dictionary_encode()
    if key in TIME_COLUMNS:
        times = column.to_numpy(np.int64)
        return pa.array(times, type=pa.timestamp("ns", tz="UTC"), mask=times == NO_TIME)
    if key in ("count", "late"):
        return pa.array(column.to_numpy(np.int64))
    if key == "closed":
        return pa.array(column.to_numpy(bool))
    return pa.array(column.to_numpy(np.float64), from_pandas=True)


SMALLEST_BYTES = {"csv": 33, "ndjson": 72, "parquet": 16, "arrow": 17}
"""The fewest bytes a reading takes in each format: an export of n readings takes at least n times
this (CSV: a 27-character timestamp, a digit, a one-letter category, two commas and a newline;
Parquet: the ingestor's plain event time and value)."""
