"""A message's whole content travels as one object on a deployment.

Flower 1.42 moves a message as objects, one HTTP request per object between
each pair of processes (ServerApp -> SuperLink -> SuperNode -> ClientApp and
back): the message, its ``RecordDict``, every record, and for an
``ArrayRecord`` of L arrays 2L more (each array and its chunk). A train
message with a model of 8 arrays, the run settings and the step is 22
objects (30 with a 6-array policy), and on a small machine each request
costs milliseconds, so the number of objects, not their bytes, sets a
deployed step's time.

:func:`packed` gives a copy of a message's content as a single
``ConfigRecord`` named :data:`WIRE` whose one ``bytes`` value holds every
record: a JSON header (each record's name and kind; for array records each
array's key, dtype and shape) followed by the arrays' raw bytes and the other
records in Flower's own serialization (``ConfigRecord.deflate``). The message
is then 3 objects. :func:`unpacked` restores the records exactly (same
names, order, keys, dtypes, shapes, bytes and value types). Content without
:data:`WIRE` is left as it is, so a ClientApp or server that does not pack
still interoperates. The server packs what it sends on a deployment to nodes
that said they unpack this :data:`FORMAT` (``MeteredGrid``); a node packs
its reply when the message it answers was packed (``hl_flower.node``).
Nothing is unpickled: the header is JSON, the arrays are raw bytes read with
the dtype the header names (numeric dtypes only), the rest is protobuf.
"""

from __future__ import annotations

import json
import struct
import weakref

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

WIRE = "hl.wire"  # ConfigRecord {"content": bytes}: the whole packed content
FORMAT = 2  # what a node's identify reply says it unpacks (metric ``unpacks``)
_LENGTH = struct.Struct("<Q")  # bytes of the JSON header
_KINDS = {"config": ConfigRecord, "metric": MetricRecord}
_OPENED: weakref.WeakSet[Message] = weakref.WeakSet()  # messages that came packed


def open_message(message: Message) -> bool:
    """Restore a received message's content in place (:func:`unpacked`);
    returns whether it arrived packed, also when it was opened before (so a
    node reads its settings first and still answers packed). Raises
    ValueError as :func:`unpacked` does."""
    if is_packed(message.content):
        message.content = unpacked(message.content)
        _OPENED.add(message)
    return message in _OPENED


def is_packed(content: RecordDict) -> bool:
    """Whether ``content`` is a packed content."""
    return WIRE in content.config_records


def packed(content: RecordDict) -> RecordDict:
    """A copy of ``content`` as one ``ConfigRecord`` (``content`` itself when
    it holds no array record, or is packed already)."""
    if is_packed(content) or not content.array_records:
        return content
    header, parts = [], []
    for name, record in content.items():
        if isinstance(record, ArrayRecord):
            arrays = {key: array.numpy() for key, array in record.items()}
            header.append([name, "arrays", [[key, value.dtype.str, list(value.shape)]
                                            for key, value in arrays.items()]])
            parts.extend(np.ascontiguousarray(value).tobytes() for value in arrays.values())
            continue
        kind = "config" if isinstance(record, ConfigRecord) else "metric"
        body = record.deflate()
        header.append([name, kind, len(body)])
        parts.append(body)
    head = json.dumps(header).encode()
    return RecordDict({WIRE: ConfigRecord(
        {"content": b"".join([_LENGTH.pack(len(head)), head, *parts])})})


def unpacked(content: RecordDict) -> RecordDict:
    """The content :func:`packed` packed, restored (``content`` itself when
    it is not packed).

    Raises ValueError when the bytes do not match their header.
    """
    if not is_packed(content):
        return content
    blob = content.config_records[WIRE]["content"]
    if not isinstance(blob, bytes) or len(blob) < _LENGTH.size:
        raise ValueError("packed content is not bytes with a header")
    (length,) = _LENGTH.unpack_from(blob)
    offset = _LENGTH.size + length
    try:
        header = json.loads(blob[_LENGTH.size:offset])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("packed content has no readable header") from None
    result = RecordDict()
    for name, kind, layout in header:
        if kind == "arrays":
            result[name], offset = _arrays(name, blob, offset, layout)
            continue
        end = offset + int(layout)
        if kind not in _KINDS or end > len(blob):
            raise ValueError(f"packed record {name!r} does not match its header")
        result[name] = _KINDS[kind].inflate(blob[offset:end])
        offset = end
    if offset != len(blob):
        raise ValueError("packed content is longer than its header says")
    return result


def _arrays(name: str, blob: bytes, offset: int, layout: list) -> tuple[ArrayRecord, int]:
    """The arrays of one packed record from ``offset``, and the offset after."""
    arrays = {}
    for key, dtype, shape in layout:
        try:
            kind = np.dtype(dtype)
        except TypeError:
            raise ValueError(f"packed record {name!r} names dtype {dtype!r}") from None
        if kind.kind not in "biuf":
            raise ValueError(f"packed record {name!r} names dtype {dtype!r}, not a number")
        count = int(np.prod(shape, dtype=np.int64))
        size = kind.itemsize * count
        if offset + size > len(blob):
            raise ValueError(f"packed record {name!r} is shorter than its header")
        arrays[key] = Array(np.frombuffer(blob, kind, count=count, offset=offset)
                            .reshape(shape).copy())
        offset += size
    return ArrayRecord(arrays), offset
