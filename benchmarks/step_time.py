"""How long an HL step takes through Flower, against the same work done bare.

    python benchmarks/step_time.py                     # mnist-5k, 10 nodes
    python benchmarks/step_time.py --episodes 3 --steps 20 --fedavg-rounds 6

In one process and one run it measures, per step:

1. HL through Flower: the holder trains one epoch, computes the observation
   and the DQN choice (in the Ray actor), the server evaluates; messages,
   (de)serialisation and scheduling included (``time_step`` of each round).
2. The bare TensorFlow work of the same step, in this process, no Flower:
   one local epoch, the observation, the DQN choice, the evaluation.
3. FedAvg per round, through Flower and bare (10 local epochs, the average,
   the evaluation).
4. A re-creation of the reference implementation's loop: fresh Keras models
   for the global model and every node each episode, ``model.fit`` on the
   chosen node, the N x P weight stack and a scikit-learn PCA refit, the
   weights copied back to every node, ``model.evaluate`` and the DQN's
   ``model.predict``.

Every episode runs exactly ``--steps`` steps (the goal is set out of reach).
It prints figures and their ratios; it asserts nothing.

    python benchmarks/step_time.py --determinism-cost  # pinned vs free threads

``--determinism-cost`` measures what reproducibility costs: it runs parts 1
and 2 in fresh processes, alternately with the pinned kernels of
``hl_flower.determinism`` (the default) and with ``HL_DETERMINISTIC=0``,
``--repeats`` times each, and prints the median step of each and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hl_flower.quiet import import_tensorflow_quietly, quiet_environment  # noqa: E402

quiet_environment(verbose=False)
import_tensorflow_quietly()

import numpy as np  # noqa: E402
from flwr.app import ArrayRecord, Context  # noqa: E402
from flwr.serverapp import Grid, ServerApp  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402

from hl_flower.client_app import node_partition, node_trainer  # noqa: E402
from hl_flower.config import preset  # noqa: E402
from hl_flower.distance import distance_matrix  # noqa: E402
from hl_flower.dqn import DQNAgent, q_values  # noqa: E402
from hl_flower.evaluator import TestSetEvaluator, model_factory  # noqa: E402
from hl_flower.image_sets import load_dataset  # noqa: E402
from hl_flower.observation import flatten_weights, reference_observation  # noqa: E402
from hl_flower.reference_task import build_node_model  # noqa: E402
from hl_flower.simulation import simulate  # noqa: E402
from strategies import FlowerBaseline, HomogeneousLearning, StepResult  # noqa: E402


def timed_steps(strategy, grid: Grid, config, episodes: int) -> list[StepResult]:
    """Run ``strategy`` for ``episodes`` episodes; every round's result."""
    steps: list[StepResult] = []
    strategy.start(grid, model_factory(config), TestSetEvaluator(config),
                   episodes=episodes, on_step=steps.append)
    return steps


def bare_hl_steps(config, agent: DQNAgent, episodes: int, steps: int) -> list[float]:
    """The same work as an HL step, in this process, without Flower."""
    trainer = node_trainer(config, node_partition(config, config.starter_nodes[0]))
    evaluate = TestSetEvaluator(config)
    new_model = model_factory(config)
    rng = np.random.default_rng(0)
    policy = agent.get_weights()
    times = []
    for episode in range(episodes):
        weights = new_model(episode).to_numpy_ndarrays()
        holder = config.starter_nodes[0]
        for _ in range(steps):
            started = time.perf_counter()
            data = node_partition(config, holder)
            trainer.model.set_weights(weights)
            trainer.fit_epochs(data.x, data.y, 1, config.batch_size, rng)
            trained = trainer.model.get_weights()
            observation = reference_observation(
                flatten_weights(weights), {holder: flatten_weights(trained)},
                config.num_nodes, config.pca_components)
            q = q_values(policy, observation[None, :])[0]
            holder = int(np.argmax(q)) if rng.random() > 0.5 else int(
                rng.integers(config.num_nodes))
            evaluate(ArrayRecord(trained))
            weights = trained
            times.append(time.perf_counter() - started)
    return times


