# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Partials of a batch grouped by (category code, time bucket), in compiled passes over the readings.

The rollups (minutes) and the sealed blocks (seconds) group every stored reading this way. The numpy
path (``compute_partials``) makes a dozen array calls per batch, and each one lets go of the GIL and
takes it back, which under load costs more than the arithmetic. Here a batch is three passes in one
call that holds no GIL: bounds, then count/sum/min/max/first/last, then the residuals for the mean and
M2, the same corrected two-pass algorithm as the numpy path. Groups are cells of the (code, bucket)
box, so the box must be small (the caller's bound): a batch's few minutes or a block's seconds.
"""

import numpy as np

from libc.stdint cimport int64_t, uint8_t, uint16_t

ctypedef fused code_t:
    uint8_t
    uint16_t
    int64_t


cdef inline int64_t _floor_div(int64_t a, int64_t b) noexcept nogil:
    # C division truncates toward zero; a bucket is a floor (event times before 1970 too).
    cdef int64_t q = a / b
    if a % b != 0 and (a < 0) != (b < 0):
        q -= 1
    return q


cdef inline int64_t _key(int64_t t, int64_t bucket_ns, int64_t low_key, int64_t *bucket_start, int64_t *key) noexcept nogil:
    # The reading's bucket less the lowest. Readings arrive mostly in time order: the current
    # bucket's bounds spare a division a reading.
    if t < bucket_start[0] or t - bucket_start[0] >= bucket_ns:
        key[0] = _floor_div(t, bucket_ns) - low_key
        bucket_start[0] = (key[0] + low_key) * bucket_ns
    return key[0]


def bucket_partials(
    const int64_t[::1] timestamps_ns,
    const double[::1] values,
    const code_t[::1] codes,
    int64_t bucket_ns,
    Py_ssize_t max_cells,
):
    """The partials' columns (codes, keys, count, total, minimum, maximum, first_ns, last_ns, mean,
    m2), one row per non-empty (code, bucket) sorted by code then bucket, where a reading's bucket is
    ``floor(timestamp / bucket_ns)``; None when the box of codes and buckets the readings span has
    more than ``max_cells`` cells. At least one reading; ``bucket_ns`` positive."""
    cdef Py_ssize_t n = timestamps_ns.shape[0], i
    if n == 0 or values.shape[0] != n or codes.shape[0] != n or bucket_ns <= 0:
        raise ValueError("bucket_partials needs at least one reading, equal lengths and a positive bucket")
    cdef int64_t low_code, high_code, low_ns, high_ns, t, code
    cdef int64_t low_key, span, cell, key = 0, bucket_start = 0
    cdef double v, r

    with nogil:
        low_code = high_code = codes[0]
        low_ns = high_ns = timestamps_ns[0]
        for i in range(n):
            code = codes[i]
            t = timestamps_ns[i]
            if code < low_code:
                low_code = code
            elif code > high_code:
                high_code = code
            if t < low_ns:
                low_ns = t
            elif t > high_ns:
                high_ns = t
        low_key = _floor_div(low_ns, bucket_ns)
        span = _floor_div(high_ns, bucket_ns) - low_key + 1
    if span > max_cells or (high_code - low_code + 1) * span > max_cells:
        return None
    cdef Py_ssize_t cells = (high_code - low_code + 1) * span
    count_array = np.zeros(cells, np.int64)
    sum_array = np.zeros(cells, np.float64)
    min_array = np.full(cells, np.inf)
    max_array = np.full(cells, -np.inf)
    first_array = np.full(cells, np.iinfo(np.int64).max, np.int64)
    last_array = np.full(cells, np.iinfo(np.int64).min, np.int64)
    mean_array = np.zeros(cells, np.float64)
    correction_array = np.zeros(cells, np.float64)
    squares_array = np.zeros(cells, np.float64)
    cdef int64_t[::1] count = count_array, first = first_array, last = last_array
    cdef double[::1] total = sum_array, low = min_array, high = max_array
    cdef double[::1] first_mean = mean_array, correction = correction_array, squares = squares_array

    with nogil:
        bucket_start = low_key * bucket_ns
        for i in range(n):
            t = timestamps_ns[i]
            cell = (codes[i] - low_code) * span + _key(t, bucket_ns, low_key, &bucket_start, &key)
            v = values[i]
            count[cell] += 1
            total[cell] += v
            if v < low[cell]:
                low[cell] = v
            if v > high[cell]:
                high[cell] = v
            if t < first[cell]:
                first[cell] = t
            if t > last[cell]:
                last[cell] = t
        for cell in range(cells):
            if count[cell]:
                first_mean[cell] = total[cell] / count[cell]
        bucket_start = low_key * bucket_ns
        key = 0
        for i in range(n):
            cell = (codes[i] - low_code) * span + _key(timestamps_ns[i], bucket_ns, low_key, &bucket_start, &key)
            r = values[i] - first_mean[cell]
            correction[cell] += r
            squares[cell] += r * r

    used = np.flatnonzero(count_array)
    n_used = count_array[used]
    mean, c = mean_array[used], correction_array[used]
    minimum, maximum = min_array[used], max_array[used]
    constant = minimum == maximum  # exactly: no rounding left in a group of equal values
    return (
        used // span + low_code,
        used % span + low_key,
        n_used,
        sum_array[used] + c,
        minimum,
        maximum,
        first_array[used],
        last_array[used],
        np.where(constant, minimum, mean + c / n_used),
        np.where(constant, 0.0, np.maximum(squares_array[used] - c * c / n_used, 0.0)),
    )
