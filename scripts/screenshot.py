"""`make screenshot` (python -m scripts.screenshot OUT.png): the dashboard while generating, in headless Chromium.

Starts an ingestor and the API on free loopback ports, starts ingestion from the page's own form,
lets the charts fill, and saves the picture (README shows docs/dashboard.png). Also prints what
the page cost to load: the bytes the browser received for the page and its assets.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from devtools.browser import chromium, wait_for, watch
from devtools.processes import start_api_process, start_ingestor_process

LOAD_COST = """() => performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))
    .filter(entry => !entry.name.includes('/api/'))
    .reduce((sum, entry) => [sum[0] + entry.transferSize, sum[1] + entry.decodedBodySize], [0, 0])"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("output", type=Path)
    parser.add_argument("--seconds", type=float, default=12, help="how long to let it generate first")
    arguments = parser.parse_args()
    with (
        start_ingestor_process(capacity=1_000_000, rate_hz=1) as ingestor,
        start_api_process(ingestor.address) as api,
        chromium() as browser,
    ):
        page = browser.new_page(viewport={"width": 1280, "height": 1280})
        log = watch(page)
        page.goto(f"http://{api.address}/")
        wait_for(page, "document.getElementById('state').textContent === 'stopped'")
        transferred, decoded = page.evaluate(LOAD_COST)
        page.fill("#rate-input", "50")
        page.fill("#categories-input", "north,south,east")
        page.fill("#seed-input", "42")
        page.click("#start")
        wait_for(page, "window.dashboard.stats.received > 0")
        time.sleep(arguments.seconds)
        page.select_option("#window", "1s")
        time.sleep(2.5)
        arguments.output.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(arguments.output))
        if log.errors:
            print("console errors:", *log.errors, sep="\n  ")
            return 1
    print(f"wrote {arguments.output}; the page cost {transferred:,} bytes to load ({decoded:,} unpacked)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