def bare_fedavg_rounds(config, rounds: int) -> list[float]:
    """FedAvg's work per round (every node trains, average, evaluate), bare."""
    trainer = node_trainer(config, node_partition(config, 0))
    evaluate = TestSetEvaluator(config)
    weights = model_factory(config)(0).to_numpy_ndarrays()
    rng = np.random.default_rng(0)
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        updates, sizes = [], []
        for node in range(config.num_nodes):
            data = node_partition(config, node)
            trainer.model.set_weights(weights)
            trainer.fit_epochs(data.x, data.y, 1, config.batch_size, rng)
            updates.append(trainer.model.get_weights())
            sizes.append(len(data.y))
        weights = [np.average(np.stack(layer), axis=0, weights=sizes)
                   for layer in zip(*updates, strict=True)]
        evaluate(ArrayRecord(weights))
        times.append(time.perf_counter() - started)
    return times


def reference_loop(config, agent: DQNAgent, episodes: int, steps: int
                   ) -> tuple[list[float], list[float]]:
    """The reference's work per step (and per episode reset), re-created."""
    dataset = load_dataset(config.dataset)
    x_test = dataset.x_test
    one_hot = np.eye(dataset.num_classes, dtype=np.float32)  # the CNN's categorical loss
    y_test = one_hot[dataset.y_test]
    rng = np.random.default_rng(0)
    step_times, reset_times = [], []
    for _ in range(episodes):
        started = time.perf_counter()
        build = (dataset.input_shape, dataset.num_classes, config.learning_rate)
        global_model = build_node_model(*build)
        clients = [build_node_model(*build) for _ in range(config.num_nodes)]
        for client in clients:
            client.set_weights(global_model.get_weights())
        reset_times.append(time.perf_counter() - started)
        for _ in range(steps):
            started = time.perf_counter()
            node = int(rng.integers(config.num_nodes))
            data = node_partition(config, node)
            clients[node].fit(data.x, one_hot[data.y], epochs=1, batch_size=config.batch_size,
                              verbose=0)
            global_model.set_weights(clients[node].get_weights())
            stack = np.array([flatten_weights(c.get_weights()) for c in clients])
            observation = PCA(n_components=config.pca_components).fit_transform(stack)
            for client in clients:
                client.set_weights(global_model.get_weights())
            global_model.evaluate(x_test, y_test, verbose=0)
            agent.network.predict(observation.reshape(1, -1), verbose=0)
            step_times.append(time.perf_counter() - started)
    return step_times, reset_times


def describe(name: str, times: list[float]) -> str:
    """One table row: median, 10th-90th percentile, mean, count."""
    p10, p90 = np.percentile(times, [10, 90])
    return (f"| {name} | {statistics.median(times):.3f} | {p10:.3f}-{p90:.3f} | "
            f"{statistics.fmean(times):.3f} | {len(times)} |")


def hl_step_times(episodes: int, steps: int) -> dict[str, list[float]]:
    """Parts 1 and 2 only: HL steps through Flower and the bare work."""
    config = preset("quick").replace(goal=0.99, max_steps=steps, episodes=episodes)
    results: dict[str, list[float]] = {}
    server_app = ServerApp()

    @server_app.main()
    def run(grid: Grid, context: Context) -> None:
        agent = DQNAgent(config, seed=0)
        hl = HomogeneousLearning.from_config(config, distance_matrix(config), agent=agent)
        results["hl"] = [s.time_step for s in timed_steps(hl, grid, config, episodes)]
        results["hl_bare"] = bare_hl_steps(config, agent, episodes, steps)

    simulate(server_app, config.num_nodes)
    return results


