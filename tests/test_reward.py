"""The HL step reward (hl_flower.reward): the paper's and the gain reward."""

from __future__ import annotations

import math

import pytest

from hl_flower.config import HLConfig
from hl_flower.reward import configured_reward, gain_reward, step_reward


@pytest.mark.parametrize(
    ("accuracy", "goal", "hop", "expected"),
    [
        (1.0, 0.8, 0.05, 2.0 - 0.05 - 1.0),  # 32^0.2 = 2
        (0.6, 0.8, 0.0, 0.5 - 1.0),  # 32^-0.2 = 0.5
        (0.9, 0.8, 0.03, math.sqrt(2) - 0.03 - 1.0),  # 32^0.1 = sqrt(2)
        (0.0, 0.8, 0.01, 32 ** -0.8 - 0.01 - 1.0),
    ],
)
def test_step_reward_matches_formula(accuracy: float, goal: float, hop: float,
                                     expected: float) -> None:
    assert step_reward(accuracy, goal, hop) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("hop", [0.0, 0.004, 0.096])
def test_step_reward_at_goal_is_minus_hop(hop: float) -> None:
    assert step_reward(0.8, 0.8, hop) == pytest.approx(-hop, abs=1e-12)


def test_step_reward_uses_given_base() -> None:
    assert step_reward(0.9, 0.4, 0.1, base=4.0) == pytest.approx(2.0 - 0.1 - 1.0)


def test_step_reward_grows_with_accuracy_and_falls_with_distance() -> None:
    assert step_reward(0.79, 0.8, 0.0) < step_reward(0.81, 0.8, 0.0)
    assert step_reward(0.8, 0.8, 0.09) < step_reward(0.8, 0.8, 0.01)


def test_gain_reward_matches_formula() -> None:
    assert gain_reward(0.7, 0.5, 0.03, weight=10.0) == pytest.approx(10 * 0.2 - 0.03 - 1)
    assert gain_reward(0.4, 0.6, 0.0, weight=5.0) == pytest.approx(-2.0)  # forgetting


def test_gain_rewards_of_an_episode_add_up_to_the_final_accuracy_minus_cost_and_steps() -> None:
    accuracies, hops = [0.3, 0.55, 0.4, 0.72], [0.0, 0.05, 0.02, 0.0]
    previous = [0.0, *accuracies[:-1]]  # the model before step 1 counts as 0
    total = sum(gain_reward(a, p, h, 10.0) for a, p, h in zip(accuracies, previous, hops,
                                                              strict=True))
    assert total == pytest.approx(10 * 0.72 - sum(hops) - len(accuracies))


def test_configured_reward_follows_the_config() -> None:
    reference = HLConfig(goal=0.8, reward_base=32.0)
    assert configured_reward(reference, 0.7, 0.5, 0.03) == step_reward(0.7, 0.8, 0.03)
    gain = HLConfig(reward="gain", gain_weight=4.0)
    assert configured_reward(gain, 0.7, 0.5, 0.03) == gain_reward(0.7, 0.5, 0.03, 4.0)
