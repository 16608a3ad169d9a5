"""Where readings are kept: the store and its intake, and in durable mode the journal they were recovered from."""

from __future__ import annotations

import logging
import time

from ingestor.errors import JournalError
from ingestor.intake import Intake
from ingestor.journal import Journal
from ingestor.rollups import Rollups
from ingestor.settings import IngestorSettings
from ingestor.store import ReadingStore

log = logging.getLogger("ingestor")


def open_storage(settings: IngestorSettings) -> tuple[ReadingStore, Intake, Journal | None, Rollups | None]:
    """An empty store in memory-only mode; in durable mode, the store and the rollups rebuilt from the
    data directory. The rollups are kept by the journal in durable mode, else by a RollupFeed the
    caller starts (``ingestor/rollup_feed.py``)."""
    store = ReadingStore(settings.capacity, settings.block_readings)
    rollups = Rollups(settings.rollup_retention_ns) if settings.rollups else None
    if settings.data_dir is None:
        return store, Intake(store, batch_id_window=settings.batch_id_window), None, rollups
    started = time.perf_counter()
    journal = Journal(settings.data_dir, settings.capacity, settings.batch_id_window, rollups)
    try:
        recovered = journal.load(settings.max_age_ns)
        try:
            store.restore(recovered.categories, recovered.columns, recovered.total_ingested, recovered.arrivals)
        except ValueError as error:
            raise JournalError(f"data directory {str(settings.data_dir)!r} is inconsistent: {error}") from error
    except BaseException:
        journal.close()
        raise
    journal.start()
    log.info(
        "recovered %d readings (total_ingested %d, evicted %d) from %s in %.3f s",
        store.buffered,
        store.total_ingested,
        store.evicted,
        settings.data_dir,
        time.perf_counter() - started,
    )
    intake = Intake(
        store,
        journal,
        settings.batch_id_window,
        recovered.batch_ids,
        recovered=store.buffered,
        fingerprints=recovered.fingerprints,
        queue_bytes=settings.journal_queue_bytes,
    )
    return store, intake, journal, rollups
