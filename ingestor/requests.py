"""The service's requests read into domain values; InvalidArgument says what is malformed and where.

Also the limits a request must keep to. The readings of WriteReadings are read by
``ingestor/readings.py``, and page tokens by ``ingestor/pages.py``.
"""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from ingestor.categories import check_categories
from ingestor.errors import InvalidArgument
from ingestor.export import ExportQuery
from ingestor.generator import RunConfig
from ingestor.query import ReadingFilter
from ingestor.v1 import ingestor_pb2 as pb

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
DEFAULT_CHUNK_SIZE = 65_536
MAX_CHUNK_SIZE = 131_072
MAX_RATE_HZ = 1_000_000
MAX_RUN_CATEGORIES = 64
MAX_BUCKET_SECONDS = 86_400

_MIN_NS = -(2**63)
_MAX_NS = 2**63 - 1


def timestamp_ns(timestamp: Timestamp, field: str) -> int:
    """``timestamp`` in nanoseconds since the epoch, clamped to the int64 range the store holds."""
    if not 0 <= timestamp.nanos <= 999_999_999:
        raise InvalidArgument(f"{field}.nanos must be in [0, 999999999], got {timestamp.nanos}")
    return max(_MIN_NS, min(timestamp.seconds * 1_000_000_000 + timestamp.nanos, _MAX_NS))


def reading_filter(
    request: pb.ListReadingsRequest | pb.ExportReadingsRequest | pb.AggregateReadingsRequest | pb.GetHistoryRequest,
) -> ReadingFilter:
    """The categories/since/until filter of a request."""
    check_categories(request.categories, "categories")
    since = timestamp_ns(request.since, "since") if request.HasField("since") else None
    until = timestamp_ns(request.until, "until") if request.HasField("until") else None
    if since is not None and until is not None and since > until:
        raise InvalidArgument("since must not be after until")
    return ReadingFilter(frozenset(request.categories), since, until)


def bucket_ns(request: pb.AggregateReadingsRequest) -> int:
    """AggregateReadings' bucket of event time in nanoseconds (0: per category only)."""
    if request.bucket_seconds > MAX_BUCKET_SECONDS:
        raise InvalidArgument(f"bucket_seconds must be at most {MAX_BUCKET_SECONDS}, got {request.bucket_seconds}")
    return request.bucket_seconds * 1_000_000_000


def bucket_minutes(request: pb.GetHistoryRequest) -> int:
    """GetHistory's bucket of whole minutes (0: 1)."""
    if request.bucket_minutes > 1440:
        raise InvalidArgument(f"bucket_minutes must be at most 1440 (a day), got {request.bucket_minutes}")
    return request.bucket_minutes or 1


def page_size(request: pb.ListReadingsRequest) -> int:
    """How many readings a page holds at most: the default when unset, never above MAX_PAGE_SIZE."""
    if request.page_size < 0:
        raise InvalidArgument(f"page_size must not be negative, got {request.page_size}")
    return min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def export_query(request: pb.ExportReadingsRequest) -> ExportQuery:
    chunk_size = request.chunk_size or DEFAULT_CHUNK_SIZE
    if chunk_size > MAX_CHUNK_SIZE:
        raise InvalidArgument(f"chunk_size must be at most {MAX_CHUNK_SIZE}, got {chunk_size}")
    return ExportQuery(
        chunk_size=chunk_size,
        flt=reading_filter(request),
        max_readings=request.max_readings,
        after_seq=request.after_sequence if request.HasField("after_sequence") else None,
        before_seq=request.before_sequence if request.HasField("before_sequence") else None,
        oldest_first=request.oldest_first,
        late_flags=request.late_flags,
        file_format=export_format(request),
    )


def export_format(request: pb.ExportReadingsRequest) -> int:
    if request.format not in (pb.EXPORT_FORMAT_UNSPECIFIED, pb.EXPORT_FORMAT_PARQUET, pb.EXPORT_FORMAT_CSV):
        raise InvalidArgument(f"format {request.format} is not an ExportFormat this ingestor knows")
    if request.format != pb.EXPORT_FORMAT_UNSPECIFIED and request.late_flags:
        raise InvalidArgument("late_flags are for columns: a file export carries no late flags")
    return request.format


def run_config(request: pb.StartIngestionRequest, default: RunConfig) -> RunConfig | None:
    """The configuration a start request asks for (unset fields from ``default``); None when empty."""
    if not (request.HasField("rate_hz") or request.categories or request.HasField("seed")):
        return None
    rate_hz = request.rate_hz if request.HasField("rate_hz") else default.rate_hz
    if not 0 < rate_hz <= MAX_RATE_HZ:
        raise InvalidArgument(f"rate_hz must be in (0, {MAX_RATE_HZ}], got {rate_hz}")
    categories = tuple(request.categories) or default.categories
    if len(categories) > MAX_RUN_CATEGORIES:
        raise InvalidArgument(f"at most {MAX_RUN_CATEGORIES} categories, got {len(categories)}")
    if len(set(categories)) != len(categories):
        raise InvalidArgument("categories must be distinct")
    check_categories(categories, "categories")
    return RunConfig(rate_hz, categories, request.seed if request.HasField("seed") else None)


def watch_categories(request: pb.WatchReadingsRequest) -> frozenset[str]:
    """The categories a subscriber wants; empty for all of them."""
    check_categories(request.categories, "categories")
    return frozenset(request.categories)
