"""The benchmark's machinery on a small N, so `make bench` keeps working: real processes, real figures."""

from __future__ import annotations

import pytest

from bench.run import WRITE_CHUNK, bench_size, column_requests, make_readings, message_requests, table
from ingestor.settings import IngestorSettings


@pytest.mark.slow  # starts the ingestor, the API and a baseline
def test_a_small_run_agrees_with_the_baseline_and_fills_the_table() -> None:
    row = bench_size(10_000, repeats=2, with_baseline=True)
    assert row["naive_agrees"] is True
    for key in (
        "write_columns_per_s",
        "export_per_s",
        "floor_ms",
        "raw_10k_ms",
        "hopping_ms",
        "tumbling_ms",
        "parquet_export_ms",
        "csv_export_ms",
        "parquet_export_httpx_ms",
        "csv_export_httpx_ms",
        "csv_timestamps_ms",
        "parquet_encode_ms",
        "csv_encode_ms",
        "parquet_bytes_ms",
        "csv_bytes_ms",
    ):
        assert row[key] > 0
    assert row["project_ms"]["median"] <= row["project_ms"]["p95"]
    single = {
        "write_messages_per_s": 1.0,
        "generator_capacity_per_s": 1.0,
        "generator_sustained_per_s": 1.0,
        "import_app_ms": 1.0,
        "import_deps_ms": 1.0,
        "import_overhead": 0.0,
        "import_app_alone_ms": 1.0,
        "import_app_without_pyarrow_ms": 1.0,
        "import_growth_with_pyarrow": 0.0,
    }
    printed = table({"sizes": [row], "single": single})
    assert printed.splitlines()[2].startswith("| 10,000 |")


def test_the_benchmarks_writes_fit_the_ingestors_default_message_limit() -> None:
    readings = make_readings(2 * WRITE_CHUNK)
    limit = IngestorSettings().max_message_bytes
    columns = column_requests(readings)
    assert [len(request.columns.values) // 8 for request in columns] == [WRITE_CHUNK, WRITE_CHUNK]
    assert max(request.ByteSize() for request in columns) < limit
    assert max(request.ByteSize() for request in message_requests(readings)) < limit
