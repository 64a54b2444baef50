"""HomogeneousLearning's round construction: one message, to the chosen node,
with the policy only when the node's copy is stale."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, MessageType
from flwr.supercore.task_identity import TaskIdentity

from hl_flower.config import HLConfig
from hl_flower.distance import reference_distance
from hl_flower.dqn import DQNAgent, policy_fingerprint
from hl_flower.messages import ARRAYS, POLICY, STEP
from strategies.hl import HomogeneousLearning

NODE_IDS = {0: 1001, 1: 2002, 2: 3003, 3: 4004}


@pytest.fixture(autouse=True)
def server_identity() -> None:
    """Messages are stamped with the run's identity, as inside a ServerApp."""
    TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 7, 1, 0


@pytest.fixture()
def strategy() -> HomogeneousLearning:
    config = HLConfig(num_nodes=4, dqn_hidden_1=8, dqn_hidden_2=8)
    hl = HomogeneousLearning.from_config(config, reference_distance(4),
                                         agent=DQNAgent(config, seed=0))
    hl.node_ids = dict(NODE_IDS)
    return hl


def step_config(decide: bool = True, version: int = 1) -> ConfigRecord:
    return ConfigRecord({"episode": 0, "step": 2, "epsilon": 1.0,
                         "policy-version": version, "decide": decide})


def test_round_sends_one_message_to_the_chosen_node(strategy: HomogeneousLearning) -> None:
    arrays = ArrayRecord([np.ones((3, 3), np.float32)])
    strategy.selected = [2]
    messages = list(strategy.configure_train(5, arrays, step_config(), grid=None))
    assert len(messages) == 1
    message = messages[0]
    assert message.metadata.dst_node_id == NODE_IDS[2]
    assert message.metadata.message_type == MessageType.TRAIN
    assert np.array_equal(message.content[ARRAYS].to_numpy_ndarrays()[0], np.ones((3, 3)))
    assert message.content[STEP]["step"] == 2


def test_policy_is_not_resent_to_a_current_node(strategy: HomogeneousLearning) -> None:
    arrays = ArrayRecord([np.zeros(2, np.float32)])
    strategy.selected = [1]
    first = list(strategy.configure_train(1, arrays, step_config(), None))[0]
    assert POLICY in first.content.array_records
    sent = first.content[POLICY].to_numpy_ndarrays()
    assert all(np.array_equal(a, b) for a, b in zip(sent, strategy.agent.get_weights(),
                                                     strict=True))
    again = list(strategy.configure_train(2, arrays, step_config(), None))[0]
    assert POLICY not in again.content.array_records
    # A new policy version makes every copy stale again.
    strategy.policy_version += 1
    newer = list(strategy.configure_train(3, arrays, step_config(version=2), None))[0]
    assert POLICY in newer.content.array_records


def test_k_nodes_get_k_messages_and_no_policy(strategy: HomogeneousLearning) -> None:
    arrays = ArrayRecord([np.zeros(2, np.float32)])
    strategy.selected = [3, 0]
    messages = list(strategy.configure_train(1, arrays, step_config(decide=False), None))
    assert [m.metadata.dst_node_id for m in messages] == [NODE_IDS[3], NODE_IDS[0]]
    assert all(POLICY not in m.content.array_records for m in messages)


def test_flower_evaluation_rounds_are_empty(strategy: HomogeneousLearning) -> None:
    arrays = ArrayRecord([np.zeros(2, np.float32)])
    assert list(strategy.configure_evaluate(1, arrays, ConfigRecord(), None)) == []
    assert strategy.aggregate_evaluate(1, []) is None


def test_loaded_weights_get_their_own_policy_version(strategy: HomogeneousLearning) -> None:
    """After weights are loaded into the agent (a resumed run), the version the
    nodes are told names those weights, not the fresh network's."""
    fresh = strategy.policy_version
    strategy.agent.set_weights([w + 0.5 for w in strategy.agent.get_weights()])
    strategy.refresh_policy_version()
    assert strategy.policy_version != fresh
    assert strategy.policy_version == policy_fingerprint(strategy.agent.get_weights())


def test_k_models_are_averaged_as_fedavg_does_batchnorm_statistics_too() -> None:
    from strategies.travelling import average_models

    first = [np.array([[1.0, 2.0]], np.float32), np.array([0.0, 4.0], np.float32)]
    second = [np.array([[3.0, 6.0]], np.float32), np.array([2.0, 8.0], np.float32)]
    weighted = average_models([first, second], [100, 300])  # 1:3 by sample count
    np.testing.assert_allclose(weighted[0], [[2.5, 5.0]])
    np.testing.assert_allclose(weighted[1], [1.5, 7.0])  # e.g. a moving variance
    equal = average_models([first, second], [50, 50])
    assert all(a.dtype == np.float32 for a in weighted + equal)
    assert all(np.array_equal(a, np.mean([f, s], axis=0))
               for a, f, s in zip(equal, first, second, strict=True))


