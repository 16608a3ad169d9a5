"""Readings' columns as text, vectorised: ISO 8601 event times and the values' shortest decimal forms.

NDJSON exports spend most of their time here, and the JSON answers' timestamps come from here; CSV
exports are the ingestor's (``ingestor/csv_text.py``), checked byte for byte against
``text_lines`` with ``CSV_SHAPE``. Event times: each row's date comes from a
table of the days the column spans (civil dates by integer arithmetic), its time of day from tables
of ``HH:MM:SS`` and of digit pairs, written into fixed-width rows of plain integer fields. Lines are
joined by one Arrow ``take`` over all their pieces. Values: orjson writes every
float64 of a column in its shortest round-trip form at once (several times faster than Arrow's
cast); in the band where orjson and Arrow both write plain decimals and agree digit for digit, its
text is kept, and the other values (integral ones, which Arrow writes without ``.0``, zeros, the very
large and very small, not-a-number) are cast by Arrow, so the text is exactly Arrow's.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import numpy as np
import orjson

NS_PER_US = 1_000
US_PER_DAY = 86_400_000_000
ISO_WIDTH = 27
"""``YYYY-MM-DDTHH:MM:SS.ffffffZ``."""
PLAIN_BAND = (1e-4, 1e9)
"""Magnitudes in which orjson and Arrow both write a value as a plain decimal with the same digits
(Arrow switches to an exponent from 1e10 and below 1e-6, orjson from 1e16 and below 1e-5)."""


def _digits(numbers: np.ndarray, width: int) -> np.ndarray:
    """Each number as ``width`` ASCII digits, zero-padded: an (n, width) uint8 array."""
    out = np.empty((len(numbers), width), np.uint8)
    rest = numbers.astype(np.int64)
    for column in range(width - 1, -1, -1):
        rest, digit = np.divmod(rest, 10)
        out[:, column] = digit + ord("0")
    return out


@cache
def _clock_table() -> np.ndarray:
    """``HH:MM:SS`` of every second of a day: 86,400 rows of 8 bytes, as uint64 (their bytes in order)."""
    seconds = np.arange(86_400)
    text = np.full((86_400, 8), ord(":"), np.uint8)
    text[:, 0:2] = _digits(seconds // 3600, 2)
    text[:, 3:5] = _digits(seconds // 60 % 60, 2)
    text[:, 6:8] = _digits(seconds % 60, 2)
    return text.view("<u8").ravel()


@cache
def _two_digits() -> np.ndarray:
    """``00`` to ``99`` as uint16 (their bytes in order)."""
    return np.ascontiguousarray(_digits(np.arange(100), 2)).view("<u2").ravel()


def civil_dates(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(year, month, day) of days since 1970-01-01 in the proleptic Gregorian calendar (H. Hinnant's
    ``civil_from_days``, in integer arithmetic)."""
    z = days.astype(np.int64) + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = np.where(mp < 10, mp + 3, mp - 9)
    year = yoe + era * 400 + (month <= 2)
    return year, month, day


def _date_table(first_day: int, last_day: int) -> tuple[np.ndarray, np.ndarray]:
    """``YYYY-MM-`` and ``DD`` of each day from ``first_day`` to ``last_day`` (days since the epoch;
    the int64 nanosecond range holds only four-digit years), as uint64 and uint16 (bytes in order)."""
    year, month, day = civil_dates(np.arange(first_day, last_day + 1))
    text = np.full((len(year), 8), ord("-"), np.uint8)
    text[:, 0:4] = _digits(year, 4)
    text[:, 5:7] = _digits(month, 2)
    return text.view("<u8").ravel(), _two_digits()[day]


def _iso_row(end: bytes) -> np.dtype:
    """A row of text as fields of plain integers (copied fast, unlike numpy's byte strings)."""
    fields = [("ymd", "<u8"), ("dd", "<u2"), ("t", "u1"), ("clock", "<u8"), ("dot", "u1")]
    fields += [("f1", "<u2"), ("f2", "<u2"), ("f3", "<u2"), ("z", "u1")]
    return np.dtype(fields + [(f"end{i}", "u1") for i in range(len(end))])


CSV_SHAPE = (b"", b",", b"{name}")
NDJSON_SHAPE = (b'{"timestamp":"', b'","value":', b'"category":"{name}"}')
"""The pieces around a reading's fields in each text format: see :func:`text_lines`."""


