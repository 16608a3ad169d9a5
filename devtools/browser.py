"""Headless Chromium for the dashboard's tests and `make screenshot`: Debian's browser driven by Playwright.

Playwright's own browser download cannot run here; ``executable_path`` points it at the system's
``chromium`` (``make test`` installs it with apt when missing).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from playwright.sync_api import Browser, ConsoleMessage, Page, Request, sync_playwright

from devtools.waiting import wait_until

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]


def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        raise RuntimeError("no chromium on PATH: `make test` installs it (apt-get install chromium)")
    return path


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class PageLog:
    """What a page did: console errors, page errors, and every request with its host."""

    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def hosts(self) -> set[str]:
        return {urlsplit(url).netloc for url in self.requests if not url.startswith(("data:", "blob:"))}


def wait_for(page: Page, expression: str, timeout: float = 5.0, interval: float = 0.05) -> object:
    """Until ``expression`` is truthy in the page, within ``timeout`` seconds.

    Playwright's own ``wait_for_function`` evaluates its predicate with ``eval`` in the page, which
    the pages' Content-Security-Policy forbids; ``evaluate`` goes through the debugger and is not.
    """
    return wait_until(lambda: page.evaluate(expression), timeout, f"not true in the page: {expression}", interval)


def watch(page: Page) -> PageLog:
    log = PageLog()

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            log.errors.append(message.text)

    def on_failed(request: Request) -> None:
        log.failed.append(f"{request.url}: {request.failure}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: log.errors.append(f"page error: {error}"))
    page.on("request", lambda request: log.requests.append(request.url))
    page.on("requestfailed", on_failed)
    return log
