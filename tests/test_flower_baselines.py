"""Flower's aggregating strategies as compare baselines (strategies/fedavg.py):
names, settings and their defaults, the server update each one makes from the
same replies, the refusal of bad settings, and (slow) every one of them
through ``sim.py compare`` on the simulation engine."""

from __future__ import annotations

import csv
import inspect
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAdam, FedAvgM, FedProx, FedYogi
from flwr.supercore.task_identity import TaskIdentity
from sim_runner import refused

from hl_flower.config import HLConfig
from hl_flower.messages import ARRAYS, HL_CONFIG, METRICS, PROXIMAL_MU, STEP
from hl_flower.methods import DEFAULT_METHODS, FLOWER_STRATEGIES, METHODS, check_methods
from hl_flower.report import markdown_table
from strategies import FLOWER_STRATEGIES as STRATEGY_CLASSES
from strategies import FlowerBaseline
from strategies.fedavg import flower_strategy

NODES = 3
NODE_IDS = [101, 202, 303]
SENT = np.array([1.0, -2.0, 0.5], np.float32)


@pytest.fixture(autouse=True)
def server_identity() -> None:
    """Messages are stamped with the run's identity, as inside a ServerApp."""
    TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 7, 1, 0


class AnsweringGrid:
    """A grid whose node ``i`` returns the sent weights + ``shift * (i + 1)``,
    in float32 whatever it was sent (a node trains its own float32 model)."""

    def __init__(self, shift: float = 0.25) -> None:
        self.shift = shift
        self.sent: list[Message] = []

    def get_node_ids(self) -> list[int]:
        return list(NODE_IDS)

    def send_and_receive(self, messages, timeout=None) -> list[Message]:
        self.sent = list(messages)
        return [self.reply(m) for m in self.sent]

    def reply(self, message: Message) -> Message:
        node = NODE_IDS.index(message.metadata.dst_node_id)
        weights = (message.content[ARRAYS]["w"].numpy() + self.shift * (node + 1)
                   ).astype(np.float32)
        metrics = MetricRecord({"train-loss": 1.0, "time-train": 0.1, "time-observe": 0.0,
                                "num-examples": 10, "policy-version": 0,
                                "partition-id": node})
        return Message(RecordDict({ARRAYS: ArrayRecord({"w": Array(weights)}),
                                   METRICS: metrics}), reply_to=message)


def play(method: str, rounds: int = 1, **settings: float) -> tuple[np.ndarray, AnsweringGrid]:
    """The global model after ``rounds`` rounds of ``method`` on the answering grid."""
    baseline = FlowerBaseline.from_config(HLConfig(num_nodes=NODES, **settings), method)
    grid = AnsweringGrid()
    baseline.begin_episode(0)
    arrays = ArrayRecord({"w": Array(SENT.copy())})
    for step in range(1, rounds + 1):
        step_config = ConfigRecord({"episode": 0, "episode-key": 1, "step": step,
                                    "epsilon": 0.0, "server-round": step, "decide": False,
                                    "policy-version": 0})
        arrays = baseline.play_round(grid, step, arrays, step_config).arrays
    return arrays["w"].numpy(), grid


# --- names ------------------------------------------------------------------

def test_every_flower_strategy_is_a_method_and_has_a_class() -> None:
    assert set(FLOWER_STRATEGIES) == set(STRATEGY_CLASSES)
    assert check_methods(["FedYogi", "FedAdam", "FedAvgM", "FedProx", "FedAvg"]) == list(
        FLOWER_STRATEGIES)
    assert set(FLOWER_STRATEGIES) <= set(METHODS)
    assert set(DEFAULT_METHODS) & set(FLOWER_STRATEGIES) == {"FedAvg"}
    for name in FLOWER_STRATEGIES:
        assert type(flower_strategy(name, HLConfig())).__name__ == name


def test_an_unknown_strategy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown Flower strategy 'Krum'"):
        FlowerBaseline.from_config(HLConfig(), "Krum")


# --- settings ---------------------------------------------------------------

def flower_default(kind: type, argument: str) -> float:
    return inspect.signature(kind.__init__).parameters[argument].default


