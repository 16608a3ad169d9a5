"""Thrift's compact protocol, for writing only, and only what Parquet's metadata needs.

Parquet describes its pages and its footer as Thrift structs (``parquet.thrift``) in the compact
protocol: field headers that carry the step from the previous field id and the type in one byte,
integers as zigzag varints, lists with their element type. A struct is given as its fields in id
order, each a :class:`Field`; fields whose value is None are left out (Thrift's optional fields).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

from ingestor.wire import varint

Kind = Literal["bool", "i32", "i64", "binary", "struct", "list"]

_TYPE = {"i32": 5, "i64": 6, "binary": 8, "list": 9, "struct": 12}
_TRUE, _FALSE = 1, 2
_ELEMENT_TYPE = {"i32": 5, "i64": 6, "binary": 8, "struct": 12}


class Field(NamedTuple):
    id: int
    kind: Kind
    value: object
    """bool, int, bytes (a binary or string), bytes of an encoded struct, or a :class:`ListOf`."""


class ListOf(NamedTuple):
    element: Literal["i32", "i64", "binary", "struct"]
    items: Sequence[object]
    """ints, bytes, or bytes of encoded structs."""


def zigzag(number: int) -> int:
    """A signed 64-bit integer as the unsigned one varints carry (0, -1, 1, -2... to 0, 1, 2, 3...)."""
    return (number << 1) ^ (number >> 63)


def _scalar(kind: str, value: object) -> bytes:
    if kind in ("i32", "i64"):
        assert isinstance(value, int)
        return varint(zigzag(value))
    if kind == "binary":
        assert isinstance(value, bytes)
        return varint(len(value)) + value
    assert kind == "struct"
    assert isinstance(value, bytes)
    return value


def struct(*fields: Field) -> bytes:
    """A struct's bytes: its fields (ids ascending), then the stop byte."""
    out = bytearray()
    previous = 0
    for field in fields:
        if field.value is None:
            continue
        if field.id <= previous:
            raise ValueError(f"field {field.id} after field {previous}: ids must ascend")
        code = (_TRUE if field.value else _FALSE) if field.kind == "bool" else _TYPE[field.kind]
        step = field.id - previous
        out += bytes([step << 4 | code]) if step <= 15 else bytes([code]) + varint(zigzag(field.id))
        previous = field.id
        if field.kind == "bool":
            continue
        if field.kind == "list":
            assert isinstance(field.value, ListOf)
            items, element = field.value.items, field.value.element
            size = len(items)
            out += bytes([size << 4 | _ELEMENT_TYPE[element]]) if size < 15 else bytes([0xF0 | _ELEMENT_TYPE[element]])
            if size >= 15:
                out += varint(size)
            for item in items:
                out += _scalar(element, item)
        else:
            out += _scalar(field.kind, field.value)
    out.append(0)
    return bytes(out)
