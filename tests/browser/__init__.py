"""The dashboard in a real browser (headless Chromium) against real servers."""
