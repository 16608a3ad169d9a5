"""The store's category dictionary: names to codes and back, and only as many names as are in use.

A name is in use while a held reading carries its code or while something pins it (the running
generator's categories, before its first reading is stored). When the last held reading of a name is
evicted and nothing pins it, the name is dropped and its code becomes free for the next new name, so
names that nobody stores any more neither fill the dictionary nor cost queries anything.

Snapshots: :attr:`CategoryDictionary.names` is a list that is replaced, never changed in place,
when a name is dropped; new names only extend it, and a freed code is refilled in place. A reference
taken when a batch was stored therefore keeps naming that batch's codes correctly, whatever happens
to the dictionary later (live subscribers rely on this).

Knows nothing of gRPC or of the ring buffer.
"""

from __future__ import annotations

import heapq
import re
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from ingestor.errors import CategoryLimitError, InvalidArgument

MAX_CATEGORIES = 65_536
"""Category codes are at most uint16: this many names can be in use at once."""

CATEGORY_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")

FREE = ""
"""What :attr:`CategoryDictionary.names` holds at a free code (no valid name is empty)."""


def check_category(name: str, where: str = "") -> None:
    """InvalidArgument, naming ``where`` the name was found, unless ``name`` is a valid category."""
    if CATEGORY_PATTERN.fullmatch(name) is None:
        problem = f"category {name[:80]!r} must be 1 to 64 characters from A-Z, a-z, 0-9, '_', '.', '-'"
        raise InvalidArgument(f"{where}: {problem}" if where else problem)


def check_categories(names: Iterable[str], field: str) -> None:
    """:func:`check_category` for each name of a repeated field, naming the item: ``field[i]``."""
    for i, name in enumerate(names):
        check_category(name, f"{field}[{i}]")


class CategoryDictionary:
    def __init__(self) -> None:
        self._names: list[str] = []
        self._codes: dict[str, int] = {}
        self._free: list[int] = []  # a heap: the lowest free code is reused first
        self._held = np.zeros(0, dtype=np.int64)  # per code: readings held that carry it
        self._pins: Counter[str] = Counter()
        self.log_assignments = False
        """Keep (code, name) given out for :meth:`take_assignments` (a journal needs them)."""
        self._assignments: list[tuple[int, str]] = []
        self.version = 0
        """Changes whenever a code is given a name or freed: a cache keyed on it stays right."""
        self.epoch = 0
        """Changes whenever a name is dropped; codes given out before may name something else after."""

    @property
    def names(self) -> Sequence[str]:
        """Code ``i`` names ``names[i]``; :data:`FREE` at a free code. See the module docstring."""
        return self._names

    @property
    def slots(self) -> int:
        """Codes given out so far: every code is below this."""
        return len(self._names)

    @property
    def free(self) -> int:
        """Codes below :attr:`slots` that name nothing now."""
        return len(self._free)

    @property
    def in_use(self) -> int:
        return len(self._names) - len(self._free)

    def code(self, name: str) -> int | None:
        """The code of ``name``, or None when it is not in use."""
        return self._codes.get(name)

    def encode(self, names: Iterable[str]) -> np.ndarray:
        """The codes of ``names`` (int64), giving codes to names not in use yet.

        All or nothing: when the new names would not fit, nothing is added and CategoryLimitError is
        raised. A name given a code here stays in use once a reading carrying it is held (see
        :meth:`hold`). Names are not validated here.
        """
        names = list(names)
        new = [name for name in dict.fromkeys(names) if name not in self._codes]
        if self.in_use + len(new) > MAX_CATEGORIES:
            raise CategoryLimitError(
                f"{self.in_use} categories are in use and this batch adds {len(new)}: at most {MAX_CATEGORIES} "
                "can be in use at once (a category is dropped once none of its readings is held)"
            )
        for name in new:
            self._assign(name)
        return np.fromiter((self._codes[name] for name in names), dtype=np.int64, count=len(names))

    def _assign(self, name: str) -> None:
        if self._free:
            code = heapq.heappop(self._free)
            self._names[code] = name  # a free entry: no snapshot's reading carries this code
        else:
            code = len(self._names)
            self._names.append(name)
            self._held = _grown(self._held, code + 1)
        self._codes[name] = code
        self.version += 1
        if self.log_assignments:
            self._assignments.append((code, name))

    def pin(self, names: Iterable[str]) -> None:
        """Keep ``names`` in use until :meth:`unpin`, held readings or not; all or nothing."""
        names = list(dict.fromkeys(names))
        self.encode(names)
        self._pins.update(names)

    def unpin(self, names: Iterable[str]) -> None:
        """Undo one :meth:`pin` of ``names``; a name then neither pinned nor held is dropped."""
        names = list(dict.fromkeys(names))
        self._pins.subtract(names)
        unused = []
        for name in names:
            if self._pins[name] <= 0:
                del self._pins[name]
                code = self._codes.get(name)
                if code is not None and self._held[code] == 0:
                    unused.append(code)
        self._drop(unused)

    def hold(self, codes: np.ndarray) -> None:
        """Readings carrying ``codes`` are now held."""
        if len(codes):
            counts = np.bincount(codes)
            self._held[: len(counts)] += counts

    def release(self, codes: np.ndarray) -> None:
        """Readings carrying ``codes`` are no longer held; names left unused are dropped."""
        if not len(codes):
            return
        counts = np.bincount(codes)
        held = self._held[: len(counts)]
        held -= counts
        self._drop([int(code) for code in np.flatnonzero((counts > 0) & (held == 0))])

    def _drop(self, codes: list[int]) -> None:
        codes = [code for code in codes if self._pins[self._names[code]] <= 0]
        if not codes:
            return
        self._names = list(self._names)  # a new list: snapshots of the old one stay as they were
        for code in codes:
            del self._codes[self._names[code]]
            self._names[code] = FREE
            heapq.heappush(self._free, code)
        self.version += 1
        self.epoch += 1

    def take_assignments(self) -> list[tuple[int, str]]:
        """(code, name) given out since the last call, oldest first (with :attr:`log_assignments`)."""
        taken, self._assignments = self._assignments, []
        return taken

    def restore(self, names: Sequence[str], held_codes: np.ndarray) -> None:
        """Refill an empty dictionary: ``names`` by code (:data:`FREE` at a free code), and the codes
        of the readings held. Names that no held reading carries are dropped. ValueError when a held
        reading's code names nothing."""
        if self._names:
            raise ValueError("only an empty dictionary can be restored")
        if len(held_codes) and int(held_codes.max()) >= len(names):
            raise ValueError("category code outside the dictionary")
        named = [name for name in names if name != FREE]
        if len(set(named)) != len(named):
            raise ValueError("a category name appears under two codes")
        self._names = list(names)
        self._held = _grown(np.zeros(0, dtype=np.int64), len(names))
        self.hold(held_codes)
        unused = self._held[: len(names)] == 0
        if any(self._names[code] == FREE for code in np.flatnonzero(~unused)):
            raise ValueError("a held reading carries a code that names no category")
        self._codes = {name: code for code, name in enumerate(self._names) if not unused[code]}
        self._free = [int(code) for code in np.flatnonzero(unused)]
        for code in self._free:
            self._names[code] = FREE
        heapq.heapify(self._free)
        self.version += 1


