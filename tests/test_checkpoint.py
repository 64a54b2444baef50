"""Checkpoint files (hl_flower.checkpoint): what a resumed run gets back."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from hl_flower.checkpoint import FILES, load_checkpoint, save_checkpoint
from hl_flower.config import HLConfig
from hl_flower.dqn import DQNAgent, Transition

SMALL = HLConfig(num_nodes=4, dqn_hidden_1=16, dqn_hidden_2=8, replay_batch=2,
                 dqn_fit_batch=2, target_sync=3)


def _agent_with_memory() -> DQNAgent:
    agent = DQNAgent(SMALL, seed=0)
    rng = np.random.default_rng(0)
    for steps in (3, 1, 2):
        agent.remember(Transition(rng.normal(size=SMALL.observation_size), (steps,),
                                  float(rng.normal()), rng.normal(size=SMALL.observation_size),
                                  steps == 2, steps))
    agent.train()
    return agent


def _rewrite_as_older_version(folder: Path) -> None:
    """Make ``folder`` look like a format-1 checkpoint: no target network, no
    update counter and one-step transitions only (no ``steps`` array)."""
    with np.load(folder / FILES[2], allow_pickle=False) as memory:
        arrays = {name: memory[name] for name in memory.files if name != "steps"}
    np.savez(folder / FILES[2], **arrays)
    (folder / FILES[3]).unlink()
    state = json.loads((folder / "state.json").read_text())
    state["format"] = 1
    state.pop("dqn_updates")
    state["sha256"] = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
                       for name in FILES[:3]}
    (folder / "state.json").write_text(json.dumps(state))


def test_a_checkpoint_restores_n_step_transitions_and_the_target_network(
        tmp_path: Path) -> None:
    saved = _agent_with_memory()
    folder = save_checkpoint(tmp_path, saved, episodes_done=1, policy_updates=1)
    restored = DQNAgent(SMALL, seed=5)
    assert load_checkpoint(folder, restored).episodes_done == 1
    assert [t.steps for t in restored.memory] == [3, 1, 2]
    assert [t.done for t in restored.memory] == [False, False, True]
    assert restored.updates == saved.updates == 1
    for mine, theirs in zip(restored.target_weights, saved.target_weights, strict=True):
        assert np.array_equal(mine, theirs)


def test_an_older_checkpoint_loads_with_one_step_transitions(tmp_path: Path) -> None:
    folder = save_checkpoint(tmp_path, _agent_with_memory(), episodes_done=2,
                             policy_updates=1)
    _rewrite_as_older_version(folder)
    restored = DQNAgent(SMALL, seed=5)
    assert load_checkpoint(folder, restored).episodes_done == 2
    assert [t.steps for t in restored.memory] == [1, 1, 1]
    assert restored.updates == 0
    for mine, online in zip(restored.target_weights, restored.get_weights(), strict=True):
        assert np.array_equal(mine, online)  # the online network stands in
