"""Each model or policy travels as one array on a deployment.

Flower 1.42 moves a message as objects, one HTTP request per object between
each pair of processes (ServerApp -> SuperLink -> SuperNode -> ClientApp and
back), and an ``ArrayRecord`` of L arrays is 2L + 1 objects (the record, each
array and its chunk). A model of 8 arrays with a 6-array policy is 30 objects
per message, and on a small machine each request costs milliseconds, so the
number of objects, not their bytes, sets a deployed step's time.

:func:`packed` gives a copy of a message's content whose every
``ArrayRecord`` holds a single ``uint8`` array (the arrays' bytes one after
the other), with each array's key, dtype and shape in a ``ConfigRecord``
named :data:`LAYOUT`; :func:`unpacked` restores the records exactly (same
keys, order, dtypes, shapes and bytes). Content without :data:`LAYOUT` is left as
it is, so a ClientApp or server that does not pack still interoperates.
The server packs what it sends on a deployment (``MeteredGrid``); a node
packs its reply when the message it answers was packed (``hl_flower.node``).
"""

from __future__ import annotations

import json

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

LAYOUT = "hl.packed"  # ConfigRecord: record name -> JSON list of [key, dtype, shape]
PACKED_KEY = "packed"  # the one array of a packed record


def is_packed(content: RecordDict) -> bool:
    """Whether ``content`` carries packed array records."""
    return LAYOUT in content.config_records


def packed(content: RecordDict) -> RecordDict:
    """A copy of ``content`` with every array record in its one-array form
    (``content`` itself when there is nothing to pack)."""
    if is_packed(content) or not content.array_records:
        return content
    result, layout = RecordDict(), {}
    for name, record in content.items():
        if not isinstance(record, ArrayRecord):
            result[name] = record
            continue
        arrays = {key: array.numpy() for key, array in record.items()}
        layout[name] = json.dumps([[key, value.dtype.str, list(value.shape)]
                                   for key, value in arrays.items()])
        blob = b"".join(np.ascontiguousarray(value).tobytes() for value in arrays.values())
        result[name] = ArrayRecord({PACKED_KEY: Array(np.frombuffer(blob, np.uint8))})
    result[LAYOUT] = ConfigRecord(layout)
    return result


def unpacked(content: RecordDict) -> RecordDict:
    """A copy of ``content`` with the array records :func:`packed` packed
    restored (``content`` itself when nothing is packed).

    Raises ValueError when a layout does not match the bytes received.
    """
    if not is_packed(content):
        return content
    layout = content.config_records[LAYOUT]
    result = RecordDict()
    for name, record in content.items():
        if name == LAYOUT:
            continue
        result[name] = _restored(name, record, str(layout[name])) if name in layout else record
    return result


def _restored(name: str, record: ArrayRecord, layout: str) -> ArrayRecord:
    """The arrays of one packed record, as its layout describes them."""
    blob = record[PACKED_KEY].numpy().tobytes()
    arrays, offset = {}, 0
    for key, dtype, shape in json.loads(layout):
        count = int(np.prod(shape, dtype=np.int64))
        size = np.dtype(dtype).itemsize * count
        if offset + size > len(blob):
            raise ValueError(f"packed record {name!r} is shorter than its layout")
        arrays[key] = Array(np.frombuffer(blob, dtype, count=count, offset=offset)
                            .reshape(shape).copy())
        offset += size
    if offset != len(blob):
        raise ValueError(f"packed record {name!r} is longer than its layout")
    return ArrayRecord(arrays)