def determinism_cost(args: argparse.Namespace) -> None:
    """Pinned and free kernels, alternately in fresh processes; print the ratio."""
    medians: dict[str, dict[str, list[float]]] = {"pinned": {}, "free": {}}
    for repeat in range(args.repeats):
        for mode, switch in (("pinned", "1"), ("free", "0")):
            done = subprocess.run(
                [sys.executable, __file__, "--hl-only-json", "--episodes",
                 str(args.episodes), "--steps", str(args.steps)],
                env=os.environ | {"HL_DETERMINISTIC": switch},
                capture_output=True, text=True, check=True)
            times = json.loads(done.stdout.splitlines()[-1])
            for key, values in times.items():
                medians[mode].setdefault(key, []).append(statistics.median(values))
            print(f"repeat {repeat + 1}, {mode}: median HL step {medians[mode]['hl'][-1]:.3f} s,"
                  f" bare {medians[mode]['hl_bare'][-1]:.3f} s", flush=True)
    print(f"\n{args.episodes} episodes x {args.steps} steps per process, {args.repeats} "
          "processes per mode; medians of the per-process medians (seconds)\n")
    print("| what | pinned (HL_DETERMINISTIC=1) | free (HL_DETERMINISTIC=0) | pinned / free |")
    print("|---|---|---|---|")
    for key, name in (("hl", "HL step through Flower"), ("hl_bare", "HL step, bare work")):
        pinned, free = (statistics.median(medians[m][key]) for m in ("pinned", "free"))
        print(f"| {name} | {pinned:.3f} | {free:.3f} | {pinned / free:.2f} |")


def main() -> None:
    """Measure everything in one run and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--fedavg-rounds", type=int, default=4)
    parser.add_argument("--determinism-cost", action="store_true",
                        help="compare pinned and free kernels (see above)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="processes per mode with --determinism-cost")
    parser.add_argument("--hl-only-json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.determinism_cost:
        determinism_cost(args)
        return
    if args.hl_only_json:
        print(json.dumps(hl_step_times(args.episodes, args.steps)))
        return
    config = preset("quick").replace(goal=0.99, max_steps=args.steps,
                                     episodes=args.episodes)
    results: dict[str, list[float]] = {}
    parts: dict[str, list[float]] = {}
    server_app = ServerApp()

    @server_app.main()
    def run(grid: Grid, context: Context) -> None:
        agent = DQNAgent(config, seed=0)
        hl = HomogeneousLearning.from_config(config, distance_matrix(config), agent=agent)
        steps = timed_steps(hl, grid, config, args.episodes)
        results["hl"] = [s.time_step for s in steps]
        parts.update({
            "node: local epoch": [s.time_train for s in steps],
            "node: observation + DQN choice": [s.time_observe for s in steps],
            "server: evaluation": [s.time_evaluate for s in steps],
            "the rest: messages, serialisation, scheduling": [
                s.time_step - s.time_train - s.time_observe - s.time_evaluate
                for s in steps]})
        fedavg = FlowerBaseline.from_config(config.replace(max_steps=args.fedavg_rounds))
        results["fedavg"] = [s.time_step for s in timed_steps(fedavg, grid, config, 1)]
        results["hl_bare"] = bare_hl_steps(config, agent, args.episodes, args.steps)
        results["fedavg_bare"] = bare_fedavg_rounds(config, args.fedavg_rounds)
        results["reference"], results["reference_reset"] = reference_loop(
            config, agent, args.episodes, args.steps)

    simulate(server_app, config.num_nodes)
    print(f"mnist-5k, {config.num_nodes} nodes, {args.episodes} episodes x "
          f"{args.steps} steps, {args.fedavg_rounds} FedAvg rounds (seconds)\n")
    print("| what | median | p10-p90 | mean | n |\n|---|---|---|---|---|")
    for key, name in (("hl", "HL step through Flower"),
                      ("hl_bare", "HL step, bare TensorFlow work"),
                      ("reference", "reference loop step (re-created)"),
                      ("reference_reset", "reference episode reset (11 models)"),
                      ("fedavg", "FedAvg round through Flower"),
                      ("fedavg_bare", "FedAvg round, bare TensorFlow work")):
        print(describe(name, results[key]))
    print("\nWhere an HL step through Flower goes:\n")
    print("| part | median | p10-p90 | mean | n |\n|---|---|---|---|---|")
    for name, times in parts.items():
        print(describe(name, times))
    median = statistics.median
    mean = statistics.fmean
    print(f"\nFlower + HL overhead: median HL step / median bare step = "
          f"{median(results['hl']) / median(results['hl_bare']):.2f}")
    print(f"FedAvg through Flower / bare (median round) = "
          f"{median(results['fedavg']) / median(results['fedavg_bare']):.2f}")
    print(f"mean HL step / mean reference step = "
          f"{mean(results['hl']) / mean(results['reference']):.2f}")


if __name__ == "__main__":
    main()
