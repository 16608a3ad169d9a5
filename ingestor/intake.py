"""Where every batch enters the store, generated or written, in memory-only or durable mode.

Memory only (no journal): a batch is in the store once :meth:`Intake.append` returns, and gone when
the process ends. Durable: it is also queued to the journal, and a write is acknowledged only once
the journal has it on disk.

Producers may name a batch with an id; a retry with the id of a batch already acknowledged (or still
being committed) gets the same acknowledgement and stores nothing. The newest ``batch_id_window``
ids are remembered, in memory and, in durable mode, in the journal too.

Not thread-safe: the ingestor uses it from its event loop only.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass

from ingestor.errors import InvalidArgument
from ingestor.journal import Journal, LoggedBatch
from ingestor.store import Columns, ReadingStore

log = logging.getLogger(__name__)

BATCH_ID_PATTERN = re.compile(r"[\x21-\x7e]{1,128}")


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    accepted: int
    duplicate: bool
    durable: bool


@dataclass(slots=True)
class _KnownBatch:
    accepted: int
    committed: Future[None] | None


def validate_batch_id(batch_id: str) -> None:
    if BATCH_ID_PATTERN.fullmatch(batch_id) is None:
        raise InvalidArgument(
            f"batch_id must be 1 to 128 printable ASCII characters without spaces, got {batch_id[:140]!r}"
        )


class Intake:
    def __init__(
        self,
        store: ReadingStore,
        journal: Journal | None = None,
        batch_id_window: int = 100_000,
        known_batch_ids: Iterable[tuple[str, int]] = (),
        recovered: int = 0,
    ) -> None:
        self._store = store
        self._journal = journal
        if journal is not None:
            store.log_category_assignments()
        self._window = batch_id_window
        self._known: OrderedDict[str, _KnownBatch] = OrderedDict(
            (batch_id, _KnownBatch(accepted, None)) for batch_id, accepted in known_batch_ids
        )
        self.recovered = recovered
        """Readings restored from the data directory at start."""

    @property
    def durable(self) -> bool:
        return self._journal is not None

    @property
    def remembered_batch_ids(self) -> int:
        return len(self._known)

    def data_dir_bytes(self) -> int:
        return self._journal.size_bytes() if self._journal is not None else 0

    def append(self, columns: Columns, batch_id: str = "") -> Future[None] | None:
        """Store a batch now; in durable mode also log it, and return the future of its commit.

        The store gives the batch its sequence numbers and the journal logs batches in the same
        order, so the log rebuilds exactly this store.
        """
        if self._journal is None:
            self._store.append(columns)
            return None
        if self._journal.failure is not None:
            raise self._journal.failure
        start_seq = self._store.total_ingested
        self._store.append(columns)
        assigned = tuple(self._store.take_category_assignments())
        return self._journal.submit(LoggedBatch(start_seq, columns, assigned, batch_id))

    def append_generated(self, columns: Columns) -> None:
        """Store generated readings; nobody waits for their commit, but a failed one is logged."""
        committed = self.append(columns)
        if committed is not None:
            committed.add_done_callback(_log_failure)

    async def replay(self, batch_id: str) -> Acknowledgement | None:
        """The acknowledgement of the batch named ``batch_id`` when it is known (once it is safe to
        send), None when it is not: then its readings have to be stored."""
        validate_batch_id(batch_id)
        known = self._known.get(batch_id)
        if known is None:
            return None
        if known.committed is not None:
            await asyncio.shield(asyncio.wrap_future(known.committed))
        return Acknowledgement(known.accepted, duplicate=True, durable=self.durable)

    async def write(self, columns: Columns, batch_id: str = "") -> Acknowledgement:
        """Store a producer's batch and return its acknowledgement once it is safe to send."""
        if batch_id and (replayed := await self.replay(batch_id)) is not None:
            return replayed
        committed = self.append(columns, batch_id)
        if batch_id:
            self._remember(batch_id, _KnownBatch(len(columns), committed))
        if committed is not None:
            try:
                # Shielded: a caller that gives up does not take the commit down with it.
                await asyncio.shield(asyncio.wrap_future(committed))
            except Exception:
                if batch_id:
                    self._known.pop(batch_id, None)
                raise
        return Acknowledgement(len(columns), duplicate=False, durable=self.durable)

    def _remember(self, batch_id: str, known: _KnownBatch) -> None:
        self._known[batch_id] = known
        while len(self._known) > self._window:
            self._known.popitem(last=False)


def _log_failure(committed: Future[None]) -> None:
    if not committed.cancelled() and committed.exception() is not None:
        log.error("generated readings were not written to the data directory: %s", committed.exception())
