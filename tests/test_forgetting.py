"""A travelling model that forgets less (issue 19, item 4): FedProx's proximal
term on the holders' epochs (``--proximal-mu``) and the path average the
server adopts (``--path-average``), for HL and the hop baselines.

The rounds run on a metered grid whose nodes "train" by adding a known step
to the model, so what the server sends, adopts, evaluates and counts can be
checked exactly; the slow test runs the real thing on digits.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from hl_flower.config import HLConfig
from hl_flower.distance import reference_distance
from hl_flower.dqn import DQNAgent
from hl_flower.messages import ARRAYS, METRICS, PROXIMAL_MU, STEP
from strategies import HomogeneousLearning, MeteredGrid, RandomHop, RoundRobin, Standalone
from strategies.metered_grid import traffic_of
from strategies.travelling import TravellingModel, path_average_step

NODE_IDS = [101, 202, 303]  # partition i is served by NODE_IDS[i]


@pytest.fixture(autouse=True)
def server_identity() -> None:
    """Messages are stamped with the run's identity, as inside a ServerApp."""
    TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 7, 1, 0


# --- the average itself -------------------------------------------------------

def test_the_path_average_is_an_ema_that_keeps_dtypes_and_integer_arrays() -> None:
    first = [np.array([1.0, 2.0], np.float32), np.array([[4.0]]), np.array([1], np.int64)]
    second = [np.array([3.0, 6.0], np.float32), np.array([[0.0]]), np.array([2], np.int64)]
    average = path_average_step(None, first, 0.75)  # avg_1 = w_1
    assert all(np.array_equal(a, w) and a.dtype == w.dtype and a is not w
               for a, w in zip(average, first, strict=True))
    average = path_average_step(average, second, 0.75)
    np.testing.assert_array_equal(average[0], [1.5, 3.0])  # 0.75 * 1 + 0.25 * 3, ...
    np.testing.assert_array_equal(average[1], [[3.0]])
    np.testing.assert_array_equal(average[2], [2])  # an integer array: w_t's
    assert [a.dtype for a in average] == [np.float32, np.float64, np.int64]
    np.testing.assert_array_equal(first[0], [1.0, 2.0])  # inputs untouched


def test_decay_zero_gives_the_returned_model() -> None:
    rng = np.random.default_rng(0)
    past = [rng.normal(size=(3, 4)).astype(np.float32)]
    model = [rng.normal(size=(3, 4)).astype(np.float32)]
    assert np.array_equal(path_average_step(past, model, 0.0)[0], model[0])


@pytest.mark.parametrize("decay", [1.0, -0.1, float("nan")])
def test_a_decay_outside_0_1_is_refused(decay: float) -> None:
    with pytest.raises(ValueError, match=r"decay must be in \[0, 1\)"):
        path_average_step(None, [np.zeros(2)], decay)


def test_an_average_of_another_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="different shapes"):
        path_average_step([np.zeros(2)], [np.zeros(3)], 0.5)


# --- rounds on a grid of known nodes --------------------------------------------

class TrainingGrid(MeteredGrid):
    """A metered grid (bytes counted as on the real one) whose node i
    "trains" by adding i + 1 to every float array and 1 to the integer
    array (a step counter), and keeps every train message it was sent."""

    def __init__(self) -> None:
        super().__init__(grid=None)  # type: ignore[arg-type]  # nothing inside
        self.sent: list[Message] = []

    def get_node_ids(self) -> list[int]:
        return list(NODE_IDS)

    def send_and_receive(self, messages, *, timeout=None) -> list[Message]:
        messages = list(messages)
        self.sent += messages
        replies = [self.reply(m) for m in messages]
        self.traffic += traffic_of(messages) + traffic_of(replies)
        return replies

    @staticmethod
    def reply(message: Message) -> Message:
        node = NODE_IDS.index(message.metadata.dst_node_id)
        trained = [w + (node + 1 if w.dtype.kind == "f" else 1)
                   for w in message.content[ARRAYS].to_numpy_ndarrays()]
        metrics = MetricRecord({"train-loss": 1.0, "time-train": 0.1, "time-observe": 0.0,
                                "num-examples": 10, "policy-version": 0,
                                "partition-id": node})
        return Message(RecordDict({ARRAYS: ArrayRecord(trained), METRICS: metrics}),
                       reply_to=message)


