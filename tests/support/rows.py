"""Readings for the pure pandas tests, written as rows."""

from __future__ import annotations

import numpy as np

from functions.readings import Readings


def readings(rows: list[tuple[int, float, str]], dictionary: list[str]) -> Readings:
    """``(timestamp ns, value, category)`` rows as the columns the function receives; codes index
    ``dictionary``, which may hold names no row uses."""
    return Readings(
        np.array([t for t, _, _ in rows], dtype=np.int64),
        np.array([v for _, v, _ in rows], dtype=np.float64),
        np.array([dictionary.index(c) for _, _, c in rows], dtype=np.uint16),
        dictionary,
    )
