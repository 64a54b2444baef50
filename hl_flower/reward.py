"""The reward of one HL step: reaching the goal soon over cheap hops.

``step_reward`` is the paper's (Sun & Ochiai 2022, eq. 3); ``gain_reward`` is
this project's alternative that pays for the final accuracy instead.
"""

from __future__ import annotations

from collections.abc import Callable

from .config import HLConfig

RewardFunction = Callable[[float, float, float], float]
"""``reward(accuracy, previous_accuracy, hop_cost) -> float`` of one step."""


def step_reward(accuracy: float, goal: float, hop_cost: float,
                base: float = 32.0) -> float:
    """HL reward: base^(accuracy - goal) - hop_cost - 1."""
    return base ** (accuracy - goal) - hop_cost - 1.0


def gain_reward(accuracy: float, previous_accuracy: float, hop_cost: float,
                weight: float) -> float:
    """Accuracy-gain reward: weight * (accuracy - previous_accuracy) - hop_cost - 1.

    Over an episode the gains add up to ``weight`` times the final accuracy
    (the model before step 1 counts as 0), so the return is the final
    accuracy's worth minus the communication cost and the steps taken. The
    reference reward instead adds ``base^(accuracy - goal)`` at every step,
    which pays for a high accuracy along the way rather than at the end.
    """
    return weight * (accuracy - previous_accuracy) - hop_cost - 1.0


def configured_reward(config: HLConfig, accuracy: float, previous_accuracy: float,
                      hop_cost: float) -> float:
    """The reward ``config.reward`` names for one step."""
    if config.reward == "gain":
        return gain_reward(accuracy, previous_accuracy, hop_cost, config.gain_weight)
    return step_reward(accuracy, config.goal, hop_cost, config.reward_base)


def paper_reward(goal: float, base: float = 32.0) -> RewardFunction:
    """The paper's reward (:func:`step_reward`) for ``goal`` as a
    :data:`RewardFunction`; the strategies' default."""
    def reward(accuracy: float, previous_accuracy: float, hop_cost: float) -> float:
        return step_reward(accuracy, goal, hop_cost, base)

    return reward


def reward_function(config: HLConfig) -> RewardFunction:
    """The reward ``config.reward`` names, as a :data:`RewardFunction`."""
    def reward(accuracy: float, previous_accuracy: float, hop_cost: float) -> float:
        return configured_reward(config, accuracy, previous_accuracy, hop_cost)

    return reward
