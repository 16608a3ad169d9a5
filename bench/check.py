"""``make bench-check``: the performance targets, checked against the figures of a benchmark run.

Reads ``bench/results/latest.json`` (written by ``bench/run.py``) and ``bench/results/durable.json``
(``python -m bench.durable``), and with ``--history`` the JSON of ``python -m bench.history`` for
``HISTORY_TARGETS`` (``make bench-check`` passes it); prints every target with the figure measured
and PASS or FAIL, and exits 1 when a target fails or a figure it needs is missing. Targets measured
only at N = 10,000,000 (by ``make bench``, not ``make bench-quick``) are reported as not measured
when the run has no such N.

The targets are stated here, in ``TARGETS``, and nowhere else.
"""

from __future__ import annotations

import argparse
import json
import operator
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
MILLION = 1_000_000
TEN_MILLION = 10_000_000

Figures = list[tuple[str, float]]
"""(where it was measured, figure): one per N for targets that hold at every N; none if not measured."""


@dataclass(frozen=True)
class Results:
    run: dict[str, Any]
    """bench/run.py's JSON."""
    durable: dict[str, Any] | None
    """bench/durable.py's JSON, when there is one."""
    history: dict[str, Any] | None = None
    """bench/history.py's JSON, when there is one."""

    def sizes(self) -> Iterator[dict[str, Any]]:
        yield from self.run.get("sizes", [])

    def size(self, n: int) -> dict[str, Any] | None:
        return next((row for row in self.sizes() if row["n"] == n), None)

    def single(self, key: str) -> Figures:
        single = self.run.get("single", {})
        return [("", single[key])] if key in single else []


COMPARISONS: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le, "<": operator.lt}


@dataclass(frozen=True)
class Target:
    key: str
    what: str
    comparison: str
    """``>=``, ``<=`` or ``<``: how the figure must compare with ``limit``."""
    limit: float
    show: Callable[[float], str]
    figures: Callable[[Results], Figures]
    only_at_ten_million: bool = False
    """Measured by ``make bench`` only: when missing, not measured rather than failed."""

    def holds(self, figure: float) -> bool:
        return COMPARISONS[self.comparison](figure, self.limit)


def times(value: float) -> str:
    return f"{value:.1f}x"


def ratio(value: float) -> str:
    return f"{value:.2f}"


def ms(value: float) -> str:
    return f"{value:,.1f} ms"


def per_second(value: float) -> str:
    return f"{value:,.0f} readings/s"


def byte_count(value: float) -> str:
    return f"{value:.2f} B"


def percent(value: float) -> str:
    return f"{value * 100:+.0f} %"


def seconds(value: float) -> str:
    return f"{value:.3f} s"


def at_n(n: int, figure: Callable[[dict[str, Any]], float | None]) -> Callable[[Results], Figures]:
    """The figure of the row of N = ``n``, when the run has that row and the figure in it (the target
    says which N)."""

    def figures(results: Results) -> Figures:
        row = results.size(n)
        value = None if row is None else figure(row)
        return [] if value is None else [("", value)]

    return figures


def every_n(figure: Callable[[dict[str, Any]], float], from_n: int = 0) -> Callable[[Results], Figures]:
    def figures(results: Results) -> Figures:
        return [(f"N={row['n']:,}", figure(row)) for row in results.sizes() if row["n"] >= from_n]

    return figures


def speedup_over_naive(row: dict[str, Any]) -> float | None:
    return row["naive_ms"]["median"] / row["project_ms"]["median"] if "naive_ms" in row else None


def growth_over_n(results: Results) -> Figures:
    """For each N and the next one measured: how much the median grew, over how much N grew."""
    rows = sorted(results.sizes(), key=lambda row: row["n"])
    return [
        (
            f"N={small['n']:,} to {large['n']:,}",
            (large["project_ms"]["median"] / small["project_ms"]["median"]) / (large["n"] / small["n"]),
        )
        for small, large in pairwise(rows)
    ]


def durable(*keys: str) -> Callable[[Results], Figures]:
    def figures(results: Results) -> Figures:
        value: Any = results.durable
        for key in keys:
            if not isinstance(value, dict) or key not in value:
                return []
            value = value[key]
        return [("", value)]

    return figures


def history(key: str) -> Callable[[Results], Figures]:
    def figures(results: Results) -> Figures:
        found = (results.history or {}).get(key)
        return [] if found is None else [("", found)]

    return figures


def recovery(results: Results) -> Figures:
    recovered = (results.durable or {}).get("recovery")
    return [(f"{recovered['readings']:,} readings", recovered["seconds"])] if recovered else []


