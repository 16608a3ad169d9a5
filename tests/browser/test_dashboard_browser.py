"""The dashboard in a real browser (headless Chromium) against a real ingestor and a real uvicorn.

The page loads with no console error and no request to another host; Start, the chart, the cards,
Stop; the token field; the fallback to polling when the stream is blocked; a root path; the docs
with the network cut off; and the page's redraw rate and heap at 10,000 readings/s.
"""

from __future__ import annotations

import contextlib
import time
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, Route

from devtools.browser import wait_for, watch
from devtools.processes import ServerProcess
from tests.support.clients import api_http
from tests.support.dashboard import assert_only_the_apps_host, open_dashboard, stats
from tests.support.factories import MakeProcess, MakeStack

pytestmark = pytest.mark.slow

TOKEN = "dashboard-test-token"


@pytest.fixture
def servers(make_stack: MakeStack) -> tuple[ServerProcess, ServerProcess]:
    return make_stack(capacity=100_000, rate_hz=1)


def test_the_dashboard_starts_charts_counts_and_stops(page: Page, servers: tuple[ServerProcess, ServerProcess]) -> None:
    _, api = servers
    log = open_dashboard(page, f"http://{api.address}/")
    wait_for(page, "document.getElementById('state').textContent === 'stopped'", timeout=3)
    assert stats(page)["transport"] == "live"

    page.fill("#rate-input", "200")
    page.fill("#categories-input", "north,south")
    page.fill("#seed-input", "7")
    page.click("#start")
    wait_for(page, "document.getElementById('state').textContent === 'running'", timeout=3)
    wait_for(page, "window.dashboard.stats.pointsInView > 0", timeout=3)
    before = stats(page)["redraws"]
    wait_for(page, f"window.dashboard.stats.redraws > {before}", timeout=3)
    assert page.text_content("#message") == "Data ingestion started"

    # The status strip: rate, buffered / capacity with its bar, evicted, total.
    wait_for(page, "document.getElementById('rate').textContent === '200/s'", timeout=3)
    assert page.text_content("#buffered").endswith("/ 100,000")  # type: ignore[union-attr]
    assert page.evaluate("parseFloat(document.getElementById('fill').style.width)") > 0
    assert page.text_content("#evicted") == "0"
    # Pause holds the chart while readings keep arriving; Resume draws again.
    page.click("#pause")
    paused_at = stats(page)["redraws"]
    received = stats(page)["received"]
    wait_for(page, f"window.dashboard.stats.received > {received} + 50", timeout=3)
    assert stats(page)["redraws"] == paused_at
    page.click("#pause")
    wait_for(page, f"window.dashboard.stats.redraws > {paused_at}", timeout=3)
    # The range selector redraws; a legend click hides a series (uPlot marks it off).
    drawn = stats(page)["redraws"]
    page.select_option("#range", "all")
    wait_for(page, f"window.dashboard.stats.redraws > {drawn}", timeout=3)
    page.click("#live-chart .u-legend .u-series:nth-child(2)")
    assert page.locator("#live-chart .u-legend .u-series.u-off").count() == 1
    # The window chart: 1 s windows, p95, drawn from the window feed with those parameters.
    page.select_option("#window", "1s")
    page.select_option("#stat", "p95")
    wait_for(page, "document.querySelector('#window-chart .u-title')?.textContent === 'p95 per 1s window'", timeout=4)
    assert any("window=1s" in url and "stats=p95" in url for url in log.requests)
    assert log.errors == []
    # Another configuration while it runs: the 409 in words (the browser logs the refused call).
    page.fill("#rate-input", "300")
    page.click("#start")
    wait_for(page, "document.getElementById('message').textContent.startsWith('Not started:')", timeout=3)
    assert "running with another configuration" in (page.text_content("#message") or "")

    page.click("#stop")
    wait_for(page, "document.getElementById('state').textContent === 'stopped'", timeout=3)
    # Stopped: the cards settle on exactly what /processed-data says.
    with api_http(api) as http:
        expected = http.get("/processed-data", params={"stats": "min,max"}).json()
    assert {row["category"] for row in expected} == {"north", "south"}
    fields = {"mean": "avg_value", "count": "count", "min": "min", "max": "max", "last timestamp": "last_timestamp"}
    want = {row["category"]: {name: str(row[key]) for name, key in fields.items()} for row in expected}
    wait_for(
        page,
        f"""() => {{
            const want = {want!r};
            return Object.entries(want).every(([category, values]) => {{
                const card = document.querySelector(`.card[data-category="${{category}}"]`);
                return card && Object.entries(values).every(([name, value]) =>
                    card.querySelector(`dd[data-field="${{name}}"]`).dataset.raw === value);
            }});
        }}""",
        timeout=5,
    )
    # The stream delivers every stored reading, then nothing more once stopped.
    stored = sum(int(row["count"]) for row in expected)
    wait_for(page, f"window.dashboard.stats.received === {stored}", timeout=5)
    time.sleep(1.0)
    assert stats(page)["received"] == stored
    rows = page.locator("#tail tr").count()
    assert 0 < rows <= 50
    page.select_option("#tail-category", "south")
    wait_for(
        page,
        "[...document.querySelectorAll('#tail tr td:nth-child(2)')].every(td => td.textContent === 'south')",
        timeout=2,
    )
    assert log.errors == ["Failed to load resource: the server responded with a status of 409 (Conflict)"]
    # Nothing failed; the only requests not completed are the window feeds the page closed as the
    # window, then the statistic, changed (a closed stream is cancelled: Chromium says ERR_ABORTED).
    left = [
        f"http://{api.address}/api/v1/stream/aggregates?window={query}: net::ERR_ABORTED" for query in ("10s", "1s")
    ]
    assert log.failed == left
    assert_only_the_apps_host(log, api.address)


