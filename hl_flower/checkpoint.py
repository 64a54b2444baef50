"""Checkpoints after every episode, so a killed run resumes where it was.

``runs/<name>/checkpoint-<episodes done>/`` holds everything the server's
learning depends on: the DQN's weights (``dqn.weights.h5``) and optimizer
state, the replay memory (with each transition's ``done`` and ``truncated``
flags, so the step cap stays distinct from the goal) and the replay
sampler's random state (``.npz``, loaded without pickle), the target network
if there is one (``dqn_target.npz``), the episode and update counters and a
SHA-256 of every file (``state.json``). Exploration, model initialisation and local training are
seeded from (seed, episode, step), so they need no saved state.

A checkpoint is written into a hidden temporary folder and renamed into
place, so a kill at any moment leaves the previous one intact; the last two
are kept, and a corrupt one is skipped in favour of the one before.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .dqn import DQNAgent, Transition
from .model import optimizer_state, set_optimizer_state
from .runlog import folder_swapped_in

PREFIX = "checkpoint-"
KEEP = 2
FORMAT = 2
FILES = ("dqn.weights.h5", "dqn_optimizer.npz", "memory.npz", "dqn_target.npz")
FILES_OF_FORMAT = {1: FILES[:3], 2: FILES}  # format 1: before target networks


class CheckpointError(ValueError):
    """No usable checkpoint; the message says which file and what to do."""


@dataclass(frozen=True)
class Checkpoint:
    """What a resumed run continues from."""

    episodes_done: int
    policy_updates: int
    folder: Path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _memory_arrays(agent: DQNAgent) -> dict[str, np.ndarray]:
    memory = list(agent.memory)
    size, k = len(memory), agent.config.k
    observation = agent.config.observation_size
    return {
        "states": np.array([t.state for t in memory], np.float32).reshape(size, observation),
        "actions": np.array([t.actions for t in memory], np.int64).reshape(size, k),
        "rewards": np.array([t.reward for t in memory], np.float64),
        "next_states": np.array([t.next_state for t in memory],
                                np.float32).reshape(size, observation),
        "dones": np.array([t.done for t in memory], bool),
        "steps": np.array([t.steps for t in memory], np.int64),
        "truncated": np.array([t.truncated for t in memory], bool),
    }


def save_checkpoint(run_folder: Path, agent: DQNAgent, episodes_done: int,
                    policy_updates: int) -> Path:
    """Write the checkpoint after ``episodes_done`` episodes, atomically."""
    final = run_folder / f"{PREFIX}{episodes_done:05d}"
    with folder_swapped_in(final) as temporary:  # replaces a stale one from before a resume
        agent.network.save_weights(temporary / FILES[0])
        np.savez(temporary / FILES[1], *optimizer_state(agent.network))
        np.savez(temporary / FILES[2], **_memory_arrays(agent))
        np.savez(temporary / FILES[3], *(agent.target_weights or []))
        state = {"format": FORMAT, "episodes_done": episodes_done,
                 "policy_updates": policy_updates, "dqn_updates": agent.updates,
                 "replay_rng": agent.rng.bit_generator.state,
                 "sha256": {name: _sha256(temporary / name) for name in FILES}}
        (temporary / "state.json").write_text(json.dumps(state, indent=2))
    for old in checkpoints(run_folder)[KEEP:]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def checkpoints(run_folder: Path) -> list[Path]:
    """Checkpoint folders, newest first (temporary ones are ignored)."""
    found = [p for p in run_folder.glob(f"{PREFIX}*") if p.is_dir()]
    return sorted(found, key=lambda p: p.name, reverse=True)


def load_checkpoint(folder: Path, agent: DQNAgent) -> Checkpoint:
    """Restore ``agent`` from ``folder``; CheckpointError if it is damaged."""
    try:
        state = json.loads((folder / "state.json").read_text())
        if state["format"] not in FILES_OF_FORMAT:
            raise CheckpointError(f"{folder} has format {state['format']}, "
                                  f"this version reads {sorted(FILES_OF_FORMAT)}")
        for name in FILES_OF_FORMAT[state["format"]]:
            if _sha256(folder / name) != state["sha256"][name]:
                raise CheckpointError(f"{folder / name} does not match its checksum")
        with warnings.catch_warnings():  # the optimizer is restored just below
            warnings.filterwarnings("ignore", "Skipping variable loading")
            agent.network.load_weights(folder / FILES[0])
        with np.load(folder / FILES[1], allow_pickle=False) as saved:
            _restore_optimizer(agent, [saved[f"arr_{i}"] for i in range(len(saved.files))])
        with np.load(folder / FILES[2], allow_pickle=False) as memory:
            _restore_memory(agent, memory)
        agent.rng.bit_generator.state = state["replay_rng"]
        _restore_target(agent, folder / FILES[3], int(state.get("dqn_updates", 0)))
        return Checkpoint(int(state["episodes_done"]), int(state["policy_updates"]),
                          folder)
    except CheckpointError:
        raise
    except Exception as err:  # noqa: BLE001 - JSON, HDF5, npz and key errors alike
        raise CheckpointError(f"{folder} is unreadable ({type(err).__name__}: "
                              f"{str(err)[:100]})") from None


def _restore_optimizer(agent: DQNAgent, arrays: list[np.ndarray]) -> None:
    network = agent.network
    if len(arrays) > 1 and not network.optimizer.built:  # make its slots exist
        network.optimizer.build(network.trainable_variables)
    if len(optimizer_state(network)) != len(arrays):
        raise CheckpointError("the DQN optimizer state does not fit this network")
    set_optimizer_state(network, arrays)


def _restore_target(agent: DQNAgent, path: Path, updates: int) -> None:
    """The target network as saved (a format-1 checkpoint has none: the
    online network stands in) and the update counter that times its copies."""
    agent.updates = updates
    if agent.target_weights is None:
        return
    if not path.is_file():
        agent.target_weights = agent.get_weights()
        return
    with np.load(path, allow_pickle=False) as saved:
        weights = [saved[f"arr_{i}"] for i in range(len(saved.files))]
    if [w.shape for w in weights] != [w.shape for w in agent.get_weights()]:
        raise CheckpointError(f"{path} does not fit this run's target network")
    agent.target_weights = weights


def _restore_memory(agent: DQNAgent, memory: np.lib.npyio.NpzFile) -> None:
    """Refill the replay memory. Checkpoints written before n-step returns
    hold one-step transitions only (no ``steps``); those written before
    ``--truncation`` have no ``truncated`` flags, and their runs stored the
    step cap as terminal, so none counts as truncated."""
    agent.memory.clear()
    count = len(memory["dones"])
    steps = memory["steps"] if "steps" in memory.files else np.ones(count)
    truncated = (memory["truncated"] if "truncated" in memory.files
                 else np.zeros(count, bool))
    for state, actions, reward, next_state, done, merged, capped in zip(
            memory["states"], memory["actions"], memory["rewards"],
            memory["next_states"], memory["dones"], steps, truncated, strict=True):
        agent.remember(Transition(state, tuple(int(a) for a in actions), float(reward),
                                  next_state, bool(done), int(merged), bool(capped)))


def load_latest(run_folder: Path, agent: DQNAgent) -> tuple[Checkpoint | None, list[str]]:
    """The newest usable checkpoint (None if there is none) and a warning
    for each damaged one skipped on the way."""
    warnings = []
    for folder in checkpoints(run_folder):
        try:
            return load_checkpoint(folder, agent), warnings
        except CheckpointError as err:
            warnings.append(f"skipping a damaged checkpoint: {err}")
    if warnings:
        raise CheckpointError(warnings[-1].removeprefix("skipping a damaged checkpoint: ")
                              + "; no older checkpoint is left: start a new run")
    return None, warnings
