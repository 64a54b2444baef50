"""HL on a node as functions (hl_flower.node): what a user's own ClientApp calls."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from hl_flower.config import HLConfig, to_flat
from hl_flower.dqn import DQNAgent
from hl_flower.messages import ARRAYS, HL_CONFIG, METRICS, POLICY, QUERY_IDENTIFY, STEP
from hl_flower.node import identify_reply, train_reply, trainer_for

ROOT = Path(__file__).resolve().parents[1]
CONFIG = HLConfig(num_nodes=3, pca_components=2, dqn_hidden_1=8, dqn_hidden_2=8,
                  learning_rate=0.01)


@pytest.fixture(autouse=True)
def server_identity() -> None:
    """Messages are stamped with a run's identity, as inside a ServerApp."""
    TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 7, 1, 0


def own_model() -> keras.Model:
    """A user's model, left uncompiled: 4 features, 3 classes (seeded, so
    the tests do not depend on what ran before)."""
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(16, activation="relu"),
                             keras.layers.Dense(3)])


def own_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 90)
    x = rng.normal(size=(90, 4)) + 2.0 * y[:, None]
    return ((x - x.mean(axis=0)) / x.std(axis=0)).astype(np.float32), y


def train_message(weights: list[np.ndarray], decide: bool, epsilon: float = 0.0) -> Message:
    step = ConfigRecord({"episode": 0, "episode-key": 1, "step": 1, "epsilon": epsilon,
                         "decide": decide, "policy-version": 5, "keep-policy": True})
    content = RecordDict({ARRAYS: ArrayRecord(weights), HL_CONFIG: ConfigRecord(to_flat(CONFIG)),
                          STEP: step})
    if decide:
        content[POLICY] = ArrayRecord(DQNAgent(CONFIG, seed=0).get_weights())
    message = Message(content, dst_node_id=1, message_type=MessageType.TRAIN)
    return message


def node_context() -> Context:
    return Context(run_id=7, node_id=1, node_config={"partition-id": 2, "num-partitions": 3},
                   state=RecordDict(), run_config={})


def test_train_reply_trains_the_users_model_and_chooses_a_node() -> None:
    x, y = own_data()
    model = own_model()
    trainer = trainer_for(model, x, learning_rate=0.01)
    assert trainer_for(model, x) is trainer  # built once per model
    received = [w.copy() for w in model.get_weights()]
    context = node_context()
    reply = train_reply(train_message(received, decide=True), context, trainer, x, y, 2)
    metrics = reply.content[METRICS]
    trained = reply.content[ARRAYS].to_numpy_ndarrays()
    assert any(not np.array_equal(a, b) for a, b in zip(trained, received, strict=True))
    assert metrics["partition-id"] == 2 and metrics["num-examples"] == 90
    assert list(metrics["next-nodes"])[0] in range(3)
    assert len(metrics["observation"]) == CONFIG.observation_size
    assert metrics["policy-version"] == 5  # the policy sent is kept in Context.state
    again = train_reply(train_message(trained, decide=False), context, trainer, x, y, 2)
    assert "next-nodes" not in again.content[METRICS]
    assert again.content[METRICS]["policy-version"] == 5


def test_several_epochs_of_train_reply_raise_the_accuracy() -> None:
    x, y = own_data()
    trainer = trainer_for(own_model(), x, learning_rate=0.01)
    before = trainer.accuracy(x, y)
    weights = trainer.model.get_weights()
    context = node_context()
    for _ in range(20):
        reply = train_reply(train_message(weights, decide=False), context, trainer, x, y, 2)
        weights = reply.content[ARRAYS].to_numpy_ndarrays()
    trainer.model.set_weights(weights)
    assert trainer.accuracy(x, y) > max(before + 0.2, 0.9)


def test_identify_reply_names_the_partition_and_the_policy_held() -> None:
    message = Message(RecordDict(), dst_node_id=1, message_type=QUERY_IDENTIFY)
    metrics = identify_reply(message, node_context(), 2, 3).content[METRICS]
    assert (metrics["partition-id"], metrics["num-partitions"], metrics["policy-version"]) \
        == (2, 3, 0)


@pytest.mark.slow
def test_a_users_own_client_app_runs_hl(tmp_path: Path) -> None:
    """examples/breast_cancer/own_client_app.py, a ClientApp with its own
    model and data split, runs HL through Flower's simulation engine: the
    accuracy rises and the chosen node is the next holder."""
    done = subprocess.run(
        [sys.executable, "sim.py", "--task", "examples/breast_cancer/task.py", "--nodes", "4",
         "--goal", "0.9", "--main-samples", "60", "--other-samples", "30", "--episodes", "1",
         "--client-app",
         "examples.breast_cancer.own_client_app:app", "--out", str(tmp_path), "--name", "own"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    with (tmp_path / "own" / "steps.csv").open() as handle:
        steps = list(csv.DictReader(handle))
    accuracy = [float(r["accuracy"]) for r in steps]
    assert accuracy[-1] >= 0.9 > accuracy[0], accuracy
    for before, after in zip(steps, steps[1:], strict=False):
        assert before["next_node"] == after["holder"]


def test_trainer_for_compiles_a_softmax_model_on_probabilities() -> None:
    x, _ = own_data()
    keras.utils.set_random_seed(0)
    softmax = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    assert trainer_for(softmax, x).model.loss.get_config()["from_logits"] is False
    assert trainer_for(own_model(), x).model.loss.get_config()["from_logits"] is True
