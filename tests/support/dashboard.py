"""Reading the dashboard in a browser page: its stats, opening it, where its requests went."""

from __future__ import annotations

from playwright.sync_api import Page

from devtools.browser import PageLog, wait_for, watch


def stats(page: Page) -> dict[str, object]:
    return page.evaluate("window.dashboard.stats")  # type: ignore[no-any-return]


def open_dashboard(page: Page, url: str) -> PageLog:
    log = watch(page)
    page.goto(url)
    wait_for(page, "window.dashboard && window.dashboard.stats.transport !== null", timeout=5)
    return log


def assert_only_the_apps_host(log: PageLog, address: str) -> None:
    assert log.requests, "the page made no request"
    assert log.hosts() == {address}, log.hosts()
