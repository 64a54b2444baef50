"""Bytes on the wire are what went through Flower's grid, both directions.

A real simulation (in this process) runs HL-greedy, RandomHop and FedAvg for
a few steps on digits; a spy under the strategies' metered grid records every
message pushed and every reply pulled. The reported bytes must equal the
payloads the spy saw, and match the model and policy sizes step by step.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from flwr.app import Context, Message
from flwr.serverapp import Grid, ServerApp

from hl_flower.compare import run_comparison
from hl_flower.config import HLConfig
from hl_flower.dqn import DQNAgent
from hl_flower.messages import ARRAYS, POLICY
from hl_flower.simulation import simulate
from strategies import MeteredGrid

pytestmark = pytest.mark.slow  # real simulations or processes

CONFIG = HLConfig(dataset="digits", num_nodes=3, main_samples=100, other_samples=50,
                  max_steps=3, learning_rate=0.005)


class SpyGrid(MeteredGrid):
    """Forwards to the real grid and keeps every message it carried."""

    def __init__(self, grid: Grid) -> None:
        super().__init__(grid)
        self.carried: list[Message] = []

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        messages = list(messages)
        self.carried += messages
        return self.inner.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        replies = list(self.inner.pull_messages(message_ids))
        self.carried += replies
        return replies


def array_bytes(message: Message, key: str | None = None) -> int:
    """Serialised array bytes in a message (one record, or all)."""
    records = message.content.array_records
    return sum(len(array.data) for name, record in records.items()
               if key in (None, name) for array in record.values())


@pytest.fixture(scope="module")
def observed() -> dict:
    seen: dict = {}
    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        spy = SpyGrid(grid)
        agent = DQNAgent(CONFIG, seed=0)
        runs, curves = run_comparison(
            MeteredGrid(spy), CONFIG, agent, ["HL-greedy", "RandomHop", "FedAvg"], [1])
        seen.update(runs=runs, curves=curves, carried=spy.carried)

    simulate(server_app, CONFIG.num_nodes)
    assert seen, "the ServerApp did not finish"
    return seen


def test_reported_bytes_equal_the_payloads_that_travelled(observed: dict) -> None:
    reported = sum(run.bytes_sent for run in observed["runs"])
    assert reported > 0
    assert reported == sum(array_bytes(m) for m in observed["carried"])


def test_hop_steps_move_the_model_twice_and_the_policy_once_per_node(
        observed: dict) -> None:
    carried = observed["carried"]
    model = max(array_bytes(m, ARRAYS) for m in carried)
    policies = [m for m in carried if POLICY in m.content.array_records]
    policy = array_bytes(policies[0], POLICY)
    runs = {run.method: run for run in observed["runs"]}
    hl, hop, fedavg = runs["HL-greedy"], runs["RandomHop"], runs["FedAvg"]
    nodes_visited = len(set(hl.path.split()))
    assert len(policies) == nodes_visited  # sent once to each holder, never again
    assert hl.bytes_sent == 2 * hl.steps * model + nodes_visited * policy
    assert hop.bytes_sent == 2 * hop.steps * model
    assert fedavg.bytes_sent == 2 * CONFIG.num_nodes * fedavg.steps * model
    assert hl.model_transfers == 2 * hl.steps


def test_curves_accumulate_the_same_bytes(observed: dict) -> None:
    for run in observed["runs"]:
        last = [p for p in observed["curves"] if p.method == run.method][-1]
        assert last.cumulative_bytes == run.bytes_sent
        assert last.step == run.steps
