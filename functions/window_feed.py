"""The live window feed's state: the readings of the windows still open, and the events each burst makes.

Each burst of new readings is folded in: readings whose windows are all closed already (late ones
past the grace) are left out, the others kept; then the windows that changed (emit=update) or that
closed (emit=final) are aggregated by functions/processing.py, exactly as /processed-data would, and
sent as one event whose ``id`` is the watermark (the newest event time folded in, in ns). Readings
whose windows are all closed are dropped: the feed keeps only what can still change.

Resuming from an id: the buffer is folded in as a first burst with the watermark the id says, so
every window still open at that id is sent again with its current aggregates (update), or every
window closed since (final): at least once, never a closed window twice.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import orjson

from functions.processing import WindowSpec, aggregate, aggregate_records, holds_any, last_window_end
from functions.readings import Readings
from functions.sse import Batch, StreamFailed

MAX_OPEN_READINGS = 250_000
"""Readings a feed keeps for its open windows at most (19 bytes each, about 5 MB)."""
MAX_EVENT_OBJECTS = 10_000
"""Window objects an event carries at most, as /processed-data: the newest when more changed."""


class TooManyOpenReadings(ValueError):
    pass


class WindowFeed:
    def __init__(
        self,
        windows: WindowSpec,
        stats: Sequence[str],
        watermark: int | None = None,
        max_readings: int = MAX_OPEN_READINGS,
    ) -> None:
        self._windows = windows
        self._stats = list(stats)
        self.watermark = watermark
        """The newest event time folded in (None before any); the ids of events."""
        self._max_readings = max_readings
        self._names: list[str] = []
        self._codes: dict[str, int] = {}
        self._held = Readings(
            np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.uint16), self._names, np.empty(0, np.uint8)
        )

    @property
    def held(self) -> int:
        return len(self._held)

    def events(self, batches: Sequence[Batch], max_readings: int = 0) -> Iterator[bytes]:
        """The events of a burst (``sse_events``' ``encode``): the windows' event, a gap where readings
        were lost. StreamFailed when the open windows outgrow the bound."""
        pending: list[Readings] = []
        for batch in batches:
            if isinstance(batch.readings, Readings):
                pending.append(batch.readings)
            if batch.missed:
                yield from self._fold(pending)
                pending = []
                yield b"event: gap\ndata: " + orjson.dumps({"missed": batch.missed}) + b"\n\n"
        yield from self._fold(pending)

    def fold(self, readings: Readings) -> list[dict[str, object]]:
        """Fold readings in; the window objects to send (changed, or closed, by them)."""
        new = self._own(readings)
        if not len(new):
            return []
        before = self.watermark
        windows = self._windows
        grace = windows.grace_ns or 0
        self.watermark = max(before if before is not None else np.iinfo(np.int64).min, int(new.timestamps_ns.max()))
        if before is not None:  # readings for windows closed already: past the grace, left out
            new = _take(new, last_window_end(new.timestamps_ns, windows) + grace > before)
        held = _concat(self._held, new)
        if len(held) > self._max_readings:
            raise TooManyOpenReadings(
                f"the open windows hold {len(held):,} readings, more than the {self._max_readings:,} a feed keeps: "
                "ask for a shorter window or grace, or fewer categories"
            )
        records: list[dict[str, object]] = []
        if len(held):
            rows = aggregate(held, windows=windows, stats=self._stats)
            end = rows["window_end"].to_numpy(np.int64) + grace
            closed_now = rows["closed"].to_numpy(bool)
            was_open = end > before if before is not None else np.ones(len(rows), dtype=bool)
            send = closed_now & was_open if windows.final_only else was_open & (closed_now | holds_any(rows, new))
            rows = rows[send].tail(MAX_EVENT_OBJECTS)
            records = aggregate_records(rows.reset_index(drop=True), self._stats)
        self._held = _take(held, last_window_end(held.timestamps_ns, windows) + grace > self.watermark)
        return records

    def _fold(self, parts: list[Readings]) -> Iterator[bytes]:
        if not parts:
            return
        try:
            # Each part's codes index its own dictionary (the buffered readings and the live ones
            # come from different calls): bring them to the feed's before joining them.
            records = self.fold(_concat(*[self._own(part) for part in parts]) if len(parts) > 1 else parts[0])
        except TooManyOpenReadings as error:
            raise StreamFailed(str(error)) from None
        if records:
            yield f"id: {self.watermark}\n".encode() + b"data: " + orjson.dumps(records) + b"\n\n"

    def _own(self, readings: Readings) -> Readings:
        """``readings`` with codes into this feed's dictionary, which only grows."""
        for name in readings.categories:
            if name not in self._codes:
                self._codes[name] = len(self._names)
                self._names.append(name)
        lookup = np.array([self._codes[name] for name in readings.categories] or [0], dtype=np.uint16)
        late = readings.late if readings.late is not None else np.zeros(len(readings), np.uint8)
        return Readings(readings.timestamps_ns, readings.values, lookup[readings.codes], self._names, late)


def _take(readings: Readings, keep: np.ndarray) -> Readings:
    assert readings.late is not None
    return Readings(
        readings.timestamps_ns[keep],
        readings.values[keep],
        readings.codes[keep],
        readings.categories,
        readings.late[keep],
    )


def _concat(*parts: Readings) -> Readings:
    return Readings(
        np.concatenate([part.timestamps_ns for part in parts]),
        np.concatenate([part.values for part in parts]),
        np.concatenate([part.codes for part in parts]),
        parts[-1].categories,
        np.concatenate([part.late if part.late is not None else np.zeros(len(part), np.uint8) for part in parts]),
    )
