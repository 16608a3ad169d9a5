"""Memory-only mode's rollup upkeep: every stored batch is handed to a worker thread that adds it to
the rollups (``ingestor/rollups.py``), off the write path.

The store calls :meth:`RollupFeed.stored` with each batch while its codes still name their
categories: only the names the batch uses are taken along (a ``bincount`` of its codes), and the
batch's arrays are kept as they are (nothing writes to a stored batch's columns afterwards). The
worker takes every batch queued since its last pass, so it merges larger deltas the busier the
ingestor is. In durable mode the journal's writer does this job instead, in the transaction that
logs the batches (``ingestor/journal.py``).
"""

from __future__ import annotations

import threading
from collections import deque

import numpy as np

from ingestor.partials import merge_partials
from ingestor.rollups import Rollups
from ingestor.store import Columns, ReadingStore


class RollupFeed:
    def __init__(self, store: ReadingStore, rollups: Rollups) -> None:
        self._store = store
        self._rollups = rollups
        self._queued: deque[tuple[Columns, list[str], int]] = deque()
        self._wake = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="rollups", daemon=True)
        rollups.covered_until = store.total_ingested
        store.add_listener(self.stored)
        self._thread.start()

    def stored(self, columns: Columns) -> None:
        names = self._store.categories
        used = np.flatnonzero(np.bincount(columns.codes, minlength=1))
        taken = [""] * (int(used[-1]) + 1)
        for code in used.tolist():
            taken[code] = names[code]
        with self._wake:
            self._queued.append((columns, taken, self._store.total_ingested))
            self._wake.notify()

    def close(self) -> None:
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._queued and not self._closing:
                    self._wake.wait()
                if not self._queued:
                    return
                batches = list(self._queued)
                self._queued.clear()
            deltas = [self._rollups.delta(c.timestamps_ns, c.values, c.codes, names) for c, names, _ in batches]
            self._rollups.merge(merge_partials(deltas))
            self._rollups.covered_until = batches[-1][2]