def test_the_newest_readings_age_turns_amber_when_nothing_arrives_while_running(
    page: Page, servers: tuple[ServerProcess, ServerProcess]
) -> None:
    _, api = servers
    open_dashboard(page, f"http://{api.address}/")
    with api_http(api) as http:
        http.post("/start-ingestion", json={"rate_hz": 0.2})  # a reading every 5 s
        try:
            wait_for(page, "window.dashboard.stats.received > 0", timeout=3)
            assert not page.evaluate("document.getElementById('age').classList.contains('warn')")
            wait_for(page, "document.getElementById('age').classList.contains('warn')", timeout=6)
        finally:
            http.post("/stop-ingestion")


def test_the_page_costs_little_to_load(page: Page, servers: tuple[ServerProcess, ServerProcess]) -> None:
    _, api = servers
    open_dashboard(page, f"http://{api.address}/")
    page.wait_for_load_state("load")
    transferred = page.evaluate(
        """() => performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))
              .filter(entry => !entry.name.includes('/api/'))
              .reduce((sum, entry) => sum + entry.transferSize, 0)"""
    )
    print(f"dashboard: {transferred} bytes transferred for the page and its assets")
    assert 0 < transferred < 120_000


def test_the_token_field_sends_the_token_in_a_header_only(browser: Browser, make_stack: MakeStack) -> None:
    _, api = make_stack(api_env={"API_TOKEN": TOKEN, "API_TOKEN_FOR_READS": "true"}, capacity=100_000, rate_hz=1)
    with contextlib.closing(browser.new_context()) as context:
        page = context.new_page()
        sent: list[tuple[str, str | None]] = []
        page.on("request", lambda request: sent.append((request.url, request.headers.get("authorization"))))
        log = watch(page)
        page.goto(f"http://{api.address}/")
        page.wait_for_selector("#token-box:not(.hidden)", timeout=3000)
        wait_for(page, "document.getElementById('state').textContent === 'token needed'", timeout=3)
        page.fill("#token-input", TOKEN)
        page.click("#token-save")
        wait_for(page, "document.getElementById('state').textContent === 'stopped'", timeout=3)
        page.fill("#rate-input", "100")
        page.click("#start")
        wait_for(page, "document.getElementById('state').textContent === 'running'", timeout=3)
        wait_for(page, "window.dashboard.stats.received > 20", timeout=5)
        assert stats(page)["transport"] == "live"
        assert page.evaluate("sessionStorage.getItem('pipeline-api-token')") == TOKEN
        assert all(TOKEN not in url for url, _ in sent)
        data_calls = [(url, auth) for url, auth in sent if "/api/v1/" in url]
        after_token = data_calls[[auth for _, auth in data_calls].index(f"Bearer {TOKEN}") :]
        assert after_token, data_calls
        assert all(auth == f"Bearer {TOKEN}" for _, auth in after_token), after_token
        assert any("/api/v1/stream" in url for url, _ in after_token)
        # The only errors are the refusals before the token was given.
        assert all("401" in error for error in log.errors), log.errors
        assert_only_the_apps_host(log, api.address)


