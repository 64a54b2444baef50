"""Check a node's reply before the server uses any of it.

A reply is untrusted input: a node may be buggy, out of date or hostile.
:func:`reply_problem` returns why a train reply must be rejected (or None):
an error reply, weights whose names, shapes or dtypes differ from the model
that was sent, NaN or Inf values, missing or malformed metrics, or a
next-node choice that is not a valid set of nodes.
"""

from __future__ import annotations

import math
from numbers import Real

import numpy as np
from flwr.app import ArrayRecord, Message, MetricRecord

from hl_flower.messages import ARRAYS, METRICS

NUMERIC_METRICS = ("train-loss", "time-train", "time-observe")
INTEGER_METRICS = ("num-examples", "policy-version")


def reply_problem(reply: Message, sent: ArrayRecord, num_nodes: int,
                  choices: int | None, observation_size: int) -> str | None:
    """Why ``reply`` cannot be used, or None if it can.

    ``choices`` is how many next nodes the reply must name (None when the
    node was not asked to choose); ``observation_size`` the length of the
    observation it must then send.
    """
    if reply.has_error():
        return f"error reply ({raised_message(reply.error.reason)})"
    content = reply.content
    if ARRAYS not in content.array_records:
        return "no model in the reply"
    problem = _weights_problem(content.array_records[ARRAYS], sent)
    if problem:
        return problem
    if METRICS not in content.metric_records:
        return "no metrics in the reply"
    metrics = content.metric_records[METRICS]
    problem = _metrics_problem(metrics)
    if problem or choices is None:
        return problem
    return _choice_problem(metrics, num_nodes, choices, observation_size)


def raised_message(reason: str) -> str:
    """What the node's ClientApp raised, in its own words.

    Flower wraps it (``<class '...ClientAppException'>:<'... Exception
    ClientAppException occurred. Message: <what the app raised>'>``, with a
    remote traceback in simulation); this keeps the app's message, or the
    last line of ``reason`` where the wrapping differs (deployment)."""
    text = str(reason)
    marker = "occurred. Message: "
    if marker in text:
        message = text.rsplit(marker, 1)[1].strip().removesuffix("'>").strip()
        if message:
            return one_line(f"the ClientApp raised: {message}")
    return one_line(text)


def one_line(text: str, limit: int = 160) -> str:
    """The last non-empty line of ``text`` (a remote traceback's message)."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    last = lines[-1] if lines else "no reason given"
    return last if len(last) <= limit else last[:limit - 3] + "..."


def _weights_problem(received: ArrayRecord, sent: ArrayRecord) -> str | None:
    if list(received.keys()) != list(sent.keys()):
        return (f"model has layers {list(received.keys())[:4]}..., expected "
                f"{len(sent)} layers named like the one sent")
    for name, array in received.items():
        expected = sent[name]
        if list(array.shape) != list(expected.shape) or array.dtype != expected.dtype:
            return (f"layer {name} is {array.dtype}{list(array.shape)}, expected "
                    f"{expected.dtype}{list(expected.shape)}")
        try:
            values = array.numpy()
        except Exception:  # noqa: BLE001 - any undecodable payload is a bad reply
            return f"layer {name} cannot be decoded"
        if values.shape != tuple(expected.shape) or not np.all(np.isfinite(values)):
            return f"layer {name} holds NaN or Inf (or does not match its shape)"
    return None


def _metrics_problem(metrics: MetricRecord) -> str | None:
    for key in NUMERIC_METRICS + INTEGER_METRICS:
        value = metrics.get(key)
        if not isinstance(value, Real) or isinstance(value, bool):
            return f"metric {key!r} missing or not a number"
        if not math.isfinite(value) or value < 0:
            return f"metric {key!r} is {value}"
    if any(not isinstance(metrics[key], int) for key in INTEGER_METRICS):
        return "metrics num-examples and policy-version must be integers"
    return None


def _choice_problem(metrics: MetricRecord, num_nodes: int, choices: int,
                    observation_size: int) -> str | None:
    chosen = metrics.get("next-nodes")
    if (not isinstance(chosen, list) or len(chosen) != choices
            or any(not isinstance(n, int) or isinstance(n, bool) for n in chosen)):
        return f"next-nodes {chosen!r} is not a list of {choices} node ids"
    if any(not 0 <= n < num_nodes for n in chosen) or len(set(chosen)) != len(chosen):
        return f"next-nodes {chosen} are not distinct nodes 0..{num_nodes - 1}"
    observation = metrics.get("observation")
    if (not isinstance(observation, list) or len(observation) != observation_size
            or not all(isinstance(v, Real) and math.isfinite(v) for v in observation)):
        return f"observation is not {observation_size} finite numbers"
    return None
