import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExportFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPORT_FORMAT_UNSPECIFIED: _ClassVar[ExportFormat]
    EXPORT_FORMAT_PARQUET: _ClassVar[ExportFormat]
    EXPORT_FORMAT_CSV: _ClassVar[ExportFormat]
EXPORT_FORMAT_UNSPECIFIED: ExportFormat
EXPORT_FORMAT_PARQUET: ExportFormat
EXPORT_FORMAT_CSV: ExportFormat

class Reading(_message.Message):
    __slots__ = ("timestamp", "value", "category")
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    timestamp: _timestamp_pb2.Timestamp
    value: float
    category: str
    def __init__(self, timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., value: _Optional[float] = ..., category: _Optional[str] = ...) -> None: ...

class ReadingColumns(_message.Message):
    __slots__ = ("timestamps_ns", "values", "category_codes", "category_codes_u8", "sequences", "late")
    TIMESTAMPS_NS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_CODES_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_CODES_U8_FIELD_NUMBER: _ClassVar[int]
    SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    LATE_FIELD_NUMBER: _ClassVar[int]
    timestamps_ns: bytes
    values: bytes
    category_codes: bytes
    category_codes_u8: bytes
    sequences: bytes
    late: bytes
    def __init__(self, timestamps_ns: _Optional[bytes] = ..., values: _Optional[bytes] = ..., category_codes: _Optional[bytes] = ..., category_codes_u8: _Optional[bytes] = ..., sequences: _Optional[bytes] = ..., late: _Optional[bytes] = ...) -> None: ...

class StartIngestionRequest(_message.Message):
    __slots__ = ("rate_hz", "categories", "seed")
    RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    rate_hz: float
    categories: _containers.RepeatedScalarFieldContainer[str]
    seed: int
    def __init__(self, rate_hz: _Optional[float] = ..., categories: _Optional[_Iterable[str]] = ..., seed: _Optional[int] = ...) -> None: ...

class StartIngestionResponse(_message.Message):
    __slots__ = ("already_running",)
    ALREADY_RUNNING_FIELD_NUMBER: _ClassVar[int]
    already_running: bool
    def __init__(self, already_running: _Optional[bool] = ...) -> None: ...

class StopIngestionRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StopIngestionResponse(_message.Message):
    __slots__ = ("already_stopped",)
    ALREADY_STOPPED_FIELD_NUMBER: _ClassVar[int]
    already_stopped: bool
    def __init__(self, already_stopped: _Optional[bool] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStatusResponse(_message.Message):
    __slots__ = ("running", "total_ingested", "buffered", "evicted", "capacity", "rate_hz", "categories", "seed", "configured", "generator_error", "durable", "data_dir_bytes", "recovered", "remembered_batch_ids", "achieved_rate_hz", "generator_held_back", "journal_queue_bytes", "disk_full", "late", "late_by_category", "sealed_blocks", "partial_bytes", "archiving", "archived", "archive_pending", "evicted_unarchived", "archive_error")
    class LateByCategoryEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    TOTAL_INGESTED_FIELD_NUMBER: _ClassVar[int]
    BUFFERED_FIELD_NUMBER: _ClassVar[int]
    EVICTED_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    CONFIGURED_FIELD_NUMBER: _ClassVar[int]
    GENERATOR_ERROR_FIELD_NUMBER: _ClassVar[int]
    DURABLE_FIELD_NUMBER: _ClassVar[int]
    DATA_DIR_BYTES_FIELD_NUMBER: _ClassVar[int]
    RECOVERED_FIELD_NUMBER: _ClassVar[int]
    REMEMBERED_BATCH_IDS_FIELD_NUMBER: _ClassVar[int]
    ACHIEVED_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    GENERATOR_HELD_BACK_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_QUEUE_BYTES_FIELD_NUMBER: _ClassVar[int]
    DISK_FULL_FIELD_NUMBER: _ClassVar[int]
    LATE_FIELD_NUMBER: _ClassVar[int]
    LATE_BY_CATEGORY_FIELD_NUMBER: _ClassVar[int]
    SEALED_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    ARCHIVING_FIELD_NUMBER: _ClassVar[int]
    ARCHIVED_FIELD_NUMBER: _ClassVar[int]
    ARCHIVE_PENDING_FIELD_NUMBER: _ClassVar[int]
    EVICTED_UNARCHIVED_FIELD_NUMBER: _ClassVar[int]
    ARCHIVE_ERROR_FIELD_NUMBER: _ClassVar[int]
    running: bool
    total_ingested: int
    buffered: int
    evicted: int
    capacity: int
    rate_hz: float
    categories: _containers.RepeatedScalarFieldContainer[str]
    seed: int
    configured: bool
    generator_error: str
    durable: bool
    data_dir_bytes: int
    recovered: int
    remembered_batch_ids: int
    achieved_rate_hz: float
    generator_held_back: str
    journal_queue_bytes: int
    disk_full: bool
    late: int
    late_by_category: _containers.ScalarMap[str, int]
    sealed_blocks: int
    partial_bytes: int
    archiving: bool
    archived: int
    archive_pending: int
    evicted_unarchived: int
    archive_error: str
    def __init__(self, running: _Optional[bool] = ..., total_ingested: _Optional[int] = ..., buffered: _Optional[int] = ..., evicted: _Optional[int] = ..., capacity: _Optional[int] = ..., rate_hz: _Optional[float] = ..., categories: _Optional[_Iterable[str]] = ..., seed: _Optional[int] = ..., configured: _Optional[bool] = ..., generator_error: _Optional[str] = ..., durable: _Optional[bool] = ..., data_dir_bytes: _Optional[int] = ..., recovered: _Optional[int] = ..., remembered_batch_ids: _Optional[int] = ..., achieved_rate_hz: _Optional[float] = ..., generator_held_back: _Optional[str] = ..., journal_queue_bytes: _Optional[int] = ..., disk_full: _Optional[bool] = ..., late: _Optional[int] = ..., late_by_category: _Optional[_Mapping[str, int]] = ..., sealed_blocks: _Optional[int] = ..., partial_bytes: _Optional[int] = ..., archiving: _Optional[bool] = ..., archived: _Optional[int] = ..., archive_pending: _Optional[int] = ..., evicted_unarchived: _Optional[int] = ..., archive_error: _Optional[str] = ...) -> None: ...

class ListReadingsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "categories", "since", "until")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    categories: _containers.RepeatedScalarFieldContainer[str]
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., categories: _Optional[_Iterable[str]] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListReadingsResponse(_message.Message):
    __slots__ = ("readings", "next_page_token")
    READINGS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    readings: _containers.RepeatedCompositeFieldContainer[Reading]
    next_page_token: str
    def __init__(self, readings: _Optional[_Iterable[_Union[Reading, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ExportReadingsRequest(_message.Message):
    __slots__ = ("max_readings", "chunk_size", "categories", "since", "until", "before_sequence", "after_sequence", "oldest_first", "late_flags", "format")
    MAX_READINGS_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    BEFORE_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    OLDEST_FIRST_FIELD_NUMBER: _ClassVar[int]
    LATE_FLAGS_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    max_readings: int
    chunk_size: int
    categories: _containers.RepeatedScalarFieldContainer[str]
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    before_sequence: int
    after_sequence: int
    oldest_first: bool
    late_flags: bool
    format: ExportFormat
    def __init__(self, max_readings: _Optional[int] = ..., chunk_size: _Optional[int] = ..., categories: _Optional[_Iterable[str]] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., before_sequence: _Optional[int] = ..., after_sequence: _Optional[int] = ..., oldest_first: _Optional[bool] = ..., late_flags: _Optional[bool] = ..., format: _Optional[_Union[ExportFormat, str]] = ...) -> None: ...

class ExportReadingsResponse(_message.Message):
    __slots__ = ("columns", "new_categories", "next_sequence", "planned_readings", "data", "data_readings", "format")
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    NEW_CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    PLANNED_READINGS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    DATA_READINGS_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    columns: ReadingColumns
    new_categories: _containers.RepeatedScalarFieldContainer[str]
    next_sequence: int
    planned_readings: int
    data: bytes
    data_readings: int
    format: ExportFormat
    def __init__(self, columns: _Optional[_Union[ReadingColumns, _Mapping]] = ..., new_categories: _Optional[_Iterable[str]] = ..., next_sequence: _Optional[int] = ..., planned_readings: _Optional[int] = ..., data: _Optional[bytes] = ..., data_readings: _Optional[int] = ..., format: _Optional[_Union[ExportFormat, str]] = ...) -> None: ...

class WriteReadingsRequest(_message.Message):
    __slots__ = ("readings", "columns", "column_categories", "batch_id")
    READINGS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    COLUMN_CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    readings: _containers.RepeatedCompositeFieldContainer[Reading]
    columns: ReadingColumns
    column_categories: _containers.RepeatedScalarFieldContainer[str]
    batch_id: str
    def __init__(self, readings: _Optional[_Iterable[_Union[Reading, _Mapping]]] = ..., columns: _Optional[_Union[ReadingColumns, _Mapping]] = ..., column_categories: _Optional[_Iterable[str]] = ..., batch_id: _Optional[str] = ...) -> None: ...

class WriteReadingsResponse(_message.Message):
    __slots__ = ("accepted", "duplicate", "durable")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    DURABLE_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    duplicate: bool
    durable: bool
    def __init__(self, accepted: _Optional[int] = ..., duplicate: _Optional[bool] = ..., durable: _Optional[bool] = ...) -> None: ...

class WatchReadingsRequest(_message.Message):
    __slots__ = ("categories", "columnar", "after_sequence", "sequences", "late_flags")
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    COLUMNAR_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    LATE_FLAGS_FIELD_NUMBER: _ClassVar[int]
    categories: _containers.RepeatedScalarFieldContainer[str]
    columnar: bool
    after_sequence: int
    sequences: bool
    late_flags: bool
    def __init__(self, categories: _Optional[_Iterable[str]] = ..., columnar: _Optional[bool] = ..., after_sequence: _Optional[int] = ..., sequences: _Optional[bool] = ..., late_flags: _Optional[bool] = ...) -> None: ...

class WatchReadingsResponse(_message.Message):
    __slots__ = ("readings", "missed", "columns", "column_categories")
    READINGS_FIELD_NUMBER: _ClassVar[int]
    MISSED_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    COLUMN_CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    readings: _containers.RepeatedCompositeFieldContainer[Reading]
    missed: int
    columns: ReadingColumns
    column_categories: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, readings: _Optional[_Iterable[_Union[Reading, _Mapping]]] = ..., missed: _Optional[int] = ..., columns: _Optional[_Union[ReadingColumns, _Mapping]] = ..., column_categories: _Optional[_Iterable[str]] = ...) -> None: ...

class AggregateReadingsRequest(_message.Message):
    __slots__ = ("categories", "since", "until", "bucket_seconds")
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    BUCKET_SECONDS_FIELD_NUMBER: _ClassVar[int]
    categories: _containers.RepeatedScalarFieldContainer[str]
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    bucket_seconds: int
    def __init__(self, categories: _Optional[_Iterable[str]] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., bucket_seconds: _Optional[int] = ...) -> None: ...

class PartialColumns(_message.Message):
    __slots__ = ("category_codes", "keys", "counts", "sums", "minimums", "maximums", "first_timestamps_ns", "last_timestamps_ns", "means", "m2s")
    CATEGORY_CODES_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    SUMS_FIELD_NUMBER: _ClassVar[int]
    MINIMUMS_FIELD_NUMBER: _ClassVar[int]
    MAXIMUMS_FIELD_NUMBER: _ClassVar[int]
    FIRST_TIMESTAMPS_NS_FIELD_NUMBER: _ClassVar[int]
    LAST_TIMESTAMPS_NS_FIELD_NUMBER: _ClassVar[int]
    MEANS_FIELD_NUMBER: _ClassVar[int]
    M2S_FIELD_NUMBER: _ClassVar[int]
    category_codes: bytes
    keys: bytes
    counts: bytes
    sums: bytes
    minimums: bytes
    maximums: bytes
    first_timestamps_ns: bytes
    last_timestamps_ns: bytes
    means: bytes
    m2s: bytes
    def __init__(self, category_codes: _Optional[bytes] = ..., keys: _Optional[bytes] = ..., counts: _Optional[bytes] = ..., sums: _Optional[bytes] = ..., minimums: _Optional[bytes] = ..., maximums: _Optional[bytes] = ..., first_timestamps_ns: _Optional[bytes] = ..., last_timestamps_ns: _Optional[bytes] = ..., means: _Optional[bytes] = ..., m2s: _Optional[bytes] = ...) -> None: ...

class AggregateReadingsResponse(_message.Message):
    __slots__ = ("partials", "categories", "readings_read", "blocks_used")
    PARTIALS_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    READINGS_READ_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_USED_FIELD_NUMBER: _ClassVar[int]
    partials: PartialColumns
    categories: _containers.RepeatedScalarFieldContainer[str]
    readings_read: int
    blocks_used: int
    def __init__(self, partials: _Optional[_Union[PartialColumns, _Mapping]] = ..., categories: _Optional[_Iterable[str]] = ..., readings_read: _Optional[int] = ..., blocks_used: _Optional[int] = ...) -> None: ...

class GetHistoryRequest(_message.Message):
    __slots__ = ("categories", "since", "until", "bucket_minutes", "max_rows")
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    BUCKET_MINUTES_FIELD_NUMBER: _ClassVar[int]
    MAX_ROWS_FIELD_NUMBER: _ClassVar[int]
    categories: _containers.RepeatedScalarFieldContainer[str]
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    bucket_minutes: int
    max_rows: int
    def __init__(self, categories: _Optional[_Iterable[str]] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., bucket_minutes: _Optional[int] = ..., max_rows: _Optional[int] = ...) -> None: ...

class GetHistoryResponse(_message.Message):
    __slots__ = ("partials", "categories", "buffer_oldest", "retained_since", "rows")
    PARTIALS_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    BUFFER_OLDEST_FIELD_NUMBER: _ClassVar[int]
    RETAINED_SINCE_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    partials: PartialColumns
    categories: _containers.RepeatedScalarFieldContainer[str]
    buffer_oldest: _timestamp_pb2.Timestamp
    retained_since: _timestamp_pb2.Timestamp
    rows: int
    def __init__(self, partials: _Optional[_Union[PartialColumns, _Mapping]] = ..., categories: _Optional[_Iterable[str]] = ..., buffer_oldest: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., retained_since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rows: _Optional[int] = ...) -> None: ...
