"""The exports' text columns against references written independently: event times through
``datetime.isoformat`` one by one, values through Arrow's own cast (the text the API has always
written), whole lines assembled in a plain loop."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from functions.text_columns import CSV_SHAPE, NDJSON_SHAPE, civil_dates, iso_timestamps, text_lines, value_texts

INT64 = np.iinfo(np.int64)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
S = 1_000_000_000


def reference_iso(ns: int) -> str:
    """Truncated to the microsecond toward the past, as the API writes event times."""
    moment = EPOCH + timedelta(microseconds=ns // 1000)
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def ns_at(*fields: int) -> int:
    return int((datetime(*fields, tzinfo=UTC) - EPOCH).total_seconds()) * S  # type: ignore[misc]


EDGES = [
    0,
    -1,  # 1969-12-31T23:59:59.999999Z
    -1000,
    999,
    1000,
    INT64.min,
    INT64.max,
    ns_at(2000, 2, 29),  # a leap day of a century divisible by 400
    ns_at(2000, 3, 1) - 1,
    ns_at(2024, 2, 29, 23, 59, 59) + 999_999_999,
    ns_at(2100, 2, 28, 12),  # 2100 is not a leap year
    ns_at(2100, 3, 1),
    ns_at(1900, 3, 1),  # nor was 1900
    ns_at(1904, 2, 29),
    ns_at(2262, 4, 10),
    ns_at(1677, 9, 22),
    ns_at(1999, 12, 31, 23, 59, 59) + 123_456_789,
]


def test_iso_timestamps_match_datetime_isoformat_across_the_int64_range() -> None:
    rng = np.random.default_rng(16)
    stamps = np.concatenate(
        [
            np.array(EDGES, dtype=np.int64),
            rng.integers(INT64.min, INT64.max, 20_000, dtype=np.int64, endpoint=True),
            ns_at(2024, 1, 20) + rng.integers(-5 * 86_400 * S, 5 * 86_400 * S, 5_000),  # a few days, out of order
        ]
    )
    got = iso_timestamps(stamps)
    assert got.dtype == np.dtype("S27")
    assert [text.decode() for text in got.tolist()] == [reference_iso(int(ns)) for ns in stamps]
    # The same with a suffix (how CSV and NDJSON use it), and nothing at all.
    assert iso_timestamps(stamps[:3], b'","').tolist() == [
        reference_iso(int(ns)).encode() + b'","' for ns in stamps[:3]
    ]
    assert len(iso_timestamps(np.empty(0, np.int64))) == 0


def test_civil_dates_match_the_calendar_day_by_day() -> None:
    days = np.arange(-106_752, 106_752, 7)  # the int64 nanosecond range, every seventh day
    year, month, day = civil_dates(days)
    expected = [(EPOCH + timedelta(days=int(d))).timetuple()[:3] for d in days]
    assert list(zip(year.tolist(), month.tolist(), day.tolist(), strict=True)) == expected


def arrow_text(values: np.ndarray) -> list[str]:
    return [str(text) for text in pc.cast(pa.array(values, type=pa.float64()), pa.string()).to_pylist()]


def awkward_values() -> np.ndarray:
    rng = np.random.default_rng(17)
    random_bits = rng.integers(0, 2**64, 30_000, dtype=np.uint64).view(np.float64)
    edges = [0.0, -0.0, 1.0, -3.0, 100.0, 1e-4, 1e9, 1e10, 1e15, 1e16, 1e22, 5e-324, 2.2250738585072014e-308]
    edges += [np.nextafter(1e-4, 0), np.nextafter(1e9, 0), np.nextafter(1e9, 2e9), 999_999_999.9, 0.1, 1 / 3]
    return np.concatenate(
        [
            np.array(edges),
            -np.array(edges),
            random_bits[np.isfinite(random_bits)],
            np.round(rng.normal(50, 10, 20_000), 2),  # what the generator makes
            rng.normal(0, 1e6, 20_000),
            np.round(rng.normal(0, 1e6, 5_000)),  # integral values
            rng.uniform(-1e-3, 1e-3, 5_000),
        ]
    )


@pytest.mark.parametrize("size", [1, 2, 7, 60_000])
def test_value_texts_are_arrows_text_for_every_kind_of_float(size: int) -> None:
    values = np.resize(awkward_values(), size) if size < 60_000 else awkward_values()
    text, lengths = value_texts(values)
    assert lengths.dtype.kind == "i"
    assert text.tobytes() == "".join(f"{value}," for value in arrow_text(values)).encode()
    assert lengths.tolist() == [len(value) for value in arrow_text(values)]


def test_value_texts_of_values_that_arrow_writes_in_its_own_way() -> None:
    # Integral values without ".0", exponents from 1e10 up and below 1e-6, zeros: Arrow's forms.
    values = np.array([100.0, 1e10, 1e-7, -0.0, 0.0, 53.49, 1e15, 0.000001])
    text, _ = value_texts(values)
    assert text.tobytes() == b"100,1e+10,1e-7,-0,0,53.49,1e+15,0.000001,"
    assert value_texts(np.empty(0))[0].tobytes() == b""


def test_text_lines_are_csv_and_ndjson_lines_in_arrival_order() -> None:
    rng = np.random.default_rng(18)
    count = 5_000
    stamps = ns_at(2024, 2, 28, 23) + rng.integers(0, 2 * 86_400 * S, count)
    values = awkward_values()[:count]
    names = ["north", "south", "west.1", "ä"]
    codes = rng.integers(0, len(names), count).astype(np.uint16)
    texts = arrow_text(values)
    csv = "".join(
        f"{reference_iso(int(ns))},{text},{names[code]}\n" for ns, text, code in zip(stamps, texts, codes, strict=True)
    )
    assert text_lines(stamps, values, codes, names, CSV_SHAPE) == csv.encode()
    ndjson = "".join(
        f'{{"timestamp":"{reference_iso(int(ns))}","value":{text},"category":"{names[code]}"}}\n'
        for ns, text, code in zip(stamps, texts, codes, strict=True)
    )
    assert text_lines(stamps, values, codes, names, NDJSON_SHAPE) == ndjson.encode()
    assert text_lines(stamps[:0], values[:0], codes[:0], names, CSV_SHAPE) == b""