TARGETS: tuple[Target, ...] = (
    Target(
        "naive-over-project-1m",
        "GET /processed-data, naive baseline's median / the project's, at N=1M",
        ">=",
        12,
        times,
        at_n(MILLION, speedup_over_naive),
    ),
    Target(
        "project-over-floor-1m",
        "GET /processed-data, the project's median / the floor's, at N=1M",
        "<=",
        2,
        ratio,
        at_n(MILLION, lambda row: row["project_ms"]["median"] / row["floor_ms"]),
    ),
    Target(
        "project-10m",
        "GET /processed-data, the project's median at N=10M",
        "<=",
        400,
        ms,
        at_n(TEN_MILLION, lambda row: row["project_ms"]["median"]),
        only_at_ten_million=True,
    ),
    Target(
        "linear-growth",
        "GET /processed-data grows at most linearly: median growth / N growth, from each N to the next",
        "<=",
        1,
        ratio,
        growth_over_n,
    ),
    Target(
        "export-1m",
        "ExportReadings of the whole buffer into numpy at N=1M",
        "<=",
        20,
        ms,
        at_n(MILLION, lambda row: row["export_ms"]),
    ),
    Target(
        "hopping-over-tumbling-1m",
        "GET /processed-data?window=1m&step=10s&stats=min,max,std over the same without step, at N=1M",
        "<=",
        3,
        times,
        at_n(MILLION, lambda row: row["hopping_ms"] / row["tumbling_ms"] if "hopping_ms" in row else None),
    ),
    Target(
        "parquet-export-1m",
        "GET /export?format=parquet read by curl, over ExportReadings into numpy, at N=1M",
        "<=",
        2,
        times,
        at_n(MILLION, lambda row: row["parquet_export_ms"] / row["export_ms"] if "parquet_export_ms" in row else None),
    ),
    Target(
        "csv-export-1m",
        "GET /export?format=csv read by curl, over ExportReadings into numpy, at N=1M",
        "<=",
        10,
        times,
        at_n(MILLION, lambda row: row["csv_export_ms"] / row["export_ms"] if "csv_export_ms" in row else None),
    ),
    Target(
        "raw-data-10k",
        "GET /raw-data?limit=10000, at every N",
        "<=",
        15,
        ms,
        every_n(lambda row: row["raw_10k_ms"]),
    ),
    Target(
        "write-messages",
        "WriteReadings, 10k Reading messages a batch",
        ">=",
        500_000,
        per_second,
        lambda results: results.single("write_messages_per_s"),
    ),
    Target(
        "write-columns",
        "WriteReadings as columns, at every N from 1M",
        ">=",
        5_000_000,
        per_second,
        every_n(lambda row: row["write_columns_per_s"], from_n=MILLION),
    ),
    Target(
        "generator-1mhz",
        "the generator at 1 MHz in the real ingestor keeps up",
        ">=",
        990_000,
        per_second,
        lambda results: results.single("generator_sustained_per_s"),
    ),
    Target(
        "rss-per-reading-10m",
        "ingestor RSS growth per buffered reading at N=10M",
        "<=",
        18,
        byte_count,
        at_n(TEN_MILLION, lambda row: row["rss_per_reading_bytes"]),
        only_at_ten_million=True,
    ),
    Target(
        "import-overhead",
        "cold import of functions.app over its third-party dependencies alone",
        "<=",
        0.15,
        percent,
        lambda results: results.single("import_overhead"),
    ),
    Target(
        "import-with-pyarrow",
        "cold import of functions.app with pyarrow installed over the same without it (pyarrow loads on export only)",
        "<=",
        0.05,
        percent,
        lambda results: results.single("import_growth_with_pyarrow"),
    ),
    Target(
        "metrics-write-cost",
        "WriteReadings of 100 readings: how much slower with metrics on (bench/metrics_cost.py)",
        "<=",
        0.05,
        percent,
        lambda results: results.single("metrics_write_cost"),
    ),
    Target(
        "metrics-processed-cost",
        "/processed-data at N=1M: how much slower with metrics on (bench/metrics_cost.py)",
        "<=",
        0.05,
        percent,
        lambda results: results.single("metrics_processed_cost"),
    ),
    Target(
        "pushdown-over-floor-1m",
        "GET /processed-data from partials, its median / the floor's, at N=1M",
        "<=",
        0.5,
        ratio,
        at_n(MILLION, lambda row: row["pushdown_ms"] / row["floor_ms"] if "pushdown_ms" in row else None),
    ),
    Target(
        "pushdown-10m",
        "GET /processed-data from partials, its median at N=10M",
        "<=",
        30,
        ms,
        at_n(TEN_MILLION, lambda row: row.get("pushdown_ms")),
        only_at_ten_million=True,
    ),
    Target(
        "pushdown-over-floor-10m",
        "GET /processed-data from partials, its median / the floor's, at N=10M",
        "<=",
        0.1,
        ratio,
        at_n(TEN_MILLION, lambda row: row["pushdown_ms"] / row["floor_ms"] if "pushdown_ms" in row else None),
        only_at_ten_million=True,
    ),
    Target(
        "window-stats-10m",
        "GET /processed-data?window=1m&stats=min,max,sum,std from partials at N=10M",
        "<=",
        60,
        ms,
        at_n(TEN_MILLION, lambda row: row.get("window_stats_ms")),
        only_at_ten_million=True,
    ),
    Target(
        "recent-category-10m",
        "GET /processed-data?category=A&since= (the last 10 %) from partials at N=10M",
        "<=",
        15,
        ms,
        at_n(TEN_MILLION, lambda row: row.get("recent_category_ms")),
        only_at_ten_million=True,
    ),
    Target(
        "percentiles-unchanged-1m",
        "GET /processed-data?stats=p50,p99 (readings either way), partials on / off, at N=1M",
        "<=",
        1.1,
        times,
        at_n(
            MILLION,
            lambda row: row["percentiles_ms"] / row["percentiles_raw_ms"] if "percentiles_ms" in row else None,
        ),
    ),
    Target(
        "write-columns-with-partials",
        "WriteReadings as columns into an ingestor sealing blocks / one that does not (until acknowledged)",
        ">=",
        0.9,
        ratio,
        lambda results: [
            ("", single["write_columns_partials_per_s"] / single["write_columns_no_partials_per_s"])
            for single in [results.run.get("single", {})]
            if "write_columns_partials_per_s" in single
        ],
    ),
    Target(
        "partial-bytes-1khz",
        "partials of sealed blocks per reading, at 1,000 readings/s in 3 categories",
        "<=",
        1,
        byte_count,
        lambda results: results.single("partial_bytes_per_reading_1khz"),
    ),
    Target(
        "durable-writes",
        "durable WriteReadings, fsync'd before each acknowledgement (bench/durable.py)",
        ">=",
        200_000,
        per_second,
        durable("durable", "readings_per_s"),
    ),
    Target(
        "recovery",
        "recovery of the durable buffer at start, in the ingestor (bench/durable.py)",
        "<",
        2,
        seconds,
        recovery,
    ),
)


