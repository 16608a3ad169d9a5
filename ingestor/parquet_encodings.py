"""Parquet's encodings of a column's values, vectorised with numpy: what ``parquet_stream`` writes.

- the RLE/bit-packing hybrid, all bit-packed: the codes of a dictionary-encoded column;
- DELTA_BINARY_PACKED: event times, nearly in order, as the differences between neighbours.

Both pack integers ``width`` bits each, the first value in the lowest bits (Parquet's order; the
differences' packing is ``ingestor/bit_packing.pyx``). The encodings are checked against pyarrow's reader
in ``tests/ingestor/test_parquet_stream.py``.
"""

from __future__ import annotations

import numpy as np

from ingestor.bit_packing import pack_codes, pack_deltas
from ingestor.thrift_compact import zigzag
from ingestor.wire import varint

DELTA_BLOCK = 128
"""Values a DELTA_BINARY_PACKED block holds (Parquet's writers use 128 as well)..."""
DELTA_MINIBLOCKS = 4
"""...in 4 miniblocks of 32."""
_MINIBLOCK = DELTA_BLOCK // DELTA_MINIBLOCKS


def index_width(names: int) -> int:
    """The bits a dictionary code is packed in, for ``names`` entries (at least one bit)."""
    return max(1, (names - 1).bit_length())


def bit_packed_run(codes: np.ndarray, width: int) -> bytes:
    """``codes`` as one bit-packed run of the RLE/bit-packing hybrid: its header, then the codes
    ``width`` bits each, padded with zeros to a multiple of eight codes."""
    groups = -(-len(codes) // 8)
    if codes.dtype not in (np.uint8, np.uint16):
        codes = codes.astype(np.uint16)
    return varint(groups << 1 | 1) + pack_codes(np.ascontiguousarray(codes), width, 8)


def delta_binary_packed(values: np.ndarray) -> bytes:
    """int64 ``values`` as DELTA_BINARY_PACKED: the first value, then each difference from the one
    before, less the smallest difference, bit-packed in blocks of 128 (4 miniblocks of 32).

    Every block uses the chunk's smallest difference and one width for its miniblocks (the bits
    the largest needs): the spec asks only that they hold the block's values, and alike blocks are
    laid out at once. Differences wrap around as int64 ones do, as the spec's readers expect."""
    count = len(values)
    header = varint(DELTA_BLOCK) + varint(DELTA_MINIBLOCKS) + varint(count)
    if count == 0:
        return header + varint(0)
    header += varint(zigzag(int(values[0])))
    if count == 1:
        return header
    smallest, width, packed = pack_deltas(np.ascontiguousarray(values, dtype=np.int64), DELTA_BLOCK)
    deltas = count - 1
    blocks = -(-deltas // DELTA_BLOCK)
    block_head = varint(zigzag(smallest)) + bytes([width] * DELTA_MINIBLOCKS)
    body = DELTA_BLOCK * width // 8
    layout = np.empty((blocks, len(block_head) + body), np.uint8)
    layout[:, : len(block_head)] = np.frombuffer(block_head, np.uint8)
    layout[:, len(block_head) :] = packed.astype("<u8", copy=False).view(np.uint8).reshape(blocks, body)
    # The last block's miniblocks past the last difference are left out, their widths zero.
    needed = -(-(deltas - (blocks - 1) * DELTA_BLOCK) // _MINIBLOCK)
    tail = layout[-1, : len(block_head) + needed * _MINIBLOCK * width // 8].copy()
    tail[len(block_head) - DELTA_MINIBLOCKS + needed : len(block_head)] = 0
    return header + layout[:-1].tobytes() + tail.tobytes()
