"""What a trained reference-observation policy does, node by node.

    python benchmarks/inspect_policy.py runs/<name>

With one node per step (k = 1), only the holder's row of the N x P weight
stack differs from the global model, so the stack's PCA has one component
and the reference observation is exactly

    s * u * (e_holder - 1/N)   in component 0, zeros elsewhere,

with u = ||update|| and s = +-1 (PCA's sign convention: the largest entry
of the update decides it). The script checks that identity on a real
update, then prints, for every holder and both signs, the greedy next node
and how far apart the Q-values are: whether the policy stays, and whether
its choice depends on anything but which node trained and a sign.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hl_flower.quiet import import_tensorflow_quietly, quiet_environment  # noqa: E402

quiet_environment(verbose=False)
import_tensorflow_quietly()

from hl_flower.client_app import node_partition, node_trainer  # noqa: E402
from hl_flower.config import ConfigError, saved_config  # noqa: E402
from hl_flower.dqn import DQNAgent, q_values  # noqa: E402
from hl_flower.observation import flatten_weights, reference_observation  # noqa: E402
from hl_flower.task import initial_weights  # noqa: E402


def closed_form(holder: int, size: float, sign: float, nodes: int,
                components: int) -> np.ndarray:
    """The k = 1 reference observation from (holder, update size, sign)."""
    observation = np.zeros((nodes, components), np.float32)
    observation[:, 0] = -sign * size / nodes
    observation[holder, 0] += sign * size
    return observation.ravel()


def one_update(config, node: int) -> tuple[np.ndarray, np.ndarray]:
    """(global, trained) flattened weights after one epoch on ``node`` from a
    fresh model."""
    data = node_partition(config, node)
    trainer = node_trainer(config, data)
    start = initial_weights(config, config.seed, data.x)
    trainer.model.set_weights(start)
    trainer.fit_epochs(data.x, data.y, 1, config.batch_size, np.random.default_rng(0))
    return flatten_weights(start), flatten_weights(trainer.model.get_weights())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("policy", type=Path)
    folder = parser.parse_args().policy
    try:
        config = saved_config(folder)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if config.observation != "reference" or config.k != 1:
        raise SystemExit("error: this inspection is for k = 1 reference-observation "
                         "policies")
    agent = DQNAgent(config, config.seed)
    agent.load(folder)
    weights = agent.get_weights()
    nodes, components = config.num_nodes, config.pca_components

    received, trained = one_update(config, config.starter_nodes[0])
    real = reference_observation(received, {config.starter_nodes[0]: trained}, nodes, components)
    size = float(np.linalg.norm(trained.astype(np.float64) - received))
    sign = float(np.sign(real[config.starter_nodes[0] * components]))
    gap = np.abs(real - closed_form(config.starter_nodes[0], size, sign, nodes, components)).max()
    print(f"real first update at node {config.starter_nodes[0]}: ||update|| = {size:.3f}, "
          f"sign {sign:+.0f}; closed form differs by {gap:.2e}")

    first = q_values(weights, real[None, :])[0]
    ten_steps = -(1 - config.discount ** 10) / (1 - config.discount)
    print(f"Q-values after that update: mean {first.mean():.4f}, min {first.min():.4f}, "
          f"max {first.max():.4f} (-1 per step for 10 more steps, discounted by "
          f"{config.discount}, is {ten_steps:.2f})")
    print(f"{'holder':>6} {'size':>6} | greedy next (s=+1, s=-1) | "
          "Q max-min / |Q| mean (s=+1)")
    stays = 0
    for scale in (1.0, 0.25):
        for holder in range(nodes):
            picks, spreads = [], []
            for s in (1.0, -1.0):
                q = q_values(weights, closed_form(holder, size * scale, s, nodes,
                                                  components)[None, :])[0]
                picks.append(int(np.argmax(q)))
                spreads.append((q.max() - q.min()) / (np.abs(q).mean() or 1.0))
            stays += sum(p == holder for p in picks)
            print(f"{holder:>6} {size * scale:>6.2f} | {picks[0]:>11} {picks[1]:>9}    | "
                  f"{spreads[0]:.3f}")
    print(f"the greedy choice is the holder itself in {stays} of {4 * nodes} cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