HISTORY_TARGETS: tuple[Target, ...] = (
    Target(
        "history-1h-20d",
        "GET /history?window=1h over the newest 20 of 30 days of minute rollups, 16 categories (bench/history.py)",
        "<=",
        50,
        ms,
        history("history_1h_20d_ms"),
    ),
    Target(
        "rollup-upkeep",
        "columnar WriteReadings throughput lost to rollup upkeep (bench/history.py)",
        "<=",
        0.10,
        percent,
        history("rollup_upkeep"),
    ),
    Target(
        "archive-keeps-up",
        "readings evicted unarchived while generating at 1 MHz into a file:// archive (bench/history.py)",
        "<=",
        0,
        lambda value: f"{value:,.0f}",
        history("archive_evicted_unarchived"),
    ),
    Target(
        "archive-bytes",
        "Parquet bytes per generated reading in the archive (bench/history.py)",
        "<=",
        6,
        byte_count,
        history("archive_bytes_per_reading"),
    ),
)
"""Rollups and the archive: checked when ``--history`` names bench/history.py's JSON."""


@dataclass(frozen=True)
class Verdict:
    target: Target
    where: str
    figure: float | None

    @property
    def status(self) -> str:
        if self.figure is None:
            return "not measured" if self.target.only_at_ten_million else "FAIL"
        return "PASS" if self.target.holds(self.figure) else "FAIL"

    def line(self) -> str:
        target = self.target
        where = f" ({self.where})" if self.where else ""
        stated = f"{target.what}{where} {target.comparison} {target.show(target.limit)}"
        if self.figure is not None:
            return f"{self.status:<12}  {stated}: {target.show(self.figure)}"
        if target.only_at_ten_million:
            return f"{self.status:<12}  {stated}: make bench measures it, make bench-quick does not"
        return f"{self.status:<12}  {stated}: no figure in the results"


def target(key: str) -> Target:
    return next(target for target in TARGETS if target.key == key)


def verdicts(results: Results, targets: Sequence[Target] = TARGETS) -> list[Verdict]:
    found = []
    for target in targets:
        figures = target.figures(results)
        found += [Verdict(target, where, figure) for where, figure in figures] or [Verdict(target, "", None)]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.check", description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS / "latest.json", help="bench/run.py's JSON")
    parser.add_argument("--durable", type=Path, default=RESULTS / "durable.json", help="bench/durable.py's JSON")
    parser.add_argument("--history", type=Path, help="bench/history.py's JSON: check HISTORY_TARGETS too")
    args = parser.parse_args(argv)
    if not args.results.exists():
        print(f"{args.results} does not exist: run make bench-quick (or make bench) first", file=sys.stderr)
        return 2
    durable_results = json.loads(args.durable.read_text()) if args.durable.exists() else None
    history_results = json.loads(args.history.read_text()) if args.history and args.history.exists() else None
    results = Results(json.loads(args.results.read_text()), durable_results, history_results)
    targets = TARGETS + HISTORY_TARGETS if args.history else TARGETS
    found = verdicts(results, targets)
    for verdict in found:
        print(verdict.line())
    by_target = {target.key: {v.status for v in found if v.target is target} for target in targets}
    failed = sum("FAIL" in statuses for statuses in by_target.values())
    unmeasured = sum(statuses == {"not measured"} for statuses in by_target.values())
    held = len(targets) - failed - unmeasured
    load = results.run.get("machine", {}).get("load_avg")
    print(f"\ntargets: {held} held, {failed} failed, {unmeasured} not measured (load average at the start {load})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