def start_model() -> list[np.ndarray]:
    return [np.zeros((2, 2), np.float32), np.zeros(3, np.float32), np.zeros(1, np.int64)]


def play(rule: type[TravellingModel], episodes: int = 1, steps: int = 4, **options: float
         ) -> tuple[TrainingGrid, list[list[np.ndarray]], list[int]]:
    """Episodes of ``rule`` on a :class:`TrainingGrid`; returns the grid, the
    models the server evaluated and the bytes of each step."""
    strategy = rule(num_nodes=3, distance=reference_distance(3), max_steps=steps,
                    **options)
    strategy.node_ids = dict(enumerate(NODE_IDS))
    grid, evaluated, step_bytes = TrainingGrid(), [], []

    def evaluate(arrays: ArrayRecord) -> float:
        evaluated.append(arrays.to_numpy_ndarrays())
        return 0.0  # never the goal: every step is played

    server_round = 0
    for episode in range(episodes):
        _, server_round = strategy.run_episode(
            grid, episode, ArrayRecord(start_model()), evaluate, server_round,
            on_step=lambda step: step_bytes.append(step.bytes_sent))
    return grid, evaluated, step_bytes


def received(message: Message) -> list[np.ndarray]:
    return message.content[ARRAYS].to_numpy_ndarrays()


def test_the_server_adopts_the_path_average_and_sends_it_on() -> None:
    decay = 0.5
    grid, evaluated, _ = play(RoundRobin, path_average=decay)  # nodes 0, 1, 2, 0
    average, expected = None, []
    for step, message in enumerate(grid.sent):
        assert [int(m) for m in received(message)[2]] == [step]  # the counter went on
        returned = TrainingGrid.reply(message).content[ARRAYS].to_numpy_ndarrays()
        average = [(r if a is None else decay * a + (1 - decay) * r)
                   for a, r in zip(average or [None] * 3, returned, strict=True)]
        average[2] = returned[2]  # integer arrays are the holder's
        expected.append(average)
    assert len(evaluated) == 4
    for step, (model, mean) in enumerate(zip(evaluated, expected, strict=True)):
        for array, value in zip(model, mean, strict=True):
            np.testing.assert_allclose(array, value)
            assert array.dtype == value.dtype
        if step + 1 < len(grid.sent):  # the next holder trains the average
            for sent, array in zip(received(grid.sent[step + 1]), model, strict=True):
                assert np.array_equal(sent, array)
    # Float arrays: 1; 0.5 * 1 + 0.5 * (1 + 2) = 2; 0.5 * 2 + 0.5 * (2 + 3) = 3.5;
    # 0.5 * 3.5 + 0.5 * (3.5 + 1) = 4
    assert [float(m[0][0, 0]) for m in evaluated] == [1.0, 2.0, 3.5, 4.0]


def test_without_the_option_the_holders_model_travels_as_it_is() -> None:
    for off in ({}, {"path_average": 0.0}):
        grid, evaluated, _ = play(RoundRobin, **off)
        assert [float(m[0][0, 0]) for m in evaluated] == [1.0, 3.0, 6.0, 7.0]
        for model, message in zip(evaluated, grid.sent[1:], strict=False):
            assert all(np.array_equal(a, b) for a, b in zip(received(message), model,
                                                            strict=True))


def test_the_path_average_starts_again_each_episode_and_costs_no_bytes() -> None:
    _, averaged, averaged_bytes = play(Standalone, episodes=2, steps=3, path_average=0.9)
    _, plain, plain_bytes = play(Standalone, episodes=2, steps=3)
    first, second = averaged[:3], averaged[3:]
    assert [float(m[1][0]) for m in first] == [float(m[1][0]) for m in second]
    assert float(second[0][1][0]) == 1.0  # avg_1 = w_1, nothing of the last episode
    assert [float(m[1][0]) for m in first] != [float(m[1][0]) for m in plain[:3]]
    assert averaged_bytes == plain_bytes and len(plain_bytes) == 6 and min(plain_bytes) > 0


