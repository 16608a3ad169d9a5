"""Where readings are kept: the store and its intake, and in durable mode the journal they were recovered from."""

from __future__ import annotations

import logging
import time

from ingestor.errors import JournalError
from ingestor.intake import Intake
from ingestor.journal import Journal
from ingestor.settings import IngestorSettings
from ingestor.store import ReadingStore

log = logging.getLogger("ingestor")


def open_storage(settings: IngestorSettings) -> tuple[ReadingStore, Intake, Journal | None]:
    """An empty store in memory-only mode; in durable mode, the store rebuilt from the data directory."""
    store = ReadingStore(settings.capacity, settings.block_readings)
    if settings.data_dir is None:
        return store, Intake(store, batch_id_window=settings.batch_id_window), None
    started = time.perf_counter()
    journal = Journal(settings.data_dir, settings.capacity, settings.batch_id_window)
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
    return store, intake, journal
