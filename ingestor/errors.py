"""The ingestor's domain errors, raised by the modules that find them. Knows nothing of gRPC.

Each says in its message what went wrong for the caller; ``ingestor/rpc_errors.py`` maps each class
to the status code a caller gets.
"""

from __future__ import annotations


class IngestorError(Exception):
    """A failure the caller is told about, with a message meant for it."""


class InvalidArgument(IngestorError, ValueError):
    """The request is malformed; the message says which item and why."""


class CategoryLimitError(IngestorError):
    """Storing a batch (or starting a run) would need more category names in use than codes exist."""


class TooManySubscribers(IngestorError):
    """The ingestor has as many live subscribers as it admits."""


class SubscriberDropped(IngestorError):
    """A live subscriber fell too far behind and its stream ends."""


class ConfigConflict(IngestorError):
    """The generator already runs with another configuration."""


class FeatureOff(IngestorError):
    """The call needs something this ingestor was configured without (rollups)."""


class BatchIdReused(IngestorError):
    """A batch id already names a batch with other readings: a retry must carry the same readings."""


class JournalError(IngestorError):
    """The data directory cannot be used, or a commit failed: nothing more is acknowledged."""


class DiskFull(IngestorError):
    """The data directory's file system is full: writes are refused until space is freed, then resume."""


class Backpressure(IngestorError):
    """The disk does not keep up: the write waited for room in the journal's queue until its deadline."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ShuttingDown(IngestorError):
    """The ingestor is shutting down: live streams end."""


class PortUnavailable(IngestorError):
    """The configured address cannot be listened on."""
