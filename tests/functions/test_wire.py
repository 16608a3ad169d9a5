"""The hand-written ExportReadingsResponse and WatchReadingsResponse codecs agree with protobuf's own, byte for byte."""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf.message import DecodeError
from hypothesis import given, settings
from hypothesis import strategies as st

from functions.readings import Readings
from functions.watch import decode_watch
from functions.wire import ExportDecoder, MalformedMessage, decode_export_response
from ingestor.store import Columns
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.wire import encode_export_response, encode_watch_response, varint

names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
sequences = st.none() | st.integers(0, 2**64 - 1)


def reference(
    columns: Columns, categories: list[str], next_sequence: int | None, planned: int
) -> pb.ExportReadingsResponse:
    # A oneof member is sent even when empty; the encoder leaves the codes out of an empty chunk.
    codes = (
        {}
        if not len(columns.codes)
        else {"category_codes_u8": columns.codes.tobytes()}
        if columns.codes.dtype == np.uint8
        else {"category_codes": columns.codes.astype("<u2").tobytes()}
    )
    message = pb.ExportReadingsResponse(
        columns=pb.ReadingColumns(
            timestamps_ns=columns.timestamps_ns.astype("<i8").tobytes(),
            values=columns.values.astype("<f8").tobytes(),
            **codes,
        ),
        new_categories=categories,
        planned_readings=planned,
    )
    if next_sequence is not None:
        message.next_sequence = next_sequence
    return message


@st.composite
def column_sets(draw: st.DrawFn) -> Columns:
    n = draw(st.integers(0, 40))
    ints = st.integers(-(2**63), 2**63 - 1)
    # The store holds uint8 codes while its dictionary fits in them, and sends them so.
    code_dtype = draw(st.sampled_from([np.uint8, np.uint16]))
    codes = st.integers(0, np.iinfo(code_dtype).max)
    return Columns(
        np.array(draw(st.lists(ints, min_size=n, max_size=n)), dtype=np.int64),
        np.array(draw(st.lists(st.floats(allow_nan=False), min_size=n, max_size=n)), dtype=np.float64),
        np.array(draw(st.lists(codes, min_size=n, max_size=n)), dtype=code_dtype),
    )


@settings(max_examples=200, deadline=None)
@given(column_sets(), st.lists(names, max_size=4), sequences, st.integers(0, 2**64 - 1))
def test_encoding_is_what_protobuf_serialises(
    columns: Columns, categories: list[str], next_sequence: int | None, planned: int
) -> None:
    expected = reference(columns, categories, next_sequence, planned).SerializeToString(deterministic=True)
    assert encode_export_response(columns, categories, next_sequence, planned) == expected


@settings(max_examples=200, deadline=None)
@given(column_sets(), st.lists(names, max_size=4), sequences, st.integers(0, 2**64 - 1))
def test_decoding_reads_what_protobuf_serialised(
    columns: Columns, categories: list[str], next_sequence: int | None, planned: int
) -> None:
    chunk = decode_export_response(reference(columns, categories, next_sequence, planned).SerializeToString())
    assert chunk.timestamps_ns.tolist() == columns.timestamps_ns.tolist()
    assert chunk.values.tolist() == columns.values.tolist()
    assert chunk.codes.tolist() == columns.codes.tolist()
    assert (chunk.new_categories, chunk.next_sequence, chunk.planned_readings) == (categories, next_sequence, planned)


