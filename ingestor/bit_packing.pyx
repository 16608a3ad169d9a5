# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Parquet's bit-packing, in one pass without the GIL: integers ``width`` bits each, the first in
the lowest bits, as little-endian 64-bit words.

Two columns of an export are packed: the differences between neighbouring event times
(DELTA_BINARY_PACKED's bodies) and the dictionary codes of the categories (the bit-packed runs of
the RLE/bit-packing hybrid). With numpy this takes temporaries as long as the column and a call per
position of a value in its 64-bit group, which cost more than the packing at an export's chunk sizes.
"""

import numpy as np

from libc.stdint cimport int64_t, uint8_t, uint16_t, uint64_t

ctypedef fused code_t:
    uint8_t
    uint16_t


cdef inline void _put(uint64_t[::1] words, Py_ssize_t *word, uint64_t *carry, int *shift, uint64_t value, int width) noexcept nogil:
    # The word being filled stays in a register; it is stored once full.
    carry[0] |= value << shift[0]
    shift[0] += width
    if shift[0] >= 64:
        words[word[0]] = carry[0]
        word[0] += 1
        shift[0] -= 64
        carry[0] = value >> (width - shift[0]) if shift[0] > 0 else 0


def pack_deltas(const int64_t[::1] values, Py_ssize_t block):
    """(smallest, width, words): the smallest difference ``values[i + 1] - values[i]`` (wrapping as
    int64 arithmetic does), the bits the largest difference less it needs (0 to 64), and each
    difference less the smallest packed ``width`` bits each, zero-padded to a whole number of
    ``block`` differences. At least two values; ``block`` a positive multiple of 64."""
    cdef Py_ssize_t n = values.shape[0], i
    if n < 2 or block <= 0 or block % 64:
        raise ValueError("pack_deltas needs two values or more and a block that is a multiple of 64")
    cdef int64_t delta, smallest, largest
    cdef uint64_t span, carry = 0
    cdef int width = 0, shift = 0
    cdef Py_ssize_t word = 0, count = n - 1
    with nogil:
        smallest = largest = <int64_t>(<uint64_t>values[1] - <uint64_t>values[0])
        for i in range(1, count):
            delta = <int64_t>(<uint64_t>values[i + 1] - <uint64_t>values[i])
            if delta < smallest:
                smallest = delta
            elif delta > largest:
                largest = delta
        span = <uint64_t>largest - <uint64_t>smallest
        while width < 64 and (span >> width) != 0:
            width += 1
    words_array = np.zeros((count + block - 1) // block * block * width // 64, np.uint64)
    if width == 0:
        return smallest, width, words_array
    cdef uint64_t[::1] words = words_array
    with nogil:
        for i in range(count):
            _put(words, &word, &carry, &shift, (<uint64_t>values[i + 1] - <uint64_t>values[i]) - <uint64_t>smallest, width)
        if shift:
            words[word] = carry
    return smallest, width, words_array


def pack_codes(const code_t[::1] codes, int width, Py_ssize_t multiple):
    """``codes`` (each below ``2**width``; 1 <= width <= 16) packed ``width`` bits each, as bytes,
    zero-padded to a whole number of ``multiple`` codes (a positive multiple of 8)."""
    if not 1 <= width <= 16 or multiple <= 0 or multiple % 8:
        raise ValueError("pack_codes needs a width of 1 to 16 and a multiple of 8")
    cdef Py_ssize_t n = codes.shape[0], i, word = 0
    cdef Py_ssize_t padded = (n + multiple - 1) // multiple * multiple
    words_array = np.zeros((padded * width + 63) // 64, np.uint64)
    cdef uint64_t[::1] words = words_array
    cdef uint64_t carry = 0
    cdef int shift = 0
    with nogil:
        for i in range(n):
            _put(words, &word, &carry, &shift, codes[i], width)
        if shift:
            words[word] = carry
    return words_array.astype("<u8", copy=False).view(np.uint8)[: padded * width // 8].tobytes()
