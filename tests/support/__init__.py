"""Helpers the tests share: events, certificates, disks, rows, the crash bookkeeping, artifact readers."""
