"""Failure drills: the HL ClientApp, misbehaving on purpose where you say.

Use it to see what the server does when nodes crash or send bad replies, in
simulation (the tests) or on real SuperNodes (``clientapp =
"hl_flower.drills:app"`` in ``pyproject.toml``). The environment variable
``HL_DRILL`` lists the drills, comma-separated, each
``<partition>:<mode>[:<first round>-<last round>]`` (default: every round)::

    HL_DRILL="2:crash"            # partition 2 raises on every train message
    HL_DRILL="1:crash:1-4,3:nan"  # 1 fails in server rounds 1-4 only; 3 sends NaN

Modes: ``crash`` (an exception, i.e. an error reply), ``nan`` (NaN weights),
``shape`` (a layer of the wrong shape), ``rename`` (layers renamed),
``choice`` (a next node that does not exist), ``metrics`` (no metrics).
Partitions without a drill behave exactly like ``hl_flower.client_app``.
"""

from __future__ import annotations

import os

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from . import client_app as honest
from .messages import ARRAYS, METRICS, STEP

MODES = ("crash", "nan", "shape", "rename", "choice", "metrics")

app = ClientApp()


def parse_drills(text: str) -> dict[int, tuple[str, int, int]]:
    """``HL_DRILL`` as {partition: (mode, first round, last round)}."""
    drills = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        fields = item.split(":")
        if len(fields) not in (2, 3) or fields[1] not in MODES:
            raise ValueError(f"bad HL_DRILL entry {item!r}; use "
                             f"<partition>:<{'|'.join(MODES)}>[:<first>-<last>]")
        first, last = (1, 2**31)
        if len(fields) == 3:
            first, last = (int(n) for n in fields[2].split("-"))
        drills[int(fields[0])] = (fields[1], first, last)
    return drills


def active_drill(message: Message, context: Context) -> str | None:
    """The drill this node runs for this message, if any."""
    partition, _ = honest.node_identity(context)
    drill = parse_drills(os.environ.get("HL_DRILL", "")).get(partition)
    if drill is None:
        return None
    mode, first, last = drill
    server_round = int(message.content[STEP].get("server-round", 0))
    return mode if first <= server_round <= last else None


def sabotaged(message: Message, reply: Message, mode: str) -> Message:
    """The honest reply to ``message``, broken the way ``mode`` says."""
    content = reply.content
    weights = content[ARRAYS].to_numpy_ndarrays()
    metrics = content[METRICS]
    if mode == "nan":
        weights[0] = np.full_like(weights[0], np.nan)
    elif mode == "shape":
        weights[0] = weights[0][..., :1]
    arrays = ArrayRecord(weights)
    if mode == "rename":
        arrays = ArrayRecord({f"layer-{name}": Array(array)
                              for name, array in zip(arrays.keys(), weights, strict=True)})
    if mode == "choice":
        metrics["next-nodes"] = [10**6]
    records = {ARRAYS: arrays} | ({} if mode == "metrics" else {METRICS: metrics})
    return Message(RecordDict(records), reply_to=message)


@app.train()
def train(message: Message, context: Context) -> Message:
    """Train honestly, unless a drill says to crash or spoil the reply."""
    mode = active_drill(message, context)
    if mode == "crash":
        raise RuntimeError("failure drill: this node crashes")
    reply = honest.train(message, context)
    return reply if mode is None else sabotaged(message, reply, mode)


app.query("identify")(honest.identify)
app.query("choose")(honest.choose)
