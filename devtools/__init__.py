"""Launchers and helpers for local runs, benchmarks and tests: never shipped in an image."""