def test_strategies_are_built_from_keyword_arguments_without_a_run_config() -> None:
    from flwr.serverapp.strategy import FedAvg

    from hl_flower.reward import paper_reward
    from strategies import FlowerBaseline, NearestUnvisited

    agent = DQNAgent(HLConfig(num_nodes=5, dqn_hidden_1=8, dqn_hidden_2=8), seed=0)
    hl = HomogeneousLearning(agent, num_nodes=5, distance=reference_distance(5),
                             goal=0.7, max_steps=9, starter=3,
                             node_settings={"learning-rate": 0.01})
    assert (hl.goal, hl.max_steps, hl.starter, hl.k) == (0.7, 9, 3, 1)
    assert hl.reward_fn(0.7, 0.0, 0.05) == pytest.approx(paper_reward(0.7)(0.7, 0.0, 0.05))
    sent = dict(hl.run_settings)  # the nodes read these
    assert sent["learning-rate"] == 0.01 and sent["num-nodes"] == 5
    assert sent["observation"] == "reference" and sent["pca-components"] == 10
    rule = NearestUnvisited(num_nodes=5, distance=reference_distance(5), starter=3)
    rule.begin_episode(0)
    assert rule.selected == [3] and rule.visited == {3}
    fedavg = FlowerBaseline(FedAvg(fraction_train=0.4), num_nodes=5, max_steps=3)
    assert (fedavg.num_nodes, fedavg.max_steps, fedavg.distance) == (5, 3, None)


def test_from_config_gives_the_run_settings_to_the_strategy_and_the_nodes() -> None:
    from hl_flower.config import to_flat

    config = HLConfig(num_nodes=4, goal=0.6, starter=2, k=2, reward="gain",
                      dqn_hidden_1=8, dqn_hidden_2=8, learning_rate=0.004)
    hl = HomogeneousLearning.from_config(config, reference_distance(4),
                                         agent=DQNAgent(config, seed=0))
    assert (hl.goal, hl.starter, hl.k) == (0.6, 2, 2)
    assert dict(hl.run_settings) == to_flat(config)
    assert hl.reward_fn(0.5, 0.3, 0.0) == pytest.approx(10 * 0.2 - 1)  # the gain reward


@pytest.mark.parametrize(("changes", "problem"), [
    ({"goal": 0.0}, "goal"), ({"goal": 1.5}, "goal"), ({"max_steps": 0}, "max_steps"),
    ({"k": 5}, "k must be"), ({"starter": 4}, "starter"), ({"reply_timeout": 0}, "reply_timeout"),
    ({"distance": np.zeros((3, 3))}, "4 x 4"), ({"observation": "pixels"}, "observation"),
    ({"actions": "relative"}, "progress observation"),
    ({"node_settings": {"learnig-rate": 0.1}}, "node_settings: unknown setting 'learnig-rate'"),
    ({"node_settings": {"goal": True}}, "node_settings: --goal must be a number"),
    ({"proximal_mu": -0.1}, "proximal_mu must be a finite"),
    ({"proximal_mu": float("inf")}, "proximal_mu must be a finite"),
    ({"path_average": 1.0}, r"path_average must be in \[0, 1\)"),
    ({"path_average": -0.1}, r"path_average must be in \[0, 1\)"),
])
def test_a_strategy_setting_out_of_range_is_refused(changes: dict, problem: str) -> None:
    agent = DQNAgent(HLConfig(num_nodes=4, dqn_hidden_1=8, dqn_hidden_2=8), seed=0)
    settings = {"num_nodes": 4, "distance": reference_distance(4)} | changes
    with pytest.raises(ValueError, match=problem):
        HomogeneousLearning(agent, **settings)


def test_an_agent_that_does_not_fit_the_observation_is_refused() -> None:
    agent = DQNAgent(HLConfig(num_nodes=4, dqn_hidden_1=8, dqn_hidden_2=8), seed=0)
    with pytest.raises(ValueError, match="40 values"):
        HomogeneousLearning(agent, num_nodes=4, distance=reference_distance(4),
                            pca_components=3)


def test_a_rule_moves_one_node_at_a_time() -> None:
    from strategies import RandomHop

    with pytest.raises(ValueError, match="k must be 1"):
        RandomHop(num_nodes=4, distance=reference_distance(4), k=2)
    rule = RandomHop.from_config(HLConfig(num_nodes=4, k=3), reference_distance(4))
    assert rule.k == 1 and rule.run_settings["k"] == 1