@pytest.mark.parametrize("rule", [RandomHop, RoundRobin, Standalone])
def test_the_hop_rules_send_mu_to_every_holder_only_when_it_is_set(
        rule: type[TravellingModel]) -> None:
    grid, _, _ = play(rule, proximal_mu=0.25)
    assert len(grid.sent) == 4
    assert all(message.content[STEP][PROXIMAL_MU] == 0.25 for message in grid.sent)
    plain, _, _ = play(rule)
    assert all(PROXIMAL_MU not in message.content[STEP] for message in plain.sent)


def test_hl_sends_mu_in_its_step_config_and_nothing_new_without_it() -> None:
    def step_settings(**settings: float) -> dict:
        config = HLConfig(num_nodes=3, dqn_hidden_1=8, dqn_hidden_2=8, **settings)
        hl = HomogeneousLearning.from_config(config, reference_distance(3),
                                             agent=DQNAgent(config, seed=0))
        return hl.step_settings(0, 1, 1.0)

    assert step_settings(proximal_mu=0.01)[PROXIMAL_MU] == 0.01
    assert set(step_settings()) == {"decide", "policy-version", "keep-policy"}


def test_the_settings_reach_every_travelling_strategy() -> None:
    config = HLConfig(num_nodes=3, proximal_mu=0.1, path_average=0.5)
    for rule in (RandomHop, RoundRobin, Standalone):
        strategy = rule.from_config(config, reference_distance(3))
        assert (strategy.proximal_mu, strategy.path_average) == (0.1, 0.5)


# --- the real thing ---------------------------------------------------------------

# 4 steps, well above chance. The nodes of one simulation keep the policy from
# one run to the next, so here it travels with every decision instead (a
# budget too small for copies on the nodes): every run sends the same bytes.
DIGITS = HLConfig(dataset="digits", num_nodes=4, partition="iid", learning_rate=0.01,
                  episodes=1, max_steps=4, goal=0.99, node_policy_budget_mb=1e-3)
RUNS = {"plain": {}, "proximal": {"proximal_mu": 1.0}, "average": {"path_average": 0.5}}


@pytest.fixture(scope="module")
def digits_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict]]:
    """steps.csv of one HL episode on digits, plain, with a proximal term and
    with a path average, trained one after the other in one real simulation
    (this process); the same seed, so the same starter and path."""
    from flwr.app import Context
    from flwr.serverapp import Grid, ServerApp

    from hl_flower.server_app import run_hl
    from hl_flower.simulation import simulate

    out = tmp_path_factory.mktemp("forgetting")
    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        for name, changes in RUNS.items():
            (out / name).mkdir()
            run_hl(grid, DIGITS.replace(**changes), out / name)

    simulate(server_app, DIGITS.num_nodes)
    steps = {}
    for name in RUNS:
        with (out / name / "steps.csv").open() as handle:
            steps[name] = list(csv.DictReader(handle))
    return steps


def column(rows: list[dict], name: str) -> list[str]:
    return [row[name] for row in rows]


@pytest.mark.slow
def test_hl_nodes_apply_mu_and_the_server_adopts_the_average_at_no_cost(
        digits_runs: dict[str, list[dict]]) -> None:
    plain = digits_runs["plain"]
    assert len(plain) == 4
    for name in ("proximal", "average"):
        run = digits_runs[name]
        assert column(run, "holder") == column(plain, "holder"), name
        assert column(run, "bytes_sent") == column(plain, "bytes_sent"), name
        assert column(run, "model_transfers") == column(plain, "model_transfers"), name
        assert column(run, "accuracy") != column(plain, "accuracy"), name
    # The first holder trained the same received model differently with mu
    assert digits_runs["proximal"][0]["train_loss"] != plain[0]["train_loss"]
    # The average equals the first model at step 1 (avg_1 = w_1), then departs
    average = digits_runs["average"]
    assert average[0]["accuracy"] == plain[0]["accuracy"]
    assert column(average, "accuracy")[1:] != column(plain, "accuracy")[1:]
