"""Readings as CSV lines in the API's text (``timestamp,value,category``), for the CSV export.

The lines are written by ``ingestor/csv_lines.pyx`` in one pass without the GIL; the few values it
leaves aside (zeros, magnitudes below 1e-4 or from 1e9 up, values with more digits than it can
place safely) are written by Arrow's cast to string, as the function's own CSV writes every value,
so the text is the same either way (``tests/ingestor/test_csv_text.py`` compares them).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ingestor.csv_lines import csv_lines, value_texts

HEADER = b"timestamp,value,category\n"


def _arrow_texts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Arrow's text of each value: the bytes one after another, and where each starts and ends."""
    if not len(values):
        return np.empty(0, np.uint8), np.zeros(1, np.int64)
    import pyarrow as pa
    import pyarrow.compute as pc

    cast = pc.cast(pa.array(values), pa.string())
    offsets = np.frombuffer(cast.buffers()[1], np.int32, len(cast) + 1, 4 * cast.offset).astype(np.int64)
    text = np.frombuffer(cast.buffers()[2], np.uint8)[offsets[0] : offsets[-1]]
    return text, offsets - offsets[0]


def csv_chunk(timestamps_ns: np.ndarray, values: np.ndarray, codes: np.ndarray, names: Sequence[str]) -> memoryview:
    """One CSV line a reading (``codes`` index ``names``), without the header."""
    values = np.ascontiguousarray(values, dtype=np.float64)
    tails = [b"," + name.encode() + b"\n" for name in names] or [b",\n"]
    tail_offsets = np.concatenate(([0], np.cumsum([len(tail) for tail in tails]))).astype(np.int64)
    text, offsets, fallback = value_texts(values)
    fallback_text, fallback_offsets = _arrow_texts(values[fallback])
    codes = np.ascontiguousarray(codes)
    if codes.dtype not in (np.uint8, np.uint16):
        codes = codes.astype(np.uint16)
    return csv_lines(
        np.ascontiguousarray(timestamps_ns, dtype=np.int64),
        text,
        offsets,
        codes,
        np.frombuffer(b"".join(tails), np.uint8),
        tail_offsets,
        fallback,
        np.ascontiguousarray(fallback_text),
        fallback_offsets,
    )
