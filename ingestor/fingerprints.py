"""The fingerprint of a written batch: what its batch id is compared by when the id comes again.

A BLAKE2b hash (16 bytes) of the readings in a canonical form, the same whichever way a producer
sent them (as messages, as columns with either width of codes, with any order or surplus of its
column dictionary): the count, the timestamps as little-endian int64, the values as little-endian
float64 (bit for bit: 0.0 and -0.0 differ), each reading's category as its rank among the batch's
distinct names sorted, as little-endian uint32, then those names. Two batches have the same
fingerprint exactly when they carry the same readings in the same order.
"""

from __future__ import annotations

import hashlib

import numpy as np

from ingestor.readings import WrittenReadings

DIGEST_BYTES = 16
_PERSON = b"ingestor.batch.1"  # the form's version: another form gives other fingerprints


def fingerprint(readings: WrittenReadings) -> bytes:
    names = sorted({*readings.message_names, *readings.used_column_names()})
    rank = {name: index for index, name in enumerate(names)}
    message_ranks = np.fromiter((rank[name] for name in readings.message_names), dtype="<u4")
    column_ranks = np.zeros(len(readings.column_categories), dtype="<u4")
    column_ranks[readings.used_codes] = [rank[name] for name in readings.used_column_names()]
    digest = hashlib.blake2b(digest_size=DIGEST_BYTES, person=_PERSON)
    digest.update(len(readings).to_bytes(8, "little"))
    for message_part, column_part, dtype in (
        (readings.message_timestamps, readings.column_timestamps, "<i8"),
        (readings.message_values, readings.column_values, "<f8"),
    ):
        digest.update(np.ascontiguousarray(message_part, dtype=dtype).data)
        digest.update(np.ascontiguousarray(column_part, dtype=dtype).data)
    digest.update(message_ranks.data)
    digest.update(column_ranks[readings.column_codes].data)
    digest.update("\n".join(names).encode())  # names never hold a newline ([A-Za-z0-9_.-])
    return digest.digest()