def iso_timestamps(timestamps_ns: np.ndarray, end: bytes = b"") -> np.ndarray:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (truncated to microseconds, toward the past) of each timestamp,
    followed by ``end``: an array of fixed-width byte strings (``S27`` and more), one a timestamp."""
    micros = np.asarray(timestamps_ns, dtype=np.int64) // NS_PER_US
    rows = np.empty(len(micros), _iso_row(end))
    if len(micros):
        days = micros // US_PER_DAY
        of_day = micros - days * US_PER_DAY
        seconds = of_day // 1_000_000
        fraction = of_day - seconds * 1_000_000
        first = int(days.min())
        ymd, dd = _date_table(first, int(days.max()))
        index = days - first
        rows["ymd"] = ymd[index]
        rows["dd"] = dd[index]
        rows["clock"] = _clock_table()[seconds]
        pairs = _two_digits()
        high = fraction // 10_000
        low = fraction - high * 10_000
        middle = low // 100
        rows["f1"], rows["f2"], rows["f3"] = pairs[high], pairs[middle], pairs[low - middle * 100]
    rows["t"], rows["dot"], rows["z"] = ord("T"), ord("."), ord("Z")
    for i, byte in enumerate(end):
        rows[f"end{i}"] = byte
    return rows.view(f"S{ISO_WIDTH + len(end)}")


def value_texts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each float64 as Arrow's cast to string writes it (shortest round-trip digits), followed by a
    comma: the texts one after another (uint8), and each one's length without its comma."""
    import pyarrow as pa
    import pyarrow.compute as pc

    values = np.asarray(values, dtype=np.float64)
    if not len(values):
        return np.empty(0, np.uint8), np.empty(0, np.int64)
    # "[a,b,...,z]": the texts after the bracket, split at the commas; the "]" becomes a comma.
    text = np.frombuffer(orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY), dtype=np.uint8)[1:].copy()
    text[-1] = ord(",")
    commas = np.flatnonzero(text == ord(","))
    if len(commas) != len(values):
        raise AssertionError(f"{len(commas)} separators for {len(values)} values")
    lengths = np.diff(commas, prepend=-1) - 1
    magnitude = np.abs(values)
    arrow_writes = np.flatnonzero(
        ~((magnitude >= PLAIN_BAND[0]) & (magnitude < PLAIN_BAND[1]) & (values != np.trunc(values)))
    )
    if not len(arrow_writes):
        return text, lengths
    # Arrow's text in place of orjson's for these values: orjson's bytes go (not their commas), and
    # Arrow's are inserted where they were.
    cast = pc.cast(pa.array(values[arrow_writes]), pa.string())
    cast_offsets = np.frombuffer(cast.buffers()[1], np.int32, len(cast) + 1, 4 * cast.offset).astype(np.int64)
    cast_bytes = np.frombuffer(cast.buffers()[2], np.uint8)[cast_offsets[0] : cast_offsets[-1]]
    cast_lengths = np.diff(cast_offsets)
    gone = lengths[arrow_writes]
    starts = commas[arrow_writes] - gone
    keep = np.ones(len(text), bool)
    keep[_ranges(starts, gone)] = False
    kept_before = starts - np.concatenate(([0], np.cumsum(gone)[:-1]))
    lengths[arrow_writes] = cast_lengths
    return np.insert(text[keep], np.repeat(kept_before, cast_lengths), cast_bytes), lengths


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The indexes ``starts[i]`` to ``starts[i] + lengths[i]`` (exclusive), for every i, in order."""
    firsts = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    return firsts + np.arange(int(lengths.sum()))


def text_lines(
    timestamps_ns: np.ndarray,
    values: np.ndarray,
    codes: np.ndarray,
    names: Sequence[str],
    shape: tuple[bytes, bytes, bytes],
) -> memoryview:
    """One line a reading: ``head``, its ISO 8601 event time, ``middle``, its value as Arrow writes it
    and a comma, then its category's name framed as ``tail`` says (``{name}`` in it) and a newline.
    CSV is ``(b"", b",", b"{name}")``. The text is a view of the buffer Arrow wrote it in."""
    import pyarrow as pa
    import pyarrow.compute as pc

    count = len(timestamps_ns)
    if not count:
        return memoryview(b"")
    head, middle, tail = shape
    stamps = iso_timestamps(timestamps_ns, middle).view(np.uint8)
    text, lengths = value_texts(values)
    framed = [tail.replace(b"{name}", name.encode()) + b"\n" for name in names]
    # All the pieces in one string array (the head, the stamps, the values, the framed names), then
    # taken in line order: Arrow copies each piece where it goes.
    data = np.concatenate([np.frombuffer(head, np.uint8), stamps, text, np.frombuffer(b"".join(framed), np.uint8)])
    width = ISO_WIDTH + len(middle)
    ends = np.concatenate(
        (
            [0, len(head)],
            len(head) + width * np.arange(1, count + 1),
            len(head) + width * count + np.cumsum(lengths + 1),
            len(head) + width * count + len(text) + np.cumsum([len(name) for name in framed], dtype=np.int64),
        )
    )
    if ends[-1] >= 2**31:
        raise ValueError("too many readings for one piece of text")
    pieces = pa.StringArray.from_buffers(len(ends) - 1, pa.py_buffer(ends.astype(np.int32)), pa.py_buffer(data))
    order = np.empty((count, 4), np.int32)
    order[:, 0] = 0
    order[:, 1] = np.arange(1, count + 1)
    order[:, 2] = order[:, 1] + count
    order[:, 3] = 2 * count + 1 + np.asarray(codes, dtype=np.int32)
    lines = pc.take(pieces, pa.array(order.ravel() if head else order[:, 1:].ravel()))
    offsets = np.frombuffer(lines.buffers()[1], np.int32, len(lines) + 1, 4 * lines.offset)
    return memoryview(lines.buffers()[2][int(offsets[0]) : int(offsets[-1])]).cast("B")  # Arrow's buffer, no copy
