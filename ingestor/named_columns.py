"""Readings that carry their own category names, and the pieces live subscribers share.

A stored batch's codes index the store's dictionary, which changes as names come and go; a
:class:`NamedColumns` carries the names its codes index, so it stays readable without the store.
:func:`name_columns` is the only place that reads the store's dictionary for live subscribers.
Knows nothing of gRPC.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ingestor.store import Columns

PIECE_READINGS = 4096
"""Readings per piece, and so at most per message sent to a subscriber."""


@dataclass(frozen=True, slots=True, eq=False)
class NamedColumns:
    """Readings column by column whose codes index ``names``: readable without the store."""

    timestamps_ns: np.ndarray
    values: np.ndarray
    codes: np.ndarray
    """uint8 while ``names`` has at most 256 entries, uint16 beyond."""
    names: tuple[str, ...]
    first_sequence: int = 0
    """The sequence number of the first reading (see ``ingestor/store.py``)."""
    offsets: np.ndarray | None = None
    """Each reading's sequence number less ``first_sequence`` when they are not consecutive (a
    filtered piece); None when they are ``first_sequence, first_sequence + 1, ...``."""
    late: np.ndarray | None = None
    """Each reading's late flag (uint8), when the store gave them and a subscriber wants them."""
    _cache: dict[str, bytes] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.timestamps_ns)

    @property
    def columns(self) -> Columns:
        return Columns(self.timestamps_ns, self.values, self.codes, self.late)

    @property
    def nbytes(self) -> int:
        offsets = self.offsets.nbytes if self.offsets is not None else 0
        late = self.late.nbytes if self.late is not None else 0
        return self.timestamps_ns.nbytes + self.values.nbytes + self.codes.nbytes + offsets + late

    @property
    def sequences(self) -> np.ndarray:
        """Each reading's sequence number, as uint64."""
        first = np.uint64(self.first_sequence)
        if self.offsets is None:
            return np.arange(len(self), dtype=np.uint64) + first
        return self.offsets.astype(np.uint64) + first

    def head(self, count: int) -> NamedColumns:
        offsets = self.offsets[:count] if self.offsets is not None else None
        return NamedColumns(
            self.timestamps_ns[:count],
            self.values[:count],
            self.codes[:count],
            self.names,
            self.first_sequence,
            offsets,
            self.late[:count] if self.late is not None else None,
        )

    def tail(self, start: int) -> NamedColumns:
        if self.offsets is None:
            first, offsets = self.first_sequence + start, None
        else:
            first, offsets = self.first_sequence, self.offsets[start:]
        late = self.late[start:] if self.late is not None else None
        return NamedColumns(
            self.timestamps_ns[start:], self.values[start:], self.codes[start:], self.names, first, offsets, late
        )

    def without_late(self) -> NamedColumns:
        """The same readings without their late flags (shares the arrays)."""
        if self.late is None:
            return self
        return NamedColumns(self.timestamps_ns, self.values, self.codes, self.names, self.first_sequence, self.offsets)

    def cached(self, key: str, make: Callable[[NamedColumns], bytes]) -> bytes:
        """``make(self)``, computed once per key: the pieces are immutable and shared by subscribers."""
        if key not in self._cache:
            self._cache[key] = make(self)
        return self._cache[key]


def name_columns(
    columns: Columns, dictionary: Sequence[str], first_sequence: int = 0, offsets: np.ndarray | None = None
) -> NamedColumns:
    """``columns`` with their codes re-indexed into the names they use, looked up in ``dictionary``.

    The codes are kept as they are when they already are 0, 1, ... in the right width (the
    generator's usual case); otherwise renumbered in the order of the dictionary. The sequence
    numbers are ``first_sequence`` plus ``offsets`` (None: consecutive).
    """
    codes = np.asarray(columns.codes)
    late = columns.late
    if not len(codes):
        return NamedColumns(
            columns.timestamps_ns, columns.values, codes.astype(np.uint8), (), first_sequence, offsets, late
        )
    used = np.flatnonzero(np.bincount(codes))
    width = np.uint8 if len(used) <= 256 else np.uint16
    names = tuple(dictionary[code] for code in used.tolist())
    if len(used) == int(used[-1]) + 1 and codes.dtype == width:
        return NamedColumns(columns.timestamps_ns, columns.values, codes, names, first_sequence, offsets, late)
    renumber = np.zeros(int(used[-1]) + 1, dtype=width)
    renumber[used] = np.arange(len(used), dtype=width)
    return NamedColumns(columns.timestamps_ns, columns.values, renumber[codes], names, first_sequence, offsets, late)


def join(pieces: Sequence[NamedColumns]) -> NamedColumns:
    """One NamedColumns of ``pieces`` in order, with one table of the names they use."""
    if len(pieces) == 1:
        return pieces[0]
    index: dict[str, int] = {}
    tables = [
        np.array([index.setdefault(name, len(index)) for name in piece.names], dtype=np.int64) for piece in pieces
    ]
    codes = np.concatenate(
        [table[piece.codes] if len(piece) else piece.codes for table, piece in zip(tables, pieces, strict=True)]
    )
    lates = [piece.late for piece in pieces]
    joined = Columns(
        np.concatenate([piece.timestamps_ns for piece in pieces]),
        np.concatenate([piece.values for piece in pieces]),
        codes.astype(np.int64),
        np.concatenate(lates) if all(late is not None for late in lates) else None,  # type: ignore[arg-type]
    )
    first = pieces[0].first_sequence
    sequences = np.concatenate([piece.sequences for piece in pieces])
    consecutive = len(sequences) == 0 or int(sequences[-1]) - first == len(sequences) - 1
    offsets = None if consecutive else sequences - np.uint64(first)
    return name_columns(joined, tuple(index), first, offsets)


def split(named: NamedColumns, size: int = PIECE_READINGS) -> list[NamedColumns]:
    """``named`` in pieces of at most ``size`` readings, each owning its memory once there are several.

    A piece that viewed a large batch would keep all of it alive for as long as any subscriber
    holds the piece; copied, it costs what the subscriber's buffer counts.
    """
    if len(named) <= size:
        return [named] if len(named) else []
    return [
        NamedColumns(
            named.timestamps_ns[start : start + size].copy(),
            named.values[start : start + size].copy(),
            named.codes[start : start + size].copy(),
            named.names,
            named.first_sequence + start,
            late=named.late[start : start + size].copy() if named.late is not None else None,
        )
        for start in range(0, len(named), size)
    ]


def select(pieces: Sequence[NamedColumns], categories: frozenset[str]) -> list[NamedColumns]:
    """The readings of ``pieces`` whose category is one of ``categories``, piece by piece."""
    selected: list[NamedColumns] = []
    for piece in pieces:
        wanted = [code for code, name in enumerate(piece.names) if name in categories]
        if len(wanted) == len(piece.names):
            selected.append(piece)
        elif wanted:
            keep = np.isin(piece.codes, wanted)
            late = piece.late[keep] if piece.late is not None else None
            kept = Columns(piece.timestamps_ns[keep], piece.values[keep], piece.codes[keep], late)
            # A piece spans at most PIECE_READINGS sequence numbers: two bytes an offset suffice.
            positions = np.flatnonzero(keep)
            offsets = (piece.offsets[positions] if piece.offsets is not None else positions).astype(np.uint16)
            selected.append(name_columns(kept, piece.names, piece.first_sequence, offsets))
    return selected
