"""The dashboard's window chart in a real browser: it follows the live window feed under uvicorn, and
polls /processed-data?window= when the feed fails or stalls (what a buffering gateway does to it).

Either way, once ingestion stops, the chart holds exactly /processed-data's values for the same
windows, read from the chart's own data.
"""

from __future__ import annotations

import time
from datetime import datetime

import pytest
from playwright.sync_api import Page, Route

from devtools.browser import wait_for
from devtools.processes import ServerProcess
from devtools.waiting import wait_until
from tests.support.clients import api_http
from tests.support.dashboard import assert_only_the_apps_host, open_dashboard, stats
from tests.support.factories import MakeStack

pytestmark = pytest.mark.slow

FEED = "**/api/v1/stream/aggregates*"
CHART_VALUES = """() => {
    const chart = window.dashboard.windowChart;
    if (!chart.plot) return {};
    const [starts, ...series] = chart.plot.data;
    const out = {};
    chart.categories.forEach((category, i) => {
        out[category] = {};
        starts.forEach((start, j) => { if (series[i][j] !== null) out[category][start] = series[i][j]; });
    });
    return out;
}"""
"""{category: {window start in epoch seconds (as text): value}} of what the window chart draws."""


@pytest.fixture
def api(make_stack: MakeStack) -> ServerProcess:
    return make_stack(capacity=100_000, rate_hz=1)[1]


def chart_values(page: Page) -> dict[str, dict[str, float]]:
    return page.evaluate(CHART_VALUES)  # type: ignore[no-any-return]


def processed_values(api: ServerProcess, window: str, stat: str) -> dict[str, dict[str, float]]:
    """/processed-data's windows, as the chart holds them (the start as JavaScript prints seconds)."""
    field = {"mean": "avg_value", "max": "max", "p95": "p95"}[stat]
    params = {"window": window} if stat == "mean" else {"window": window, "stats": stat}
    with api_http(api) as http:
        rows = http.get("/processed-data", params=params).json()
    values: dict[str, dict[str, float]] = {}
    for row in rows:
        start = datetime.fromisoformat(row["window_start"]).timestamp()
        assert start == int(start)
        values.setdefault(row["category"], {})[str(int(start))] = row[field]
    return values


def assert_chart_settles_on_processed_data(page: Page, api: ServerProcess, window: str, stat: str) -> None:
    expected = processed_values(api, window, stat)
    assert sum(len(starts) for starts in expected.values()) >= 4, expected
    seen: list[object] = []

    def same() -> bool:
        seen[:] = [chart_values(page)]
        return seen[0] == expected

    try:
        wait_until(same, 6, "the window chart never showed /processed-data's windows")
    except Exception:
        raise AssertionError(f"chart {seen[0]!r}\n!= processed-data {expected!r}") from None


def test_the_window_chart_follows_the_live_window_feed(page: Page, api: ServerProcess) -> None:
    log = open_dashboard(page, f"http://{api.address}/")
    page.select_option("#window", "1s")
    page.select_option("#stat", "p95")
    with api_http(api) as http:
        http.post("/start-ingestion", json={"rate_hz": 200, "categories": ["north", "south"], "seed": 3})
        wait_for(page, "Object.keys(window.dashboard.windowChart.plot?.data[0] ?? {}).length >= 3", timeout=8)
        http.post("/stop-ingestion")
    assert_chart_settles_on_processed_data(page, api, "1s", "p95")
    time.sleep(4)  # longer than the stall check waits: a quiet feed with nothing new is not stalled
    assert stats(page)["windowTransport"] == "live"
    assert page.text_content("#window-transport") == "live"
    assert page.text_content("#window-chart .u-title") == "p95 per 1s window"
    feeds = [url for url in log.requests if "/api/v1/stream/aggregates?" in url]
    assert any(url.endswith("/api/v1/stream/aggregates?window=1s&stats=p95") for url in feeds), feeds
    assert not [url for url in log.requests if "processed-data?window=" in url]  # no polling
    assert log.errors == []
    assert_only_the_apps_host(log, api.address)


@pytest.mark.parametrize("blocked", ["fails", "stalls"])
def test_with_the_window_feed_blocked_the_chart_polls_and_keeps_updating(
    page: Page, api: ServerProcess, blocked: str
) -> None:
    held: list[Route] = []  # a feed that never answers: what a buffering gateway does
    page.route(FEED, lambda route: route.abort() if blocked == "fails" else held.append(route))
    log = open_dashboard(page, f"http://{api.address}/")
    page.select_option("#window", "1s")
    with api_http(api) as http:
        http.post("/start-ingestion", json={"rate_hz": 200, "categories": ["north", "south"], "seed": 5})
        wait_for(page, "window.dashboard.stats.windowTransport === 'polling'", timeout=8)
        assert page.text_content("#window-transport") == "polling"
        assert stats(page)["transport"] == "live"  # the readings' stream is not blocked
        wait_for(page, "window.dashboard.windowChart.plot?.data[0].length > 0", timeout=5)
        newest = page.evaluate("Math.max(...window.dashboard.windowChart.plot.data[0])")
        wait_for(page, f"Math.max(...window.dashboard.windowChart.plot.data[0]) >= {newest} + 2", timeout=8)
        http.post("/stop-ingestion")
    assert_chart_settles_on_processed_data(page, api, "1s", "mean")
    assert stats(page)["windowTransport"] == "polling"
    assert [url for url in log.requests if "/api/v1/processed-data?window=1s&since=" in url]
    assert_only_the_apps_host(log, api.address)