def field(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def test_decoding_follows_protobuf_on_order_repeats_merges_and_unknown_fields() -> None:
    values = np.array([1.5, -2.0], "<f8").tobytes()
    raw = (
        varint(4 << 3) + varint(7)  # planned_readings before the columns
        + field(9, b"from a newer ingestor")  # unknown, length-delimited
        + varint(10 << 3 | 1) + bytes(8)  # unknown fixed64
        + varint(11 << 3 | 5) + bytes(4)  # unknown fixed32
        + varint(12 << 3) + varint(300)  # unknown varint
        + field(1, field(1, np.array([5, 6], "<i8").tobytes()) + field(2, bytes(16)))
        + field(2, "é".encode())
        + field(1, field(2, values) + field(3, np.array([1, 0], "<u2").tobytes()) + field(7, b"?"))
        + varint(3 << 3) + varint(5) + varint(3 << 3) + varint(9)  # the last value wins
    )  # fmt: skip
    expected = pb.ExportReadingsResponse.FromString(raw)
    chunk = decode_export_response(raw)
    assert chunk.timestamps_ns.tolist() == np.frombuffer(expected.columns.timestamps_ns, "<i8").tolist() == [5, 6]
    assert chunk.values.tolist() == np.frombuffer(expected.columns.values, "<f8").tolist() == [1.5, -2.0]
    assert chunk.codes.tolist() == np.frombuffer(expected.columns.category_codes, "<u2").tolist() == [1, 0]
    assert chunk.new_categories == list(expected.new_categories) == ["é"]
    assert chunk.next_sequence == expected.next_sequence == 9
    assert chunk.planned_readings == expected.planned_readings == 7


@pytest.mark.parametrize("last", [3, 4], ids=["uint16 last", "uint8 last"])
def test_decoding_keeps_the_last_member_of_the_codes_oneof(last: int) -> None:
    wide, narrow = field(3, np.array([1, 2], "<u2").tobytes()), field(4, bytes([3, 4]))
    # The two widths in one columns message, then the first again in a second columns message,
    # which protobuf merges into the first.
    first, second = (narrow, wide) if last == 3 else (wide, narrow)
    raw = field(1, field(1, bytes(16)) + field(2, bytes(16)) + first + second) + field(1, second)
    expected = pb.ExportReadingsResponse.FromString(raw)
    assert expected.columns.WhichOneof("codes") == ("category_codes" if last == 3 else "category_codes_u8")
    chunk = decode_export_response(raw)
    assert chunk.codes.dtype == (np.uint16 if last == 3 else np.uint8)
    assert chunk.codes.tolist() == ([1, 2] if last == 3 else [3, 4])


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"\x0a\x05\x0a\x08", id="length past the end"),
        pytest.param(b"\x18\xff", id="truncated varint"),
        pytest.param(b"\x18" + b"\xff" * 10 + b"\x01", id="overlong varint"),
        pytest.param(b"\x00\x01", id="field number 0"),
        pytest.param(b"\x0e", id="wire type 6"),
        pytest.param(b"\x0f", id="wire type 7"),
        pytest.param(b"\x39\x01\x02", id="truncated fixed64"),
        pytest.param(b"\x12\x01\xff", id="category not UTF-8"),
    ],
)
def test_what_protobuf_refuses_is_malformed(raw: bytes) -> None:
    with pytest.raises(DecodeError):
        pb.ExportReadingsResponse.FromString(raw)
    with pytest.raises(MalformedMessage):
        decode_export_response(raw)


@pytest.mark.parametrize(
    ("columns", "problem"),
    [
        (field(1, bytes(7)), "not a whole number"),
        (field(2, bytes(12)), "not a whole number"),
        (field(3, bytes(3)), "not a whole number"),
        (field(1, bytes(16)) + field(2, bytes(16)) + field(4, bytes(3)), "different lengths"),
        (field(1, bytes(16)) + field(2, bytes(8)) + field(3, bytes(4)), "different lengths"),
    ],
)
def test_columns_that_do_not_line_up_are_malformed(columns: bytes, problem: str) -> None:
    with pytest.raises(MalformedMessage, match=problem):
        decode_export_response(field(1, columns))


def messages(n: int, chunk: int, planned: bool) -> list[bytes]:
    timestamps = np.arange(n, dtype=np.int64)
    out = []
    for number, start in enumerate(range(0, n, chunk)):
        part = slice(start, start + chunk)
        columns = Columns(timestamps[part], timestamps[part] / 2, (timestamps[part] % 2).astype(np.uint16))
        out.append(
            encode_export_response(columns, ["a", "b"] if number == 0 else [], None, n if planned and not number else 0)
        )
    return out


@pytest.mark.parametrize("planned", [True, False], ids=["allocated once", "joined at the end"])
def test_the_decoder_joins_chunks_in_order(planned: bool) -> None:
    decoder = ExportDecoder()
    for message in messages(1000, 64, planned):
        decoder.add(message)
    readings = decoder.readings()
    assert readings.codes.dtype == np.uint16
    assert readings.timestamps_ns.tolist() == list(range(1000))
    assert readings.values.tolist() == [i / 2 for i in range(1000)]
    assert [readings.categories[code] for code in readings.codes.tolist()] == ["ab"[i % 2] for i in range(1000)]


@pytest.mark.parametrize("planned", [True, False], ids=["allocated once", "joined at the end"])
def test_the_decoder_takes_codes_of_either_width_in_one_stream(planned: bool) -> None:
    # The ingestor's dictionary outgrew 256 names while the stream ran: the codes widen mid-stream.
    timestamps = np.arange(6, dtype=np.int64)
    narrow = Columns(timestamps[:3], timestamps[:3] / 2, np.array([255, 0, 7], np.uint8))
    wide = Columns(timestamps[3:], timestamps[3:] / 2, np.array([256, 255, 1000], np.uint16))
    decoder = ExportDecoder()
    decoder.add(encode_export_response(narrow, [f"c{i}" for i in range(256)], None, 6 if planned else 0))
    decoder.add(encode_export_response(wide, [f"c{i}" for i in range(256, 1001)]))
    readings = decoder.readings()
    assert readings.codes.dtype == np.uint16
    assert [readings.categories[code] for code in readings.codes] == ["c255", "c0", "c7", "c256", "c255", "c1000"]
    assert readings.timestamps_ns.tolist() == list(range(6))


