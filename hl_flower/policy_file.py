"""A saved policy's files, and whether a run fits it (light: no TensorFlow).

``policy.json`` says what the policy was trained for (nodes, hidden sizes,
observation, actions); :func:`check_policy_fits` reads it alone, so
``sim.py`` can name a policy that does not fit the run before it checks
anything else (a policy's ``config.json`` brings settings, such as
``--best-node``, that only fit the policy's own node count).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .config import HLConfig

POLICY_WEIGHTS = "policy.weights.h5"
POLICY_META = "policy.json"


def policy_meta(config: HLConfig) -> dict[str, Any]:
    """What ``policy.json`` records of a policy trained with ``config``."""
    return {"num_nodes": config.num_nodes, "observation": config.observation,
            "actions": config.actions, "observation_size": config.observation_size,
            "hidden": [config.dqn_hidden_1, config.dqn_hidden_2]}


def read_policy_meta(folder: Path, config: HLConfig) -> dict[str, Any]:
    """``policy.json`` of ``folder`` with every field present (older files
    lack some: those of ``config``). ValueError if the policy is missing or
    the file is corrupt."""
    meta_path, weights_path = folder / POLICY_META, folder / POLICY_WEIGHTS
    if not meta_path.is_file() or not weights_path.is_file():
        raise ValueError(f"{folder} holds no policy ({POLICY_WEIGHTS} and "
                         f"{POLICY_META}); point to a training run folder, its best/, "
                         "or a folder of policies/")
    try:
        meta = json.loads(meta_path.read_text())
        hidden = [int(h) for h in meta["hidden"]]
        if len(hidden) != 2:
            raise ValueError(hidden)
        return {"num_nodes": int(meta["num_nodes"]), "hidden": hidden,
                "observation": str(meta.get("observation", "reference")),
                "actions": str(meta.get("actions", "absolute")),
                "observation_size": int(meta.get("observation_size",
                                                 config.observation_size))}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ValueError(f"{meta_path} is corrupt; re-train or pick "
                         "another policy") from None


def check_policy_fits(folder: Path, config: HLConfig) -> None:
    """ValueError (one line naming the flag to give) unless the policy in
    ``folder`` was trained for ``config``'s nodes, hidden sizes, observation
    and actions."""
    meta = read_policy_meta(folder, config)
    nodes, hidden = meta["num_nodes"], meta["hidden"]
    if nodes != config.num_nodes:
        raise ValueError(f"the policy in {folder} was trained for {nodes} nodes and "
                         f"cannot run with --nodes {config.num_nodes}; run it with "
                         f"--nodes {nodes}, or give a policy trained for "
                         f"{config.num_nodes} nodes")
    if hidden != [config.dqn_hidden_1, config.dqn_hidden_2]:
        raise ValueError(f"the policy in {folder} has hidden sizes {hidden}; run it "
                         f"with --dqn-hidden-1 {hidden[0]} --dqn-hidden-2 {hidden[1]}")
    observation, actions = meta["observation"], meta["actions"]
    if (observation, actions) != (config.observation, config.actions):
        raise ValueError(f"the policy in {folder} reads the {observation!r} "
                         f"observation with {actions} actions; run it with "
                         f"--observation {observation} --actions {actions}")
    if meta["observation_size"] != config.observation_size:
        size = meta["observation_size"]
        per_node = size // max(nodes, 1)
        fix = (f"--pca-components {per_node}" if observation == "reference"
               and size == nodes * per_node else "its own settings")
        raise ValueError(f"the policy in {folder} reads observations of size {size}; "
                         f"this run's are {config.observation_size} ({config.num_nodes} "
                         f"nodes x --pca-components {config.pca_components}); "
                         f"run it with {fix}")
