# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""CSV lines of readings, ``timestamp,value,category``, written in one pass without the GIL.

The text is the API's: event times as ISO 8601 in microseconds with a ``Z`` (truncated toward the
past), values in their shortest round-trip decimal form as Arrow's cast to string writes them, names
as they are. A value is written here when it is plain in both Arrow's and the JSON writers' forms
(magnitudes from 1e-4 up to 1e9) and its shortest form is found safely: the fewest decimals ``d``
for which ``round(|v| * 10**d) / 10**d == |v|``, tried only while ``10**-d`` is at least four units
in the last place of ``|v|`` (no two decimals of that length can then both round to it, and the
rounding of the product cannot pick the wrong one) and the product stays below 2**50. The others
(zeros, the very large and very small, values with too many digits) are the caller's: it passes
their text, made by Arrow's cast, and they are copied in place.
"""

import numpy as np

from libc.math cimport fabs, floor, nearbyint
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint64_t
from libc.string cimport memcpy

ctypedef fused code_t:
    uint8_t
    uint16_t

cdef double[18] _POW10
for _i in range(18):
    _POW10[_i] = 10.0 ** _i

cdef int64_t _US_PER_DAY = 86_400_000_000


cdef inline int64_t _floor_div(int64_t a, int64_t b) noexcept nogil:
    cdef int64_t q = a / b
    if a % b != 0 and (a < 0) != (b < 0):
        q -= 1
    return q


cdef inline int _digits(char *out, int64_t number, int width) noexcept nogil:
    # ``number`` (>= 0) as exactly ``width`` digits, zero-padded.
    cdef int i
    for i in range(width - 1, -1, -1):
        out[i] = <char>(48 + number % 10)
        number //= 10
    return width


cdef inline int _integer(char *out, int64_t number) noexcept nogil:
    # ``number`` (>= 0) in as many digits as it takes.
    cdef char buffer[20]
    cdef int length = 0, i
    while True:
        buffer[length] = <char>(48 + number % 10)
        length += 1
        number //= 10
        if number == 0:
            break
    for i in range(length):
        out[i] = buffer[length - 1 - i]
    return length


cdef inline int _value(char *out, double value) noexcept nogil:
    """The value's text at ``out``; its length, or -1 when the caller's text goes there instead."""
    cdef double magnitude = fabs(value), scale, scaled
    cdef int64_t whole, digits
    cdef int length = 0, d, integer_digits, i
    if not (magnitude >= 1e-4 and magnitude < 1e9):
        return -1
    if value < 0:
        out[0] = 45  # '-'
        length = 1
    if magnitude == floor(magnitude):
        return length + _integer(out + length, <int64_t>magnitude)
    # The next double up, from the bits (magnitude is positive and finite): one unit in the last place.
    cdef uint64_t bits
    memcpy(&bits, &magnitude, 8)
    bits += 1
    cdef double above
    memcpy(&above, &bits, 8)
    cdef double unit = above - magnitude
    for d in range(1, 18):
        scale = _POW10[d]
        if 1.0 / scale < 4.0 * unit:
            return -1
        scaled = magnitude * scale
        if scaled >= 1125899906842624.0:  # 2**50
            return -1
        digits = <int64_t>nearbyint(scaled)
        if <double>digits / scale != magnitude:
            continue
        whole = digits // <int64_t>scale
        length += _integer(out + length, whole)
        out[length] = 46  # '.'
        length += 1
        length += _digits(out + length, digits - whole * <int64_t>scale, d)
        return length
    return -1


def value_texts(const double[::1] values):
    """(text, offsets, fallback): each value's text one after another (value i is bytes
    ``offsets[i]`` to ``offsets[i + 1]``; none for the values left to the caller), and the rows of
    those values, ascending."""
    cdef Py_ssize_t n = values.shape[0], i, count = 0, position = 0
    cdef int length
    text_array = np.empty(max(n * 32, 1), np.uint8)
    offsets_array = np.empty(n + 1, np.int64)
    rows_array = np.empty(n, np.int64)
    cdef uint8_t[::1] text_view = text_array
    cdef char *text = <char *>&text_view[0]
    cdef int64_t[::1] offsets = offsets_array, rows = rows_array
    with nogil:
        for i in range(n):
            offsets[i] = position
            length = _value(text + position, values[i])
            if length < 0:
                rows[count] = i
                count += 1
            else:
                position += length
        offsets[n] = position
    return text_array[:position], offsets_array, rows_array[:count]


def csv_lines(
    const int64_t[::1] timestamps_ns,
    const uint8_t[::1] text,
    const int64_t[::1] offsets,
    const code_t[::1] codes,
    const uint8_t[::1] tails,
    const int64_t[::1] tail_offsets,
    const int64_t[::1] fallback,
    const uint8_t[::1] fallback_text,
    const int64_t[::1] fallback_offsets,
):
    """One line a reading: its event time, a comma, its value's text (from :func:`value_texts`, or
    for the rows in ``fallback`` the caller's, in order), then ``tails[code]`` (``,name`` and a
    newline: bytes ``tail_offsets[code]`` to ``tail_offsets[code + 1]`` of ``tails``)."""
    cdef Py_ssize_t n = timestamps_ns.shape[0], i, position = 0, next_fallback = 0, longest_tail = 0, code
    for code in range(tail_offsets.shape[0] - 1):
        longest_tail = max(longest_tail, tail_offsets[code + 1] - tail_offsets[code])
    capacity = n * (28 + longest_tail) + text.shape[0] + fallback_text.shape[0]
    out_array = np.empty(max(capacity, 1), np.uint8)
    cdef uint8_t[::1] out_view = out_array
    cdef char *out = <char *>&out_view[0]
    cdef int64_t micros, day, of_day, seconds, fraction, cached_day = -(1 << 62)
    cdef int64_t z, era, doe, yoe, doy, mp, year, month, dom
    cdef char date[11]
    cdef Py_ssize_t start, stop, fallbacks = fallback.shape[0]
    with nogil:
        for i in range(n):
            micros = _floor_div(timestamps_ns[i], 1000)
            day = _floor_div(micros, _US_PER_DAY)
            if day != cached_day:
                # H. Hinnant's civil_from_days.
                z = day + 719468
                era = _floor_div(z, 146097)
                doe = z - era * 146097
                yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
                doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
                mp = (5 * doy + 2) // 153
                dom = doy - (153 * mp + 2) // 5 + 1
                month = mp + 3 if mp < 10 else mp - 9
                year = yoe + era * 400 + (1 if month <= 2 else 0)
                _digits(date, year, 4)
                date[4] = 45
                _digits(date + 5, month, 2)
                date[7] = 45
                _digits(date + 8, dom, 2)
                date[10] = 84  # 'T'
                cached_day = day
            memcpy(out + position, date, 11)
            position += 11
            of_day = micros - day * _US_PER_DAY
            seconds = of_day // 1000000
            fraction = of_day - seconds * 1000000
            position += _digits(out + position, seconds // 3600, 2)
            out[position] = 58  # ':'
            position += 1 + _digits(out + position + 1, seconds // 60 % 60, 2)
            out[position] = 58
            position += 1 + _digits(out + position + 1, seconds % 60, 2)
            out[position] = 46  # '.'
            position += 1 + _digits(out + position + 1, fraction, 6)
            out[position] = 90  # 'Z'
            out[position + 1] = 44  # ','
            position += 2
            if next_fallback < fallbacks and fallback[next_fallback] == i:
                start, stop = fallback_offsets[next_fallback], fallback_offsets[next_fallback + 1]
                next_fallback += 1
                if stop > start:
                    memcpy(out + position, &fallback_text[start], stop - start)
            else:
                start, stop = offsets[i], offsets[i + 1]
                if stop > start:
                    memcpy(out + position, &text[start], stop - start)
            position += stop - start
            code = codes[i]
            start, stop = tail_offsets[code], tail_offsets[code + 1]
            memcpy(out + position, &tails[start], stop - start)
            position += stop - start
    return out_array[:position].data