def test_fewer_readings_than_planned_is_what_eviction_looks_like() -> None:
    # 1000 planned, then the oldest 128 were evicted before the stream reached them.
    timestamps = np.arange(128, 1000, dtype=np.int64)
    columns = Columns(timestamps, timestamps / 2, np.zeros(len(timestamps), np.uint16))
    decoder = ExportDecoder()
    decoder.add(encode_export_response(columns, ["a"], None, planned_readings=1000))
    readings = decoder.readings()
    assert readings.timestamps_ns.tolist() == list(range(128, 1000))
    assert readings.values.tolist() == [i / 2 for i in range(128, 1000)]


def test_more_readings_than_planned_is_malformed() -> None:
    decoder = ExportDecoder()
    first, *rest = messages(1000, 600, planned=True)
    decoder.add(first)
    decoder.add(rest[0])
    with pytest.raises(MalformedMessage, match="more readings than it planned"):
        decoder.add(rest[0])


def watch_reference(columns: Columns, names: list[str], missed: int, columnar: bool) -> pb.WatchReadingsResponse:
    """The message built with protobuf itself, as the ingestor built it before it encoded by hand."""
    if not columnar:
        seconds, nanos = np.divmod(columns.timestamps_ns, 1_000_000_000)
        readings = [
            pb.Reading(timestamp={"seconds": s, "nanos": n}, value=v, category=names[c])
            for s, n, v, c in zip(
                seconds.tolist(), nanos.tolist(), columns.values.tolist(), columns.codes.tolist(), strict=True
            )
        ]
        return pb.WatchReadingsResponse(readings=readings, missed=missed)
    message = pb.WatchReadingsResponse(missed=missed)
    if len(columns):
        message.columns.CopyFrom(reference(columns, [], None, 0).columns)
        message.column_categories.extend(names)
    return message


@st.composite
def named_columns(draw: st.DrawFn) -> tuple[Columns, list[str]]:
    columns = draw(column_sets())
    # Valid category names are ASCII; longer and non-ASCII ones take multi-byte lengths and text.
    dictionary = draw(st.lists(st.text(min_size=1, max_size=200), min_size=1, max_size=5))
    return Columns(columns.timestamps_ns, columns.values, columns.codes % len(dictionary)), dictionary


@settings(max_examples=300, deadline=None)
@given(named_columns(), st.integers(0, 2**64 - 1), st.booleans())
def test_watch_encoding_is_what_protobuf_serialises(
    batch: tuple[Columns, list[str]], missed: int, columnar: bool
) -> None:
    columns, names = batch
    expected = watch_reference(columns, names, missed, columnar).SerializeToString(deterministic=True)
    assert encode_watch_response(columns, names, missed, columnar=columnar) == expected


@pytest.mark.parametrize("value", [0.0, -0.0, 5e-324, -1.5, 1e308])
@pytest.mark.parametrize("timestamp_ns", [0, -1, 999_999_999, 10**9, -(2**63), 2**63 - 1, 1_700_000_000_123_456_789])
def test_watch_encoding_edges(timestamp_ns: int, value: float) -> None:
    # Zero seconds, nanos and values are left out (but -0.0 is not), negative seconds take ten bytes.
    columns = Columns(np.array([timestamp_ns], np.int64), np.array([value]), np.array([0], np.uint8))
    for columnar in (False, True):
        expected = watch_reference(columns, ["A"], 0, columnar).SerializeToString(deterministic=True)
        assert encode_watch_response(columns, ["A"], columnar=columnar) == expected


@settings(max_examples=100, deadline=None)
@given(named_columns(), st.integers(0, 2**64 - 1), st.booleans())
def test_the_function_reads_both_forms_of_watch_messages(
    batch: tuple[Columns, list[str]], missed: int, columnar: bool
) -> None:
    columns, names = batch
    message = pb.WatchReadingsResponse.FromString(encode_watch_response(columns, names, missed, columnar=columnar))
    decoded = decode_watch(message)
    readings = decoded.readings
    assert isinstance(readings, Readings)
    assert decoded.missed == missed
    assert readings.timestamps_ns.tolist() == columns.timestamps_ns.tolist()
    assert readings.values.tolist() == columns.values.tolist()
    assert [readings.categories[code] for code in readings.codes.tolist()] == [
        names[code] for code in columns.codes.tolist()
    ]


@pytest.mark.parametrize(
    ("columns", "names", "problem"),
    [
        (pb.ReadingColumns(timestamps_ns=bytes(7)), [], "multiple"),
        (pb.ReadingColumns(timestamps_ns=bytes(16), values=bytes(8), category_codes_u8=bytes(2)), ["A"], "lengths"),
        (pb.ReadingColumns(timestamps_ns=bytes(8), values=bytes(8), category_codes_u8=b"\x01"), ["A"], "outside"),
    ],
)
def test_watch_columns_that_do_not_fit_are_malformed(
    columns: pb.ReadingColumns, names: list[str], problem: str
) -> None:
    with pytest.raises(MalformedMessage, match=problem):
        decode_watch(pb.WatchReadingsResponse(columns=columns, column_categories=names))
