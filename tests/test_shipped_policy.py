"""The policy shipped in policies/: it loads from its own folder (safe
formats only) and does what docs/results.md says it does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hl_flower.client_app import node_partition, node_trainer
from hl_flower.config import from_flat
from hl_flower.dqn import DQNAgent, q_values
from hl_flower.model import set_optimizer_state
from hl_flower.observation import flatten_weights, reference_observation
from hl_flower.reference_task import fresh_weights

SHIPPED = Path(__file__).resolve().parents[1] / "policies" / "mnist5k-n10-improved"


def test_folder_holds_weights_metadata_and_settings_only() -> None:
    assert sorted(p.name for p in SHIPPED.iterdir()) == [
        "config.json", "policy.json", "policy.weights.h5"]


def test_shipped_policy_keeps_the_model_at_the_starter() -> None:
    """After the starter's first real epoch, the greedy choice is the starter
    itself (the `Standalone` behaviour reported in docs/results.md)."""
    config = from_flat(json.loads((SHIPPED / "config.json").read_text())).validate()
    agent = DQNAgent(config, seed=0)
    agent.load(SHIPPED)
    (starter,) = config.starter_nodes
    trainer = node_trainer(config, node_partition(config, starter))
    for seed in (201, 202, 203):
        start = fresh_weights(trainer.model, seed)
        trainer.model.set_weights(start)
        set_optimizer_state(trainer.model, None)  # a fresh episode's Adam
        data = node_partition(config.replace(seed=seed), starter)
        trainer.fit_epochs(data.x, data.y, 1, config.batch_size,
                           np.random.default_rng(seed))
        observation = reference_observation(
            flatten_weights(start), {starter: flatten_weights(trainer.model.get_weights())},
            config.num_nodes, config.pca_components)
        q = q_values(agent.get_weights(), observation[None, :])[0]
        assert int(np.argmax(q)) == starter