def test_the_settings_default_to_flowers_defaults() -> None:
    config = HLConfig()
    assert config.proximal_mu == flower_default(FedProx, "proximal_mu")
    assert config.server_momentum == flower_default(FedAvgM, "server_momentum")
    for kind in (FedAdam, FedYogi):
        for argument in ("beta_1", "beta_2", "tau"):
            assert getattr(config, f"server_{argument}") == flower_default(kind, argument)
    assert config.server_learning_rate == 0  # each strategy's own default, below
    assert flower_strategy("FedAvgM", config).server_learning_rate == flower_default(
        FedAvgM, "server_learning_rate")
    for kind in (FedAdam, FedYogi):
        assert flower_strategy(kind.__name__, config).eta == flower_default(kind, "eta")


def test_the_settings_reach_the_strategies() -> None:
    config = HLConfig(fedavg_fraction=0.5, proximal_mu=0.3, server_learning_rate=0.7,
                      server_momentum=0.8, server_beta_1=0.5, server_beta_2=0.6,
                      server_tau=0.01)
    assert flower_strategy("FedProx", config).proximal_mu == 0.3
    momentum = flower_strategy("FedAvgM", config)
    assert (momentum.server_learning_rate, momentum.server_momentum) == (0.7, 0.8)
    for name in ("FedAdam", "FedYogi"):
        adaptive = flower_strategy(name, config)
        assert (adaptive.eta, adaptive.beta_1, adaptive.beta_2, adaptive.tau) == (
            0.7, 0.5, 0.6, 0.01)
    for name in FLOWER_STRATEGIES:
        assert flower_strategy(name, config).fraction_train == 0.5


@pytest.mark.parametrize(("flag", "value"), [
    ("--proximal-mu", "-0.1"), ("--proximal-mu", "nan"), ("--proximal-mu", "inf"),
    ("--server-learning-rate", "-1"), ("--server-momentum", "1"),
    ("--server-momentum", "-0.5"), ("--server-beta-1", "1"), ("--server-beta-2", "-0.1"),
    ("--server-beta-2", "1.5"), ("--server-tau", "0"), ("--server-tau", "-1e-3"),
    ("--fedavg-fraction", "1.5"), ("--path-average", "1"), ("--path-average", "-0.5"),
    ("--path-average", "nan"),
])
def test_a_bad_setting_is_one_line_naming_its_flag_and_exit_2(flag: str, value: str,
                                                              tmp_path: Path) -> None:
    done = refused("compare", "--methods", "FedAvg", f"{flag}={value}",
                   "--out", str(tmp_path / "runs"))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {flag} must be"), done.stderr
    assert not (tmp_path / "runs").exists()


# --- the rounds ---------------------------------------------------------------

def test_fedprox_tells_every_node_its_mu_and_the_run_settings() -> None:
    _, grid = play("FedProx", proximal_mu=0.25)
    assert len(grid.sent) == NODES
    for message in grid.sent:
        assert message.content[STEP][PROXIMAL_MU] == 0.25
        assert message.content[HL_CONFIG]["proximal-mu"] == 0.25
    _, plain = play("FedAvg")
    assert all(PROXIMAL_MU not in m.content[STEP] for m in plain.sent)


def test_fedavg_and_fedprox_average_while_the_others_step_differently() -> None:
    average = SENT + 0.25 * 2  # nodes moved by 0.25, 0.5, 0.75, equally weighted
    fedavg, _ = play("FedAvg")
    np.testing.assert_allclose(fedavg, average, rtol=1e-6)
    np.testing.assert_allclose(play("FedProx", proximal_mu=1.0)[0], average, rtol=1e-6)
    # FedAvgM: w + lr * (average - w) in the first round (Hsu et al., 2019)
    np.testing.assert_allclose(play("FedAvgM", server_learning_rate=0.5)[0],
                               SENT + 0.5 * (average - SENT), rtol=1e-6)
    # Momentum shows from round 2: the second step is (1 + momentum) x the update
    twice, _ = play("FedAvg", rounds=2)
    with_momentum, _ = play("FedAvgM", rounds=2, server_momentum=0.9)
    np.testing.assert_allclose(with_momentum - twice, 0.9 * 0.5, rtol=1e-5)
    for name in ("FedAdam", "FedYogi"):
        stepped, _ = play(name)
        assert not np.allclose(stepped, average), name
        assert np.all(stepped > SENT), name  # every node moved the weights up
    assert not np.allclose(play("FedAdam")[0], play("FedYogi")[0])  # eta 0.1 vs 0.01


