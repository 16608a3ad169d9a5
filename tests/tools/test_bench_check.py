"""``python -m bench.check`` over made-up results: the figures of a quiet ``make bench`` pass, worse
ones fail, and figures only ``make bench`` measures are reported as not measured after a quick run."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from bench.check import TARGETS, main

# The figures of a full `make bench` on the development machine (docs/performance.md); for the window
# kinds and the file exports, figures that meet their targets.
RUN: dict[str, Any] = {
    "machine": {"cpus": 2, "load_avg": [0.4, 0.3, 0.2]},
    "sizes": [
        {
            "n": n,
            "project_ms": {"median": project, "p95": project * 1.2},
            "naive_ms": {"median": naive, "p95": naive * 1.1},
            "floor_ms": floor,
            "export_ms": export,
            "export_per_s": n / export * 1e3,
            "write_columns_per_s": columns,
            "raw_10k_ms": raw,
            "rss_per_reading_bytes": rss,
            "hopping_ms": 1.5 * project,
            "tumbling_ms": project,
            "parquet_export_ms": 1.8 * export,
            "csv_export_ms": 9 * export,
            "csv_timestamps_ms": 5 * export,
            "parquet_encode_ms": export,
            "csv_encode_ms": 7 * export,
            "pushdown_ms": pushdown,
            "window_stats_ms": 2 * pushdown,
            "recent_category_ms": 2 * pushdown,
            "percentiles_ms": 10 * project,
            "percentiles_raw_ms": 10 * project,
        }
        for n, project, naive, floor, export, columns, raw, rss, pushdown in [
            (10_000, 6.7, 11.2, 3.5, 1.2, 1.9e6, 8.9, 40.0, 3.0),
            (100_000, 10.4, 58.1, 4.6, 4.3, 4.7e6, 8.5, 20.0, 3.0),
            (1_000_000, 38.8, 551.0, 20.0, 13.3, 11.9e6, 8.4, 19.0, 6.0),
            (10_000_000, 333.0, 6396.0, 183.0, 142.0, 14.9e6, 9.1, 17.48, 7.0),
        ]
    ],
    "single": {
        "write_messages_per_s": 765_000.0,
        "generator_capacity_per_s": 42.1e6,
        "generator_sustained_per_s": 1_000_000.0,
        "import_app_ms": 589.0,
        "import_deps_ms": 520.0,
        "import_overhead": 0.13,
        "import_app_alone_ms": 589.0,
        "import_app_without_pyarrow_ms": 580.0,
        "import_growth_with_pyarrow": 0.016,
        "metrics_write_on_per_s": 101_000.0,
        "metrics_write_off_per_s": 103_000.0,
        "metrics_write_cost": 0.02,
        "metrics_processed_on_ms": 41.0,
        "metrics_processed_off_ms": 40.5,
        "metrics_processed_cost": 0.012,
        "write_columns_partials_per_s": 11.0e6,
        "write_columns_no_partials_per_s": 11.5e6,
        "partial_bytes_per_reading_1khz": 0.25,
    },
}
DURABLE: dict[str, Any] = {
    "durable": {"readings": 3_000_000, "seconds": 0.515, "readings_per_s": 5_821_492},
    "recovery": {"readings": 1_000_000, "seconds": 0.060, "process_start_to_listening_s": 0.349},
}


def check(tmp_path: Path, run: dict[str, Any], durable: dict[str, Any] | None) -> int:
    """Run the checker over these results; its exit code."""
    results, durable_path = tmp_path / "latest.json", tmp_path / "durable.json"
    results.write_text(json.dumps(run))
    if durable is not None:
        durable_path.write_text(json.dumps(durable))
    return main(["--results", str(results), "--durable", str(durable_path)])


def lines_by_key(output: str) -> dict[str, list[str]]:
    lines: dict[str, list[str]] = {target.key: [] for target in TARGETS}
    for line in output.splitlines():
        for target in TARGETS:
            if target.what in line:
                lines[target.key].append(line)
    return lines


def statuses(lines: dict[str, list[str]]) -> dict[str, list[str]]:
    return {key: [line.split("  ")[0].strip() for line in found] for key, found in lines.items()}


def test_the_figures_of_a_full_run_meet_every_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = check(tmp_path, RUN, DURABLE)
    lines = lines_by_key(capsys.readouterr().out)
    assert code == 0
    assert all(found and all(status == "PASS" for status in found) for found in statuses(lines).values())
    assert lines["naive-over-project-1m"] == [
        "PASS          GET /processed-data, naive baseline's median / the project's, at N=1M >= 12.0x: 14.2x"
    ]
    # One line per N for the targets that hold at every N, one per pair of sizes for the growth.
    assert len(lines["raw-data-10k"]) == 4
    assert len(lines["write-columns"]) == 2
    assert [line.split(": ")[-1] for line in lines["linear-growth"]] == ["0.16", "0.37", "0.86"]
    assert lines["recovery"][0].endswith("(1,000,000 readings) < 2.000 s: 0.060 s")


def test_a_quick_run_leaves_the_ten_million_targets_not_measured(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    quick = copy.deepcopy(RUN)
    quick["sizes"] = quick["sizes"][:3]
    code = check(tmp_path, quick, DURABLE)
    output = capsys.readouterr().out
    found = statuses(lines_by_key(output))
    assert code == 0
    assert found["project-10m"] == found["rss-per-reading-10m"] == ["not measured"]
    assert found["pushdown-10m"] == found["window-stats-10m"] == found["recent-category-10m"] == ["not measured"]
    assert found["write-columns"] == ["PASS"]
    assert "targets: 21 held, 0 failed, 6 not measured" in output


def test_figures_worse_than_their_targets_fail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    worse = copy.deepcopy(RUN)
    one_million = worse["sizes"][2]
    one_million["export_ms"] = 25.0
    one_million["project_ms"]["median"] = 41.0  # 41 / 20 = 2.05 times the floor
    worse["sizes"][1]["raw_10k_ms"] = 15.5
    worse["single"]["import_overhead"] = 0.2
    one_million["hopping_ms"] = 3.1 * one_million["tumbling_ms"]
    worse["single"]["import_growth_with_pyarrow"] = 0.06
    worse["single"]["metrics_write_cost"] = 0.08
    one_million["pushdown_ms"] = 11.0  # 0.55 times the floor
    slow_disk = copy.deepcopy(DURABLE)
    slow_disk["durable"]["readings_per_s"] = 150_000
    code = check(tmp_path, worse, slow_disk)
    output = capsys.readouterr().out
    lines = lines_by_key(output)
    found = statuses(lines)
    assert code == 1
    failed = {key for key, status in found.items() if "FAIL" in status}
    assert failed == {
        "export-1m",
        "project-over-floor-1m",
        "raw-data-10k",
        "import-overhead",
        "durable-writes",
        "hopping-over-tumbling-1m",
        "import-with-pyarrow",
        "metrics-write-cost",
        "pushdown-over-floor-1m",
    }
    assert found["raw-data-10k"] == ["PASS", "FAIL", "PASS", "PASS"]
    assert "targets: 18 held, 9 failed, 0 not measured" in output
    assert lines["metrics-write-cost"][0].endswith("<= +5 %: +8 %")
    assert lines["export-1m"][0].endswith("<= 20.0 ms: 25.0 ms")
    assert lines["import-overhead"][0].endswith("<= +15 %: +20 %")


def test_a_figure_equal_to_its_limit_meets_an_inclusive_target_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edge = copy.deepcopy(RUN)
    edge["sizes"][2]["project_ms"]["median"] = 40.0  # exactly twice the floor: "<= 2" holds
    at_limit = copy.deepcopy(DURABLE)
    at_limit["recovery"]["seconds"] = 2.0  # "< 2 s" does not
    code = check(tmp_path, edge, at_limit)
    found = statuses(lines_by_key(capsys.readouterr().out))
    assert code == 1
    assert found["project-over-floor-1m"] == ["PASS"]
    assert found["recovery"] == ["FAIL"]


def test_missing_figures_fail_unless_only_a_full_run_measures_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = check(tmp_path, RUN, None)
    output = capsys.readouterr().out
    found = statuses(lines_by_key(output))
    assert code == 1
    assert found["durable-writes"] == found["recovery"] == ["FAIL"]
    assert output.count("no figure in the results") == 2


def test_without_results_it_says_what_to_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--results", str(tmp_path / "none.json"), "--durable", str(tmp_path / "none.json")]) == 2
    assert "run make bench-quick" in capsys.readouterr().err


HISTORY: dict[str, Any] = {
    "history_1h_20d_ms": 31.0,
    "rollup_upkeep": 0.06,
    "archive_evicted_unarchived": 0,
    "archive_bytes_per_reading": 1.72,
}


@pytest.mark.parametrize(
    ("worse", "failing"),
    [
        ({}, set()),
        ({"history_1h_20d_ms": 77.0, "archive_evicted_unarchived": 12}, {"history-1h-20d", "archive-keeps-up"}),
        ({"rollup_upkeep": 0.23, "archive_bytes_per_reading": 6.5}, {"rollup-upkeep", "archive-bytes"}),
    ],
)
def test_history_targets_are_checked_when_their_results_are_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], worse: dict[str, float], failing: set[str]
) -> None:
    from bench.check import HISTORY_TARGETS

    history = tmp_path / "history.json"
    history.write_text(json.dumps({**HISTORY, **worse}))
    (tmp_path / "latest.json").write_text(json.dumps(RUN))
    (tmp_path / "durable.json").write_text(json.dumps(DURABLE))
    code = main(
        [
            "--results",
            str(tmp_path / "latest.json"),
            "--durable",
            str(tmp_path / "durable.json"),
            "--history",
            str(history),
        ]
    )
    output = capsys.readouterr().out
    failed = {target.key for target in HISTORY_TARGETS if f"FAIL          {target.what}" in output}
    assert failed == failing
    assert code == (1 if failing else 0)
    assert f"targets: {len(TARGETS) + len(HISTORY_TARGETS) - len(failing)} held, {len(failing)} failed" in output
