"""A message's whole content as one object on a deployment (hl_flower.packing)."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects
from flwr.supercore.task_identity import TaskIdentity
from test_node import CONFIG, node_context, own_data, own_model, train_message

from hl_flower.messages import ARRAYS, METRICS, POLICY, UNPACKS
from hl_flower.node import identify_reply, run_settings, train_reply, trainer_for
from hl_flower.packing import FORMAT, WIRE, is_packed, packed, unpacked
from strategies.metered_grid import MeteredGrid, Traffic

WEIGHTS = [np.arange(12, dtype=np.float32).reshape(3, 4), np.arange(5, dtype=np.int64),
           np.zeros((0, 3), np.float16), np.full((2, 1, 2), 7.5)]


@pytest.fixture(autouse=True)
def server_identity() -> None:
    """Messages are stamped with a run's identity, as inside a ServerApp."""
    TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 7, 1, 0


def content() -> RecordDict:
    return RecordDict({ARRAYS: ArrayRecord(WEIGHTS), POLICY: ArrayRecord([np.ones((2, 2))]),
                       METRICS: MetricRecord({"loss": 0.5}), "step": ConfigRecord({"k": 1})})


def test_packing_restores_every_record_exactly_as_one_object() -> None:
    original = content()
    sent = packed(original)
    assert is_packed(sent) and not is_packed(original)  # the original is not changed
    assert list(sent.keys()) == [WIRE]
    # One request per object: 4 + 1 arrays (their records, arrays and chunks;
    # equal chunks are one object), a metric and a config record were 15
    # objects with their RecordDict, now 2 (the Message adds one either way).
    assert len(get_all_nested_objects(original)) == 15
    assert len(get_all_nested_objects(sent)) == 2
    restored = unpacked(sent)
    assert list(restored.keys()) == list(original.keys())
    assert list(restored[ARRAYS].keys()) == list(original[ARRAYS].keys())
    for before, after in zip(WEIGHTS, restored[ARRAYS].to_numpy_ndarrays(), strict=True):
        assert after.dtype == before.dtype and after.shape == before.shape
        assert after.tobytes() == before.tobytes()
    assert restored[METRICS]["loss"] == 0.5 and restored["step"]["k"] == 1
    assert type(restored["step"]["k"]) is int and isinstance(restored[METRICS], MetricRecord)


def test_every_config_value_type_survives_packing() -> None:
    values = {"int": 3, "float": 0.1, "nan": float("nan"), "str": "ü", "bool": True,
              "bytes": b"\x00\xff", "ints": [1, 2], "floats": [0.5], "strs": ["a"],
              "bools": [False], "blobs": [b"x"]}
    sent = packed(RecordDict({ARRAYS: ArrayRecord(WEIGHTS[:1]),
                              "settings": ConfigRecord(values)}))
    restored = unpacked(sent)["settings"]
    for key, value in values.items():
        if key == "nan":
            assert np.isnan(restored[key])
            continue
        assert restored[key] == value and type(restored[key]) is type(value), key


def test_content_without_arrays_or_already_packed_is_left_alone() -> None:
    metrics_only = RecordDict({METRICS: MetricRecord({"a": 1})})
    assert packed(metrics_only) is metrics_only
    assert unpacked(metrics_only) is metrics_only
    once = packed(content())
    assert packed(once) is once


@pytest.mark.parametrize(("change", "says"), [
    (lambda b: b[:-1], "does not match|shorter"),
    (lambda b: b + b"\x00", "longer"),
    (lambda b: b[:5], "header"),
    (lambda b: b[:8] + b"{" + b[9:], "readable header"),
    (lambda b: b.replace(b'"<f4"', b'"|O8"', 1), "not a number"),
    (lambda b: b.replace(b'"<f4"', b'"zzz"', 1), "dtype")])
def test_packed_content_that_does_not_match_its_header_is_refused(change, says) -> None:
    sent = packed(content())
    blob = sent[WIRE]["content"]
    sent[WIRE] = ConfigRecord({"content": change(blob)})
    with pytest.raises(ValueError, match=says):
        unpacked(sent)


def test_a_node_answers_packed_only_what_came_packed() -> None:
    x, y = own_data()
    trainer = trainer_for(own_model(), x, learning_rate=0.01)
    weights = trainer.model.get_weights()
    plain = train_reply(train_message(weights, decide=True), node_context(), trainer, x, y, 2)
    message = train_message(weights, decide=True)
    message.content = packed(message.content)
    reply = train_reply(message, node_context(), trainer, x, y, 2)
    assert not is_packed(plain.content) and is_packed(reply.content)
    for a, b in zip(unpacked(reply.content)[ARRAYS].to_numpy_ndarrays(),
                    plain.content[ARRAYS].to_numpy_ndarrays(), strict=True):
        assert a.tobytes() == b.tobytes()  # same training either way
    assert WIRE not in unpacked(reply.content).config_records
    # A ClientApp reads the settings first (as the project's does): still packed.
    message = train_message(weights, decide=True)
    message.content = packed(message.content)
    assert run_settings(message) == CONFIG and not is_packed(message.content)
    assert is_packed(train_reply(message, node_context(), trainer, x, y, 2).content)


class HttpGrid:
    """Stands in for Flower's deployment grid: keeps what was pushed, answers
    each message with a packed echo of its arrays."""

    def __init__(self) -> None:
        self.pushed: list[Message] = []

    def push_messages(self, messages):
        self.pushed += messages
        return [str(i) for i, _ in enumerate(messages)]

    def pull_messages(self, message_ids):
        replies = []
        for message in self.pushed:
            if message.metadata.message_type == "query.identify":
                metrics = MetricRecord({"partition-id": 0, UNPACKS: FORMAT})
                reply = RecordDict({METRICS: metrics})
            else:
                reply = packed(unpacked(message.content))
            replies.append(Message(reply, reply_to=message))
        self.pushed = []
        return replies


def test_the_server_packs_for_nodes_that_said_they_unpack_and_counts_the_same_bytes() -> None:
    grid = MeteredGrid(HttpGrid())

    def exchange(node: int, message_type: str = "train") -> tuple[Message, Message, Traffic]:
        counted = grid.traffic
        message = Message(content(), dst_node_id=node, message_type=message_type)
        grid.push_messages([message])
        (reply,) = grid.pull_messages(["0"])
        return message, reply, grid.traffic - counted

    sent, reply, plain_traffic = exchange(4)
    assert not is_packed(sent.content)  # node 4 has not said it unpacks
    exchange(4, "query.identify")
    assert grid.unpacking_nodes == {4}
    sent, reply, packed_traffic = exchange(4)
    assert is_packed(sent.content)
    assert not is_packed(reply.content)  # restored for the strategy
    assert reply.content[ARRAYS].to_numpy_ndarrays()[0].tobytes() == WEIGHTS[0].tobytes()
    assert packed_traffic == plain_traffic
    sent, _, _ = exchange(5)
    assert not is_packed(sent.content)  # another node, not asked


def test_identify_reply_says_the_node_unpacks() -> None:
    reply = identify_reply(Message(RecordDict(), dst_node_id=1, message_type="query.identify"),
                           node_context(), 2, 3)
    assert reply.content[METRICS][UNPACKS] == FORMAT
