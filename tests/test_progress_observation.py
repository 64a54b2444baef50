"""The ``progress`` observation (hl_flower.progress_observation) and the DQN
options' settings."""

from __future__ import annotations

import numpy as np
import pytest

from hl_flower.config import ConfigError, HLConfig
from hl_flower.progress_observation import (
    EpisodeProgress,
    node_order,
    nodes_to_ranks,
    progress_context,
    progress_observation,
    ranks_to_nodes,
    update_size,
)

NODES, MAX_STEPS = 4, 10
DISTANCE = np.array([[0.0, 0.2, 0.4, 0.8],
                     [0.2, 0.0, 0.1, 0.3],
                     [0.4, 0.1, 0.0, 0.5],
                     [0.8, 0.3, 0.5, 0.0]])


def _split(context: np.ndarray) -> dict[str, np.ndarray]:
    parts = np.split(context[:4 * NODES], 4)
    return {"holder": parts[0], "visits": parts[1], "since": parts[2],
            "distance": parts[3], "accuracy": context[4 * NODES],
            "step": context[4 * NODES + 1]}


def test_first_step_sees_only_the_starter() -> None:
    features = _split(progress_context(EpisodeProgress(NODES), [0], 1, MAX_STEPS, DISTANCE))
    assert features["holder"].tolist() == [1, 0, 0, 0]
    assert np.allclose(features["visits"], [0.1, 0, 0, 0])
    assert np.allclose(features["since"], [0.0, 1, 1, 1])  # never visited: 1
    assert np.allclose(features["distance"], DISTANCE[0] / 0.8)
    assert features["accuracy"] == 0.0
    assert features["step"] == pytest.approx(0.1)


def test_context_follows_the_episode() -> None:
    progress = EpisodeProgress(NODES)
    progress.record([0], 1, 0.3)
    progress.record([2], 2, 0.45)
    progress.record([0], 3, 0.5)
    features = _split(progress_context(progress, [1], 4, MAX_STEPS, DISTANCE))
    assert features["holder"].tolist() == [0, 1, 0, 0]
    assert np.allclose(features["visits"], [0.2, 0.1, 0.1, 0.0])
    assert np.allclose(features["since"], [0.1, 0.0, 0.2, 1.0])
    assert np.allclose(features["distance"], DISTANCE[1] / 0.8)
    assert features["accuracy"] == pytest.approx(0.5)  # of the model node 1 receives
    assert features["step"] == pytest.approx(0.4)


def test_context_does_not_change_the_record() -> None:
    progress = EpisodeProgress(NODES)
    progress_context(progress, [3], 1, MAX_STEPS, DISTANCE)
    assert progress.visits.tolist() == [0, 0, 0, 0]


def test_k_holders_are_all_marked_and_the_lead_sets_distances() -> None:
    features = _split(progress_context(EpisodeProgress(NODES), [2, 3], 1, MAX_STEPS,
                                       DISTANCE))
    assert features["holder"].tolist() == [0, 0, 1, 1]
    assert np.allclose(features["distance"], DISTANCE[2] / 0.8)


def test_update_size_is_relative_to_the_received_model() -> None:
    received = np.array([3.0, 4.0], np.float32)  # norm 5
    assert update_size(received, received) == 0.0
    assert update_size(received, np.array([3.0, 5.0], np.float32)) == pytest.approx(0.2)


def test_observation_has_the_configured_size() -> None:
    config = HLConfig(num_nodes=NODES, observation="progress")
    context = progress_context(EpisodeProgress(NODES), [0], 1, MAX_STEPS, DISTANCE)
    observation = progress_observation(context, 0.25)
    assert observation.shape == (config.observation_size,)
    assert observation.dtype == np.float32
    assert observation[-1] == pytest.approx(0.25)


def test_progress_observation_size_does_not_depend_on_pca_components() -> None:
    assert (HLConfig(observation="progress", pca_components=3).observation_size
            == HLConfig(observation="progress").observation_size == 43)


@pytest.mark.parametrize(("changes", "message"), [
    ({"observation": "pixels"}, "unknown --observation 'pixels'; use reference or progress"),
    ({"dqn_updates": "batch"}, "unknown --dqn-updates"),
    ({"dqn_loss": "l1"}, "use mse or huber"),
    ({"double_dqn": True}, "--double-dqn needs a target network (--target-sync 1 or more"),
    ({"target_sync": -1}, "--target-sync must be 0"),
    ({"reward_scale": 0.0}, "--reward-scale must be a positive number"),
    ({"n_step": 0}, "--n-step must be at least 1, got 0"),
    ({"reward": "final"}, "unknown --reward 'final'; use reference or gain"),
    ({"gain_weight": -1.0}, "--gain-weight must be a positive number, got -1.0"),
])
def test_bad_dqn_options_are_refused(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        HLConfig(**changes).validate()


def test_reference_defaults_keep_the_paper_design() -> None:
    config = HLConfig()
    assert (config.observation, config.dqn_updates, config.target_sync,
            config.double_dqn, config.dqn_loss, config.reward_scale,
            config.normalize_targets, config.n_step) == ("reference", "episode", 0, False,
                                                         "mse", 1.0, True, 1)


# --- relative actions -------------------------------------------------------------

def test_node_order_puts_the_holder_first_then_nearest() -> None:
    assert node_order(DISTANCE, 1).tolist() == [1, 2, 0, 3]
    assert node_order(DISTANCE, 3).tolist() == [3, 1, 2, 0]


def test_node_order_breaks_ties_by_id_and_keeps_the_holder_first() -> None:
    flat = np.zeros((4, 4))  # every node equally far, even the holder itself
    assert node_order(flat, 2).tolist() == [2, 0, 1, 3]


def test_ranks_and_nodes_convert_both_ways() -> None:
    order = node_order(DISTANCE, 2)  # [2, 1, 0, 3]
    assert ranks_to_nodes([0, 1], order) == [2, 1]
    assert nodes_to_ranks([3, 2], order) == (3, 0)
    assert ranks_to_nodes(list(nodes_to_ranks([0, 3], order)), order) == [0, 3]


def test_relative_context_lists_nodes_from_the_holder_outwards() -> None:
    progress = EpisodeProgress(NODES)
    progress.record([3], 1, 0.2)
    absolute = _split(progress_context(progress, [1], 2, MAX_STEPS, DISTANCE))
    relative = _split(progress_context(progress, [1], 2, MAX_STEPS, DISTANCE,
                                       relative=True))
    order = [1, 2, 0, 3]
    for name in ("holder", "visits", "since", "distance"):
        assert np.allclose(relative[name], absolute[name][order])
    assert relative["holder"].tolist() == [1, 0, 0, 0]  # the holder is always first
    assert np.all(np.diff(relative["distance"]) >= 0)
    assert relative["accuracy"] == absolute["accuracy"]
