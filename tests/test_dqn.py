"""The DQN agent (hl_flower.dqn): exploration schedule, network, targets, training, files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from hl_flower.config import HLConfig
from hl_flower.dqn import (
    POLICY_META,
    POLICY_WEIGHTS,
    DQNAgent,
    NStepReturns,
    Transition,
    build_q_network,
    choose_nodes,
    epsilon_at,
    next_state_values,
    q_values,
    td_targets,
)

SMALL = HLConfig(num_nodes=4, dqn_hidden_1=16, dqn_hidden_2=8, replay_batch=8,
                 dqn_fit_batch=4)


def _transition(rng: np.random.Generator, config: HLConfig, done: bool = False) -> Transition:
    return Transition(
        state=rng.normal(size=config.observation_size).astype(np.float32),
        actions=(int(rng.integers(config.num_nodes)),),
        reward=float(rng.normal()),
        next_state=rng.normal(size=config.observation_size).astype(np.float32),
        done=done,
    )


def _fill(agent: DQNAgent, count: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for i in range(count):
        agent.remember(_transition(rng, agent.config, done=i % 3 == 0))


# --- exploration ---------------------------------------------------------------------

def test_epsilon_starts_at_start_value() -> None:
    assert epsilon_at(0, 1.0, 0.02) == 1.0
    assert epsilon_at(0, 0.5, 0.3) == 0.5


def test_epsilon_after_120_episodes_is_about_0_09() -> None:
    assert epsilon_at(120, 1.0, 0.02) == pytest.approx(0.0907, abs=5e-5)
    assert epsilon_at(120, 1.0, 0.02) == pytest.approx(math.exp(-2.4))


def test_epsilon_is_multiplied_by_exp_minus_decay_each_episode() -> None:
    for episode in range(5):
        ratio = epsilon_at(episode + 1, 1.0, 0.02) / epsilon_at(episode, 1.0, 0.02)
        assert ratio == pytest.approx(math.exp(-0.02))


def test_zero_decay_keeps_epsilon_constant() -> None:
    assert epsilon_at(500, 0.7, 0.0) == 0.7


# --- network -------------------------------------------------------------------------

def test_reference_q_network_shapes() -> None:
    model = build_q_network(HLConfig())
    assert model.input_shape == (None, 100)
    dense = [layer for layer in model.layers if layer.weights]
    assert [layer.units for layer in dense] == [500, 200, 10]
    assert [layer.activation.__name__ for layer in dense] == ["relu", "relu", "linear"]
    shapes = [w.shape for w in model.get_weights()]
    assert shapes == [(100, 500), (500,), (500, 200), (200,), (200, 10), (10,)]
    assert model.output_shape == (None, 10)
    assert model.loss == "mse"
    assert model.optimizer.learning_rate.numpy() == pytest.approx(1e-3)


def test_q_network_input_follows_nodes_and_components() -> None:
    model = build_q_network(HLConfig(num_nodes=4, pca_components=3, dqn_hidden_1=7,
                                     dqn_hidden_2=5))
    assert [w.shape for w in model.get_weights()] == [(12, 7), (7,), (7, 5), (5,), (5, 4), (4,)]


def test_numpy_forward_pass_matches_keras() -> None:
    model = build_q_network(HLConfig(num_nodes=5, dqn_hidden_1=32, dqn_hidden_2=16))
    rng = np.random.default_rng(0)
    # non-zero biases so the test also checks they are added
    model.set_weights([w + rng.normal(scale=0.1, size=w.shape).astype(np.float32)
                       for w in model.get_weights()])
    x = rng.normal(size=(7, 50)).astype(np.float32)
    expected = model.predict(x, verbose=0)
    got = q_values(model.get_weights(), x)
    assert got.shape == (7, 5)
    assert np.allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_q_values_by_hand() -> None:
    weights = [np.array([[1.0, -1.0]]), np.array([0.0, 0.5]),  # hidden: relu
               np.array([[2.0], [3.0]]), np.array([-20.0])]  # output: linear
    x = np.array([[2.0], [-1.0], [-4.0]])
    # x=2: relu([2, -1.5]) = [2, 0] -> 4 - 20; x=-1: relu([-1, 1.5]) = [0, 1.5] -> 4.5 - 20;
    # x=-4: relu([-4, 4.5]) = [0, 4.5] -> 13.5 - 20. The output layer is not clipped.
    assert np.allclose(q_values(weights, x)[:, 0], [-16.0, -15.5, -6.5])


# --- choosing nodes ------------------------------------------------------------------

def test_greedy_choice_is_argmax() -> None:
    rng = np.random.default_rng(0)
    q = np.array([0.1, 0.7, -0.3, 0.65])
    for _ in range(50):
        assert choose_nodes(q, 1, 0.0, rng) == [1]


def test_greedy_top_k_is_best_first_and_distinct() -> None:
    rng = np.random.default_rng(0)
    q = np.array([0.1, 0.7, -0.3, 0.65, 0.2])
    assert choose_nodes(q, 3, 0.0, rng) == [1, 3, 4]
    assert choose_nodes(q, 5, 0.0, rng) == [1, 3, 4, 0, 2]


def test_greedy_choice_returns_python_ints() -> None:
    choice = choose_nodes(np.array([0.0, 1.0]), 1, 0.0, np.random.default_rng(0))
    assert type(choice[0]) is int


def test_random_choice_gives_k_distinct_nodes() -> None:
    rng = np.random.default_rng(1)
    q = np.arange(10.0)
    for _ in range(200):
        choice = choose_nodes(q, 3, 1.0, rng)
        assert len(choice) == 3
        assert len(set(choice)) == 3
        assert all(0 <= n < 10 and type(n) is int for n in choice)


def test_random_choice_is_roughly_uniform() -> None:
    rng = np.random.default_rng(2)
    q = np.array([5.0, 0, 0, 0, 0, 0, 0, 0, 0, 0])  # greedy would always say 0
    draws = 5000
    counts = np.bincount([choose_nodes(q, 1, 1.0, rng)[0] for _ in range(draws)],
                         minlength=10)
    expected = draws / 10
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 27.9  # 99.9% quantile of chi-square with 9 degrees of freedom
    assert counts.min() > 0


def test_intermediate_epsilon_mixes_greedy_and_random() -> None:
    rng = np.random.default_rng(3)
    q = np.array([0.0, 0.0, 1.0, 0.0])
    picks = [choose_nodes(q, 1, 0.5, rng)[0] for _ in range(4000)]
    greedy_share = picks.count(2) / len(picks)
    assert greedy_share == pytest.approx(0.5 + 0.5 / 4, abs=0.03)


# --- TD targets ----------------------------------------------------------------------

def test_td_targets_by_hand() -> None:
    current = np.array([[1.0, 2.0, 3.0],
                        [4.0, 5.0, 6.0]])
    following = np.array([[0.5, 2.0, -1.0],
                          [9.0, 9.0, 9.0]])
    targets = td_targets(current, following.max(axis=1), [(2,), (0,)], np.array([1.0, -2.0]),
                         np.array([False, True]), 0.9, normalize=False)
    expected = np.array([[1.0, 2.0, 1.0 + 0.9 * 2.0],  # not done: r + 0.9 max Q(s')
                         [-2.0, 5.0, 6.0]])  # done: r only
    assert targets.dtype == np.float32
    assert np.allclose(targets, expected)


def test_td_targets_leave_untaken_entries_alone() -> None:
    rng = np.random.default_rng(0)
    current, following = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
    actions = [(int(a),) for a in rng.integers(5, size=6)]
    targets = td_targets(current, following.max(axis=1), actions, rng.normal(size=6),
                         np.zeros(6, bool), 0.9, normalize=False)
    taken = np.zeros((6, 5), bool)
    for row, (a,) in enumerate(actions):
        taken[row, a] = True
    assert np.allclose(targets[~taken], current[~taken])
    assert not np.allclose(targets[taken], current[taken])


def test_td_targets_do_not_modify_inputs() -> None:
    current = np.ones((2, 3))
    td_targets(current, np.zeros(2), [(0,), (1,)], np.array([5.0, 5.0]),
               np.array([True, True]), 0.9, normalize=False)
    assert np.all(current == 1.0)


def test_td_targets_for_k_nodes_set_every_taken_entry() -> None:
    current = np.zeros((2, 4))
    following = np.array([[1.0, 3.0, 2.0, 0.0],
                          [0.0, 0.0, 0.0, 0.0]])
    targets = td_targets(current, following.max(axis=1),
                         [(0, 2), (1, 2, 3)], np.array([1.0, 0.5]),
                         np.array([False, True]), 0.9, normalize=False)
    assert np.allclose(targets, [[1.0 + 2.7, 0.0, 1.0 + 2.7, 0.0],
                                 [0.0, 0.5, 0.5, 0.5]])


def test_td_targets_use_the_discount() -> None:
    targets = td_targets(np.zeros((1, 2)), np.array([4.0]), [(1,)],
                         np.array([0.0]), np.array([False]), 0.5, normalize=False)
    assert np.allclose(targets, [[0.0, 2.0]])


def test_normalized_targets_are_divided_by_the_frobenius_norm() -> None:
    current = np.array([[1.0, 2.0, 3.0],
                        [4.0, 5.0, 6.0]])
    following = np.array([[0.5, 2.0, -1.0],
                          [9.0, 9.0, 9.0]])
    args = ([(2,), (0,)], np.array([1.0, -2.0]), np.array([False, True]), 0.9)
    raw = td_targets(current, following.max(axis=1), *args, normalize=False)
    normed = td_targets(current, following.max(axis=1), *args, normalize=True)
    frobenius = math.sqrt(sum(v * v for v in raw.ravel().tolist()))
    assert np.allclose(normed, raw / frobenius)
    assert np.linalg.norm(normed) == pytest.approx(1.0, rel=1e-6)


def test_normalizing_an_all_zero_matrix_keeps_zeros() -> None:
    targets = td_targets(np.zeros((2, 2)), np.zeros(2), [(0,), (1,)],
                         np.zeros(2), np.array([True, True]), 0.9, normalize=True)
    assert np.all(targets == 0.0)


# --- the agent -----------------------------------------------------------------------

def test_train_waits_for_a_full_minibatch() -> None:
    agent = DQNAgent(SMALL, seed=0)
    assert agent.train() is None
    _fill(agent, SMALL.replay_batch - 1)
    before = agent.get_weights()
    assert agent.train() is None
    assert all(np.array_equal(a, b) for a, b in zip(before, agent.get_weights(), strict=True))


def test_train_returns_a_loss_and_changes_the_weights() -> None:
    agent = DQNAgent(SMALL, seed=0)
    _fill(agent, 20)
    before = [w.copy() for w in agent.get_weights()]
    loss = agent.train()
    assert isinstance(loss, float)
    assert math.isfinite(loss) and loss >= 0.0
    after = agent.get_weights()
    assert any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))


def test_same_seed_gives_same_initial_network() -> None:
    a, b = DQNAgent(SMALL, seed=4), DQNAgent(SMALL, seed=4)
    assert all(np.array_equal(x, y)
               for x, y in zip(a.get_weights(), b.get_weights(), strict=True))
    c = DQNAgent(SMALL, seed=5)
    assert not np.array_equal(a.get_weights()[0], c.get_weights()[0])


def test_replay_memory_drops_the_oldest_beyond_its_size() -> None:
    agent = DQNAgent(SMALL.replace(replay_size=5), seed=0)
    rng = np.random.default_rng(0)
    stored = [_transition(rng, SMALL) for _ in range(7)]
    for t in stored:
        agent.remember(t)
    assert list(agent.memory) == stored[2:]


def test_set_weights_changes_the_forward_pass() -> None:
    agent = DQNAgent(SMALL, seed=0)
    zeros = [np.zeros_like(w) for w in agent.get_weights()]
    zeros[-1] = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    agent.set_weights(zeros)
    q = q_values(agent.get_weights(), np.ones((1, SMALL.observation_size)))
    assert q.tolist() == [[1.0, 2.0, 3.0, 4.0]]


@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
def test_save_and_load_restore_identical_weights(tmp_path: Path) -> None:
    trained = DQNAgent(SMALL, seed=0)
    _fill(trained, 12)
    trained.train()
    trained.save(tmp_path)
    assert (tmp_path / POLICY_WEIGHTS).is_file()
    meta = json.loads((tmp_path / POLICY_META).read_text())
    assert meta["num_nodes"] == 4
    fresh = DQNAgent(SMALL, seed=1)
    assert not np.array_equal(fresh.get_weights()[0], trained.get_weights()[0])
    fresh.load(tmp_path)
    assert all(np.array_equal(a, b)
               for a, b in zip(fresh.get_weights(), trained.get_weights(), strict=True))


def test_load_refuses_a_policy_for_another_node_count(tmp_path: Path) -> None:
    DQNAgent(SMALL, seed=0).save(tmp_path)
    other = DQNAgent(SMALL.replace(num_nodes=5), seed=0)
    with pytest.raises(ValueError, match="4 nodes"):
        other.load(tmp_path)


def test_load_refuses_other_hidden_sizes(tmp_path: Path) -> None:
    DQNAgent(SMALL, seed=0).save(tmp_path)
    with pytest.raises(ValueError, match="hidden"):
        DQNAgent(SMALL.replace(dqn_hidden_1=12), seed=0).load(tmp_path)


def test_load_refuses_a_corrupt_weights_file(tmp_path: Path) -> None:
    agent = DQNAgent(SMALL, seed=0)
    agent.save(tmp_path)
    (tmp_path / POLICY_WEIGHTS).write_bytes(b"\x89HDF\r\n garbage, not a weights file")
    before = [w.copy() for w in agent.get_weights()]
    with pytest.raises(ValueError, match="corrupt"):
        agent.load(tmp_path)
    assert all(np.array_equal(a, b)
               for a, b in zip(before, agent.get_weights(), strict=True))


def test_load_refuses_corrupt_metadata(tmp_path: Path) -> None:
    agent = DQNAgent(SMALL, seed=0)
    agent.save(tmp_path)
    (tmp_path / POLICY_META).write_text("{not json")
    with pytest.raises(ValueError, match="corrupt"):
        agent.load(tmp_path)


def test_load_from_an_empty_folder_says_no_policy(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="holds no policy"):
        DQNAgent(SMALL, seed=0).load(tmp_path)


# --- target network, Double DQN, Huber loss ---------------------------------------

def test_without_a_target_network_the_online_max_values_the_next_state() -> None:
    online = np.array([[1.0, 5.0, 2.0]])
    assert np.allclose(next_state_values(online, None, double=False), [5.0])


def test_a_target_network_values_the_next_state_by_its_own_max() -> None:
    online = np.array([[1.0, 5.0, 2.0]])
    target = np.array([[7.0, 0.5, 3.0]])
    assert np.allclose(next_state_values(online, target, double=False), [7.0])


def test_double_dqn_chooses_with_the_online_net_and_values_with_the_target() -> None:
    online = np.array([[1.0, 5.0, 2.0],
                       [9.0, 0.0, 1.0]])
    target = np.array([[7.0, 0.5, 3.0],
                       [-1.0, 8.0, 8.0]])
    # Online argmax: action 1, then action 0; the target's values there.
    assert np.allclose(next_state_values(online, target, double=True), [0.5, -1.0])


def test_target_network_is_copied_every_target_sync_updates() -> None:
    config = SMALL.replace(target_sync=3, double_dqn=True)
    agent = DQNAgent(config, seed=0)
    _fill(agent, 40)
    initial = [w.copy() for w in agent.get_weights()]
    for update in range(1, 7):
        agent.train()
        synced = update % 3 == 0
        assert all(np.array_equal(t, w) for t, w in
                   zip(agent.target_weights, agent.get_weights(), strict=True)) == synced
        if update < 3:  # still the network as it was built
            assert all(np.array_equal(t, w) for t, w in
                       zip(agent.target_weights, initial, strict=True))
    assert agent.updates == 6


def test_reference_agent_has_no_target_network() -> None:
    assert DQNAgent(SMALL, seed=0).target_weights is None


def test_huber_loss_is_linear_beyond_one() -> None:
    huber = build_q_network(SMALL.replace(dqn_loss="huber")).loss
    truth, guess = np.array([[0.0, 0.0, 0.2, 3.0]]), np.zeros((1, 4))
    # 0.2 is inside the quadratic zone (e^2 / 2), 3 in the linear one (|e| - 1/2).
    assert float(huber(truth, guess)) == pytest.approx((0.02 + 2.5) / 4)
    assert build_q_network(SMALL).loss == "mse"


def test_load_refuses_a_policy_for_another_observation(tmp_path: Path) -> None:
    DQNAgent(SMALL, seed=0).save(tmp_path)
    progress = SMALL.replace(observation="progress")
    with pytest.raises(ValueError, match="--observation reference"):
        DQNAgent(progress, seed=0).load(tmp_path)


# --- n-step returns ------------------------------------------------------------------

def _one_step(index: int, reward: float, done: bool = False) -> Transition:
    """Decision ``index``: its state is [index], its next state [index + 1]."""
    return Transition(np.array([index], np.float32), (index,), reward,
                      np.array([index + 1], np.float32), done)


def test_n_step_returns_sum_n_discounted_rewards_and_skip_n_states() -> None:
    returns = NStepReturns(n=3, discount=0.5)
    assert returns.add(_one_step(0, 1.0)) == []
    assert returns.add(_one_step(1, 2.0)) == []
    (merged,) = returns.add(_one_step(2, 4.0))
    assert merged.actions == (0,) and merged.state.tolist() == [0.0]
    assert merged.reward == pytest.approx(1.0 + 0.5 * 2.0 + 0.25 * 4.0)
    assert merged.next_state.tolist() == [3.0]  # three decisions on
    assert (merged.steps, merged.done) == (3, False)
    (following,) = returns.add(_one_step(3, 8.0))  # the window slides by one
    assert following.actions == (1,)
    assert following.reward == pytest.approx(2.0 + 0.5 * 4.0 + 0.25 * 8.0)


def test_n_step_returns_flush_every_pending_decision_at_the_episode_end() -> None:
    returns = NStepReturns(n=3, discount=0.5)
    returns.add(_one_step(0, 1.0))
    flushed = returns.add(_one_step(1, 2.0, done=True))
    assert [t.actions for t in flushed] == [(0,), (1,)]
    assert [t.steps for t in flushed] == [2, 1]
    assert [t.reward for t in flushed] == pytest.approx([1.0 + 0.5 * 2.0, 2.0])
    assert all(t.done for t in flushed)
    assert returns.add(_one_step(5, 1.0)) == []  # the next episode starts empty


def test_one_step_returns_pass_transitions_through_unchanged() -> None:
    returns = NStepReturns(n=1, discount=0.9)
    transition = _one_step(0, -1.5)
    assert returns.add(transition) == [transition]


def test_reset_forgets_an_unfinished_episode() -> None:
    returns = NStepReturns(n=2, discount=0.9)
    returns.add(_one_step(0, 1.0))
    returns.reset()
    (merged,) = returns.add(_one_step(7, 1.0, done=True))
    assert merged.actions == (7,)


def test_td_targets_bootstrap_with_a_discount_per_row() -> None:
    targets = td_targets(np.zeros((2, 2)), np.array([4.0, 4.0]), [(0,), (1,)],
                         np.array([1.0, 1.0]), np.array([False, False]),
                         0.5 ** np.array([1, 3]), normalize=False)
    assert np.allclose(targets, [[1.0 + 0.5 * 4.0, 0.0], [0.0, 1.0 + 0.125 * 4.0]])


def test_training_targets_bootstrap_n_step_transitions_with_discount_to_the_steps() -> None:
    agent = DQNAgent(SMALL.replace(normalize_targets=False, discount=0.5), seed=0)
    state = np.zeros(SMALL.observation_size, np.float32)
    following = np.ones(SMALL.observation_size, np.float32)
    _, targets = agent.minibatch_targets([
        Transition(state, (2,), 1.0, following, False, steps=3),
        Transition(state, (2,), 1.0, following, False)])
    next_max = q_values(agent.get_weights(), following[None, :]).max()
    assert targets[0, 2] == pytest.approx(1.0 + 0.125 * next_max, rel=1e-5)
    assert targets[1, 2] == pytest.approx(1.0 + 0.5 * next_max, rel=1e-5)