def _grown(array: np.ndarray, size: int) -> np.ndarray:
    """``array`` with room for at least ``size`` entries, zero-filled, doubling to keep growth cheap."""
    if len(array) >= size:
        return array
    grown = np.zeros(max(size, 2 * len(array), 256), dtype=array.dtype)
    grown[: len(array)] = array
    return grown


IDENTITY_UP_TO = 256
"""A stream may use the store's own codes while its dictionary has at most this many codes, all in use."""


class StreamDictionary:
    """The category dictionary of one export stream: it only grows, and it names only what it sent.

    While the store's dictionary is small and has no free code, the stream uses the store's codes as
    they are (no pass over the readings) and sends the store's names as they come. Otherwise, and for
    the rest of the stream once the store drops a name, it gives codes of its own to the names its
    readings carry, so that a reader learns only the names in its answer, and a code the store gives
    to another name meanwhile cannot confuse it.
    """

    def __init__(self, source: CategoryDictionary) -> None:
        self._source = source
        self._epoch = source.epoch
        self._identity = source.free == 0 and source.slots <= IDENTITY_UP_TO
        self._names: list[str] = []
        self._codes: dict[str, int] = {}

    def translate(self, codes: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """``codes`` (the store's, of readings held now) in the stream's codes, and the names that
        this adds to the stream's dictionary."""
        names = self._source.names
        if self._identity and self._source.epoch == self._epoch:
            added = list(names[len(self._names) :])
            self._learn(added)
            return codes, added
        self._identity = False
        present = np.flatnonzero(np.bincount(codes)) if len(codes) else np.empty(0, np.intp)
        added = [names[code] for code in present.tolist() if names[code] not in self._codes]
        self._learn(added)
        # In the store's width, as exports always are, unless names came and went during a long
        # stream so that its own dictionary outgrew a byte.
        width = codes.dtype if len(self._names) <= 256 else np.dtype(np.uint16)
        lookup = np.zeros(int(present[-1]) + 1 if len(present) else 1, dtype=width)
        lookup[present] = [self._codes[names[code]] for code in present.tolist()]
        return np.take(lookup, codes), added

    def _learn(self, names: list[str]) -> None:
        for name in names:
            self._codes[name] = len(self._names)
            self._names.append(name)
