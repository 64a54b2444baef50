"""Which node serves which partition (strategies/travelling.py): duplicates,
nodes without a partition, nodes that are missing, asked once each."""

from __future__ import annotations

import logging

import pytest
from flwr.app import Error, Message, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from hl_flower.distance import reference_distance
from hl_flower.messages import METRICS
from strategies import NodeFailure, RoundRobin

NO_PARTITION = "<class 'ClientAppException'>:<'Exception ClientAppException occurred. " \
               "Message: this SuperNode has no partition: start it with --node-config'>"


@pytest.fixture(autouse=True)
def server_identity() -> None:
    """Messages are stamped with the run's identity, as inside a ServerApp."""
    TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 7, 1, 0


class IdentityGrid:
    """Connected node ids and what each answers to ``query.identify``:
    (partition, partitions), or None for a node without a partition."""

    def __init__(self, claims: dict[int, tuple[int, int] | None]) -> None:
        self.claims = claims
        self.asked: list[int] = []

    def get_node_ids(self) -> list[int]:
        return list(self.claims)

    def send_and_receive(self, messages, timeout=None) -> list[Message]:
        replies = []
        for message in messages:
            node = message.metadata.dst_node_id
            self.asked.append(node)
            claim = self.claims[node]
            if claim is None:
                replies.append(Message(Error(code=0, reason=NO_PARTITION), reply_to=message))
                continue
            metrics = MetricRecord({"partition-id": claim[0], "num-partitions": claim[1],
                                    "policy-version": 0})
            replies.append(Message(RecordDict({METRICS: metrics}), reply_to=message))
        return replies


def rule(num_nodes: int = 3) -> RoundRobin:
    return RoundRobin(num_nodes=num_nodes, distance=reference_distance(num_nodes))


def test_every_partition_is_found_once_and_nobody_is_asked_again() -> None:
    grid = IdentityGrid({11: (0, 3), 12: (1, 3), 13: (2, 3)})
    strategy = rule()
    strategy.discover_nodes(grid, wait=1.0)
    assert strategy.node_ids == {0: 11, 1: 12, 2: 13}
    for server_round in range(1, 6):
        strategy.refresh_nodes(grid, server_round)
    assert sorted(grid.asked) == [11, 12, 13]


def test_a_second_node_for_a_partition_gets_one_warning_and_is_not_used(
        caplog: pytest.LogCaptureFixture) -> None:
    grid = IdentityGrid({11: (0, 3), 12: (1, 3), 13: (2, 3), 14: (1, 3)})
    strategy = rule()
    with caplog.at_level(logging.WARNING, logger="flwr"):
        strategy.discover_nodes(grid, wait=1.0)
        for server_round in range(1, 6):
            strategy.refresh_nodes(grid, server_round)
    assert strategy.node_ids == {0: 11, 1: 12, 2: 13}
    warnings = [r.getMessage() for r in caplog.records if "both serve" in r.getMessage()]
    assert warnings == ["nodes 12 and 14 both serve partition 1; using node 12, "
                        "ignoring node 14"]
    assert grid.asked.count(14) == 1


def test_the_duplicate_takes_over_when_the_first_node_leaves() -> None:
    grid = IdentityGrid({11: (0, 3), 12: (1, 3), 13: (2, 3), 14: (1, 3)})
    strategy = rule()
    strategy.discover_nodes(grid, wait=1.0)
    del grid.claims[12]
    strategy.refresh_nodes(grid, 1)
    assert strategy.node_ids[1] == 14


def test_a_node_without_a_partition_is_skipped_when_the_others_serve_them_all(
        caplog: pytest.LogCaptureFixture) -> None:
    grid = IdentityGrid({11: (0, 3), 12: (1, 3), 13: (2, 3), 15: None})
    strategy = rule()
    with caplog.at_level(logging.WARNING, logger="flwr"):
        strategy.discover_nodes(grid, wait=1.0)
        strategy.refresh_nodes(grid, 1)
    assert strategy.node_ids == {0: 11, 1: 12, 2: 13}
    warnings = [r.getMessage() for r in caplog.records if "node 15" in r.getMessage()]
    assert len(warnings) == 1 and "has no partition" in warnings[0]
    assert grid.asked.count(15) == 1


def test_too_few_nodes_fail_after_the_grace_period_naming_the_fix() -> None:
    strategy = rule(4)
    with pytest.raises(NodeFailure, match=r"only 3 of 4 nodes connected within 0.5 s; "
                                          r"in simulation give --federation-config "
                                          r"\"num-supernodes=4\""):
        strategy.discover_nodes(IdentityGrid({11: (0, 4), 12: (1, 4), 13: (2, 4)}),
                                wait=0.5)


def test_nodes_that_serve_no_missing_partition_name_why() -> None:
    grid = IdentityGrid({11: (0, 3), 12: (1, 3), 14: (1, 3)})
    with pytest.raises(NodeFailure, match=r"no node serves partition\(s\) \[2\] of 3 "
                                          r"\(ignored: nodes 12 and 14 both serve"):
        rule().discover_nodes(grid, wait=0.5)


def test_a_node_of_another_federation_stops_the_start() -> None:
    with pytest.raises(NodeFailure, match="serves partition 0 of 5, but the run has 3 "
                                          "nodes; to use such nodes give --nodes 5"):
        rule().discover_nodes(IdentityGrid({11: (0, 5)}), wait=0.5)


class SuperLinkAnswersGrid(IdentityGrid):
    """As a deployment's grid: messages get ids when pushed, and the
    SuperLink itself (node id 1) answers for a node that is gone."""

    def send_and_receive(self, messages, timeout=None) -> list[Message]:
        for message in messages:
            message.metadata.__dict__["_message_id"] = message.object_id
        replies = super().send_and_receive(messages, timeout)
        for reply in replies:
            if reply.has_error():
                reply.metadata.__dict__["_src_node_id"] = 1
        return replies


def test_a_node_the_superlink_answers_for_is_named_by_its_own_id(
        caplog: pytest.LogCaptureFixture) -> None:
    grid = SuperLinkAnswersGrid({11: (0, 3), 12: (1, 3), 13: (2, 3), 15: None})
    strategy = rule()
    with caplog.at_level(logging.WARNING, logger="flwr"):
        strategy.discover_nodes(grid, wait=1.0)
    warnings = [r.getMessage() for r in caplog.records if "cannot serve" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith("node 15 cannot serve"), warnings
    assert 15 in strategy.ignored_nodes and 1 not in strategy.ignored_nodes