@pytest.mark.parametrize("blocked", ["fails", "stalls"])
def test_with_the_stream_blocked_the_page_polls_and_keeps_updating(
    page: Page, servers: tuple[ServerProcess, ServerProcess], blocked: str
) -> None:
    _, api = servers
    held: list[Route] = []  # a stream that never answers: what a buffering gateway does
    page.route("**/api/v1/stream*", lambda route: route.abort() if blocked == "fails" else held.append(route))
    log = open_dashboard(page, f"http://{api.address}/")
    with api_http(api) as http:
        http.post("/start-ingestion", json={"rate_hz": 100})
        wait_for(page, "window.dashboard.stats.transport === 'polling'", timeout=6)
        assert page.text_content("#transport") == "polling"
        first = stats(page)["received"]
        wait_for(page, f"window.dashboard.stats.received > {first} + 50", timeout=5)
        http.post("/stop-ingestion")
        total = http.get("/status").json()["total_ingested"]
    # Every reading generated, each once: the cursor walks them all.
    wait_for(page, f"window.dashboard.stats.received === {total}", timeout=5)
    polls = [url for url in log.requests if "after_sequence=" in url and "/raw-data" in url]
    assert polls
    assert_only_the_apps_host(log, api.address)
    # The stream works again: the page goes back to it at its next try.
    page.evaluate("window.dashboard.feed.options.retryLiveMs = 500")
    page.unroute("**/api/v1/stream*")
    with api_http(api) as http:
        http.post("/start-ingestion", json={"rate_hz": 100})
        wait_for(page, "window.dashboard.stats.transport === 'live'", timeout=20)
        received = stats(page)["received"]
        wait_for(page, f"window.dashboard.stats.received > {received} + 20", timeout=5)
        assert stats(page)["transport"] == "live"
        http.post("/stop-ingestion")
        total = http.get("/status").json()["total_ingested"]
    wait_for(page, f"window.dashboard.stats.received === {total}", timeout=5)
    assert stats(page)["gaps"] == 0


def test_under_a_root_path_every_asset_and_call_resolves(
    browser: Browser, make_ingestor_process: MakeProcess, make_api_process: MakeProcess
) -> None:
    ingestor = make_ingestor_process(capacity=100_000, rate_hz=1)
    api = make_api_process(ingestor.address, args=["--root-path", "/prod"])
    with contextlib.closing(browser.new_context()) as context:
        page = context.new_page()
        answered: list[tuple[str, int]] = []
        outside: list[str] = []

        def strip_prefix(route: Route) -> None:
            # What a proxy in front does: /prod/... reaches the app as /... (its root path is /prod).
            parts = urlsplit(route.request.url)
            if not parts.path.startswith("/prod/"):
                outside.append(route.request.url)
                route.abort()
                return
            route.continue_(url=route.request.url.replace("/prod/", "/", 1))

        page.route("**/*", strip_prefix)
        page.on("response", lambda response: answered.append((response.url, response.status)))
        log = watch(page)
        page.goto(f"http://{api.address}/prod/")
        wait_for(page, "document.getElementById('state').textContent === 'stopped'", timeout=5)
        page.click("#start")
        wait_for(page, "window.dashboard.stats.received > 0", timeout=5)
        page.click("#stop")
        wait_for(page, "document.getElementById('state').textContent === 'stopped'", timeout=3)
        assert outside == []
        assert log.errors == []
        assert answered
        assert all(status == 200 for _, status in answered), answered
        # The page asked for everything under the prefix (the proxy took it away on the way).
        asked = [urlsplit(url).path for url in log.requests]
        assert all(path.startswith("/prod/") for path in asked), asked
        assert {"static", "api"} <= {path.split("/")[2] for path in asked}


