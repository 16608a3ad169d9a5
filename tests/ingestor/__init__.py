"""Tests of the ingestor package: its store, journal, RPCs and process, with no HTTP in between."""