@pytest.mark.parametrize("method", FLOWER_STRATEGIES)
def test_the_global_model_keeps_its_dtype_round_after_round(method: str) -> None:
    model, _ = play(method, rounds=3, server_momentum=0.9)  # FedAdam's step is float64
    assert model.dtype == np.float32


def test_each_episode_starts_a_new_flower_strategy() -> None:
    baseline = FlowerBaseline.from_config(HLConfig(num_nodes=NODES), "FedAdam")
    baseline.strategy.m_t = {"w": np.ones(3)}  # left from an earlier episode
    baseline.begin_episode(1)
    assert baseline.strategy.m_t is None and baseline.strategy.current_arrays is None


def test_the_report_explains_every_blank_cost() -> None:
    from hl_flower.compare import MethodRun

    runs = [MethodRun(name, 1, 3, True, 0.9, float("nan"), 10, 6, 1.0, "0")
            for name in ("FedAvg", "FedProx", "FedAdam")]
    table = markdown_table(runs, "t")
    assert "The communication cost of FedAvg, FedProx and FedAdam is blank" in table
    assert "FedAvg's communication cost is blank: it has" in markdown_table(runs[:1], "t")


# --- the real thing -------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--dataset", "digits", "--nodes", "4", "--main-samples", "140",
        "--other-samples", "100", "--learning-rate", "0.005", "--max-steps", "4"]


@pytest.mark.slow
def test_every_flower_strategy_runs_in_compare_to_the_report(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "sim.py", "compare", *TINY, "--seeds", "1",
         "--methods", ",".join(FLOWER_STRATEGIES), "--proximal-mu", "1.0",
         "--server-momentum", "0.9", "--out", str(tmp_path), "--name", "flower"],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    folder = tmp_path / "flower"
    with (folder / "compare.csv").open() as handle:
        assert [r["method"] for r in csv.DictReader(handle)] == list(FLOWER_STRATEGIES)
    with (folder / "compare_steps.csv").open() as handle:
        steps = list(csv.DictReader(handle))
    by_method = {name: [r for r in steps if r["method"] == name] for name in FLOWER_STRATEGIES}
    first_round_bytes = {int(rows[0]["cumulative_bytes"]) for rows in by_method.values()}
    assert len(first_round_bytes) == 1  # the same model to the same 4 nodes and back
    for rows in by_method.values():
        assert rows and all(r["holders"] == "0 1 2 3" for r in rows)
    curve = {name: [r["accuracy"] for r in rows] for name, rows in by_method.items()}
    assert curve["FedProx"] != curve["FedAvg"]  # the nodes applied mu
    assert curve["FedAdam"] != curve["FedAvg"] and curve["FedYogi"] != curve["FedAvg"]
    table = (folder / "compare.md").read_text()
    assert "The communication cost of FedAvg, FedProx, FedAvgM, FedAdam and FedYogi" in table
    for name in ("compare_accuracy_vs_bytes.png", "compare_steps.png"):
        assert (folder / name).stat().st_size > 0
    assert '"proximal-mu": 1.0' in (folder / "config.json").read_text()


def test_any_flower_strategy_object_can_be_played() -> None:
    from flwr.serverapp.strategy import FedAvg, FedAvgM

    own = FedAvgM(server_momentum=0.5, min_available_nodes=NODES)
    baseline = FlowerBaseline(own, num_nodes=NODES, goal=0.7, max_steps=5, seed=3)
    assert (baseline.name, baseline.goal, baseline.max_steps) == ("FedAvgM", 0.7, 5)
    baseline.begin_episode(0)
    assert baseline.strategy is not own and baseline.strategy.server_momentum == 0.5
    assert baseline.strategy.configrecord_key == "step" and own.configrecord_key == "config"
    with pytest.raises(ValueError, match="FedAvg or one of its subclasses"):
        FlowerBaseline(object(), num_nodes=NODES)
    with pytest.raises(ValueError, match="node_settings: unknown setting 'learning_rate'"):
        FlowerBaseline(FedAvg(), num_nodes=NODES, node_settings={"learning_rate": 0.1})