@pytest.mark.parametrize(("path", "operation"), [("docs", ".opblock"), ("redoc", "[data-section-id^='operation']")])
def test_the_docs_render_with_the_network_cut_off(
    page: Page, servers: tuple[ServerProcess, ServerProcess], path: str, operation: str
) -> None:
    _, api = servers
    elsewhere: list[str] = []

    def only_the_app(route: Route) -> None:
        if urlsplit(route.request.url).netloc == api.address:
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort("internetdisconnected")

    page.route("**/*", only_the_app)
    log = watch(page)
    page.goto(f"http://{api.address}/{path}")
    page.wait_for_selector(operation, timeout=10_000)
    text = page.text_content("body") or ""
    for endpoint in ("/api/v1/raw-data", "/api/v1/processed-data", "/api/v1/stream"):
        assert endpoint in text
    assert page.locator(operation).count() >= 8
    assert elsewhere == []
    assert log.errors == []


@pytest.mark.serial
def test_at_ten_thousand_readings_a_second_the_page_keeps_redrawing_with_a_bounded_heap(
    page: Page, make_stack: MakeStack
) -> None:
    _, api = make_stack(capacity=1_000_000, rate_hz=1)
    open_dashboard(page, f"http://{api.address}/")
    page.evaluate(
        """() => {
            window.frameTimes = [];
            const tick = (now) => { window.frameTimes.push(now); requestAnimationFrame(tick); };
            requestAnimationFrame(tick);
        }"""
    )
    cdp = page.context.new_cdp_session(page)
    with api_http(api) as http:
        http.post("/start-ingestion", json={"rate_hz": 10_000, "categories": ["A", "B", "C"]})
        heap: list[float] = []
        redraws: list[int] = []
        started = time.monotonic()
        while time.monotonic() - started < 20:
            time.sleep(2)
            cdp.send("HeapProfiler.collectGarbage")  # what stays alive, not garbage not yet collected
            usage = cdp.send("Runtime.getHeapUsage")  # objects, and the typed arrays' buffers
            heap.append((usage["usedSize"] + usage.get("backingStorageSize", 0)) / 2**20)
            redraws.append(int(stats(page)["redraws"]))  # type: ignore[call-overload]
        http.post("/stop-ingestion")
    frames = page.evaluate("window.frameTimes")
    final = stats(page)
    window = [t for t in frames if t >= frames[-1] - 20_000]
    per_second = [
        sum(1 for t in window if start <= t < start + 1000)
        for start in range(int(window[0]), int(window[-1]) - 999, 1000)
    ]
    redraw_rate = (redraws[-1] - redraws[0]) / (2 * (len(redraws) - 1))
    print(
        f"10k/s for 20 s: frames per second min {min(per_second)}, median {sorted(per_second)[len(per_second) // 2]}; "
        f"chart redraws {redraw_rate:.1f}/s; heap {', '.join(f'{h:.1f}' for h in heap)} MiB; "
        f"received {final['received']}, gaps {final['gaps']}, last draw {final['lastDrawMs']:.1f} ms"
    )
    assert 0 < int(final["maxSeriesPoints"]) <= 10_000  # type: ignore[call-overload]
    assert min(per_second) >= 5
    assert redraw_rate >= 5
    assert int(final["received"]) + int(final["gaps"]) > 150_000  # type: ignore[call-overload]
    assert max(heap) < 96
    assert heap[-1] < heap[len(heap) // 2] + 16  # bounded: not growing with the readings
