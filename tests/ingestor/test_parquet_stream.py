"""The ingestor's Parquet writer (ingestor/parquet_stream.py, parquet_encodings.py, bit_packing.pyx),
read back by pyarrow: the values, the types, the encodings and the statistics it says it wrote."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingestor.bit_packing import pack_codes, pack_deltas
from ingestor.parquet_stream import ARROW_SCHEMA, ParquetStream

T0 = 1_705_744_800_000_000_000
INT64 = np.iinfo(np.int64)


def parquet_file(chunks: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, Sequence[str]]]) -> bytes:
    stream = ParquetStream()
    pieces: list[bytes | memoryview] = []
    for timestamps, values, codes, names in chunks:
        pieces += stream.row_group(timestamps, values, codes, names)
    pieces.append(stream.finish())
    return b"".join(pieces)


def readings(seed: int, n: int, names: int = 3, spread_ns: int = 2_000) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    timestamps = T0 + np.cumsum(rng.integers(0, spread_ns, n)).astype(np.int64)
    codes = rng.integers(0, names, n).astype(np.uint8 if names <= 256 else np.uint16)
    return timestamps, rng.normal(50, 10, n), codes


def assert_reads_back(data: bytes, timestamps: np.ndarray, values: np.ndarray, categories: list[str]) -> pa.Table:
    table = pq.read_table(io.BytesIO(data))
    assert table.schema.field("timestamp").type == pa.timestamp("ns", tz="UTC")
    assert table.schema.field("value").type == pa.float64()
    assert pa.types.is_dictionary(table.schema.field("category").type)
    assert [field.nullable for field in table.schema] == [False, False, False]
    assert table["timestamp"].cast(pa.int64()).to_numpy().tolist() == timestamps.tolist()
    assert table["value"].to_numpy().tolist() == values.tolist()  # bit for bit: the doubles' own bytes
    assert table["category"].cast(pa.string()).to_pylist() == categories
    return table


def test_row_groups_of_readings_read_back_whole_with_their_types() -> None:
    names = ["north", "south", "east"]
    parts = [readings(seed, n) for seed, n in enumerate([131_072, 65_536, 1_000, 1])]
    data = parquet_file([(t, v, c, names) for t, v, c in parts])
    timestamps, values, codes = (np.concatenate(column) for column in zip(*parts, strict=True))
    assert_reads_back(data, timestamps, values, [names[code] for code in codes.tolist()])
    metadata = pq.ParquetFile(io.BytesIO(data)).metadata
    assert [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == [131_072, 65_536, 1_000, 1]
    first = metadata.row_group(0)
    assert first.column(0).encodings == ("DELTA_BINARY_PACKED",)
    assert first.column(1).encodings == ("PLAIN",)
    assert set(first.column(2).encodings) == {"PLAIN", "RLE_DICTIONARY"}
    assert first.column(2).has_dictionary_page
    assert all(first.column(i).compression == "UNCOMPRESSED" for i in range(3))
    # Event times take about a byte and a half: 11 bits of difference for gaps under 2,000 ns.
    assert first.column(0).total_compressed_size < 2 * 131_072


def test_the_event_times_statistics_bound_each_row_group() -> None:
    names = ["a"]
    parts = [readings(seed, 5_000, names=1) for seed in range(3)]
    data = parquet_file([(t[::-1].copy(), v, c, names) for t, v, c in parts])  # newest first: negative steps
    metadata = pq.ParquetFile(io.BytesIO(data)).metadata
    for number, (timestamps, _, _) in enumerate(parts):
        statistics = metadata.row_group(number).column(0).statistics
        assert statistics.has_min_max
        assert (statistics.min.value, statistics.max.value) == (int(timestamps.min()), int(timestamps.max()))


@pytest.mark.parametrize(
    "timestamps",
    [
        np.array([T0, T0, T0, T0], np.int64),  # no difference at all: width 0
        np.array([INT64.min, INT64.max, INT64.min, 0, -1], np.int64),  # differences that wrap: width 64
        np.array([T0 + 3, T0 - 10**12, T0 + 10**15, T0], np.int64),  # out of order, far apart
        np.arange(T0, T0 + 129 * 7, 7, dtype=np.int64),  # a block and one difference more
        np.array([-5_000_000_000, -1], np.int64),  # before 1970
    ],
    ids=["equal", "wrapping", "out-of-order", "block-and-one", "before-1970"],
)
def test_event_times_of_any_shape_survive_delta_packing(timestamps: np.ndarray) -> None:
    values = np.arange(len(timestamps), dtype=np.float64)
    codes = np.zeros(len(timestamps), np.uint8)
    data = parquet_file([(timestamps, values, codes, ["only"])])
    table = pq.read_table(io.BytesIO(data))
    assert table["timestamp"].cast(pa.int64()).to_numpy().tolist() == timestamps.tolist()


@pytest.mark.parametrize("names", [1, 2, 3, 255, 256, 257, 40_000])
def test_dictionary_codes_of_any_width_read_back(names: int) -> None:
    timestamps, values, codes = readings(names, 3_001, names=names)
    codes[-1] = names - 1  # the largest code is there
    labels = [f"c{i}" for i in range(names)]
    data = parquet_file([(timestamps, values, codes, labels)])
    assert_reads_back(data, timestamps, values, [labels[code] for code in codes.tolist()])


def test_a_dictionary_that_grows_between_row_groups() -> None:
    """Each row group's dictionary page holds the names so far: a later group may use new codes."""
    first, second = readings(1, 100, names=2), readings(2, 100, names=5)
    data = parquet_file([(*first, ["a", "b"]), (*second, ["a", "b", "c", "d", "e"])])
    expected = [["a", "b"][c] for c in first[2].tolist()] + [["a", "b", "c", "d", "e"][c] for c in second[2].tolist()]
    assert_reads_back(data, np.concatenate([first[0], second[0]]), np.concatenate([first[1], second[1]]), expected)


def test_an_export_of_nothing_is_a_valid_empty_file() -> None:
    data = parquet_file([])
    table = pq.read_table(io.BytesIO(data))
    assert table.num_rows == 0
    assert table.schema.names == ["timestamp", "value", "category"]


def test_the_packers_put_the_first_value_in_the_lowest_bits() -> None:
    # Two-bit codes 1, 2, 3, 0 | 1: 0b00111001, then 0b01 padded to a byte.
    assert pack_codes(np.array([1, 2, 3, 0, 1], np.uint8), 2, 8) == bytes([0b00111001, 0b01])
    # Differences 5, 3, 9 less the smallest (3): 2, 0, 6, in three bits each: 0b110_000_010.
    smallest, width, words = pack_deltas(np.array([10, 15, 18, 27], np.int64), 64)
    assert (smallest, width) == (3, 3)
    assert int(words[0]) == 0b110_000_010
    assert len(words) == 3  # 64 differences of 3 bits: the block padded with zeros
    with pytest.raises(ValueError, match="two values"):
        pack_deltas(np.array([1], np.int64), 64)
    with pytest.raises(ValueError, match="width"):
        pack_codes(np.array([1], np.uint8), 0, 8)


def test_the_stored_arrow_schema_is_what_pyarrow_writes_for_these_columns() -> None:
    schema = pa.schema(
        [
            pa.field("timestamp", pa.timestamp("ns", tz="UTC"), nullable=False),
            pa.field("value", pa.float64(), nullable=False),
            pa.field("category", pa.dictionary(pa.int32(), pa.string()), nullable=False),
        ]
    )
    assert base64.b64decode(ARROW_SCHEMA) == schema.serialize().to_pybytes()
