"""The task seam (hl_flower.task): a user's own Keras model and data.

The task written here is not an image set: 12 features per sample, 3
classes, an MLP with BatchNormalization, Dropout and LayerNormalization. Its
variants make every mistake a task can make; each is one line, exit code 2,
and nothing written.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from sim_runner import refused

from hl_flower import task
from hl_flower.client_app import node_partition, node_trainer
from hl_flower.config import HLConfig
from hl_flower.model import set_optimizer_state

TABULAR = '''
import keras
import numpy as np

FEATURES, CLASSES = 12, 3


def _samples(count, seed):
    """Three classes told apart by which block of four features is high."""
    rng = np.random.default_rng(seed)
    y = np.arange(count) % CLASSES
    x = rng.normal(0.0, 1.0, (count, FEATURES)).astype(np.float32)
    for i, label in enumerate(y):
        x[i, label * 4:label * 4 + 4] += 2.5
    return x, y


def load_model():
    return keras.Sequential([
        keras.Input(shape=(FEATURES,)),
        keras.layers.Dense(16),
        keras.layers.BatchNormalization(),
        keras.layers.Activation("relu"),
        keras.layers.Dropout(0.1),
        keras.layers.LayerNormalization(),
        keras.layers.Dense(OUTPUTS),
    ])


def load_training_set(TRAIN_ARGS):
    x, y = _samples(600, 1)
    return TRAIN_X, TRAIN_Y


def load_test_set():
    x, y = _samples(300, 2)
    return TEST_X, TEST_Y
'''
GOOD = {"TRAIN_ARGS": "", "OUTPUTS": "CLASSES", "TRAIN_X": "x", "TRAIN_Y": "y", "TEST_X": "x",
        "TEST_Y": "y"}
ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--nodes", "4", "--main-samples", "60", "--other-samples", "30"]


def write_task(folder: Path, extra: str = "", **changes: str) -> Path:
    """The tabular task with placeholders replaced (and ``extra`` appended)."""
    source = TABULAR
    for name, value in (GOOD | changes).items():
        source = source.replace(name, value)
    path = folder / "task.py"
    path.write_text(source + textwrap.dedent(extra))
    return path


def config_for(path: Path, **changes: object) -> HLConfig:
    return HLConfig(task=str(path), num_nodes=4, main_samples=60, other_samples=30,
                    **changes)


def test_the_tabular_task_passes_every_check(tmp_path: Path) -> None:
    config = config_for(write_task(tmp_path))
    assert task.check_task(config) == []  # float features: no advice
    assert task.model_classes(config, task.training_set(config).x_train) == 3
    assert task.training_set(config).x_train.shape == (600, 12)
    assert task.test_set(config).x_test.shape == (300, 12)


def test_raw_whole_number_features_get_one_line_of_advice(tmp_path: Path) -> None:
    path = write_task(tmp_path, TRAIN_X="(np.abs(x) * 60).astype(np.uint8)",
                      TEST_X="(np.abs(x) * 60).astype(np.uint8)")
    advice = task.check_task(config_for(path))
    assert len(advice) == 1 and "uint8 samples up to" in advice[0] and "x / 255" in advice[0]


def test_fresh_weights_follow_the_models_initialisers_and_the_seed(tmp_path: Path) -> None:
    config = config_for(write_task(tmp_path))
    model = task.shared_model(config)
    names = [v.name for v in model.weights]
    x = task.training_set(config).x_train
    first, again = task.initial_weights(config, 7, x), task.initial_weights(config, 7, x)
    other = task.initial_weights(config, 8, x)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    kernels = [i for i, name in enumerate(names) if name == "kernel"]
    assert all(not np.array_equal(first[i], other[i]) for i in kernels)
    by_name = dict(zip(names, first, strict=False))  # the first layer of each name
    assert np.all(by_name["gamma"] == 1) and np.all(by_name["beta"] == 0)
    assert np.all(by_name["moving_mean"] == 0) and np.all(by_name["moving_variance"] == 1)


def test_a_node_trains_the_task_model_on_its_partition(tmp_path: Path) -> None:
    """Node 1 holds 60 samples of class 1 and 30 of the others; its epochs on
    the uncompiled logits model (compiled by HL) raise test accuracy, and
    BatchNorm's moving statistics move with the weights."""
    config = config_for(write_task(tmp_path), learning_rate=0.01)
    data = node_partition(config, 1)
    assert data.x.shape == (90, 12) and np.sum(data.y == 1) == 60
    trainer = node_trainer(config, data)
    start = task.initial_weights(config, 0, data.x)
    trainer.model.set_weights(start)
    test = task.test_set(config)
    before = trainer.accuracy(test.x_test, test.y_test)
    trainer.fit_epochs(data.x, data.y, 8, 16, np.random.default_rng(0))
    after = trainer.accuracy(test.x_test, test.y_test)
    assert after > max(before, 0.6), (before, after)
    names = [v.name for v in trainer.model.weights]
    moved = trainer.model.get_weights()[names.index("moving_mean")]
    assert not np.array_equal(moved, start[names.index("moving_mean")])


def test_a_training_with_dropout_depends_on_its_seed_alone(tmp_path: Path) -> None:
    """Dropout's masks come from the step's generator, not from what the
    process trained before: the same start and seed give the same weights."""
    config = config_for(write_task(tmp_path))
    data = node_partition(config, 2)
    trainer = node_trainer(config, data)

    def trained(seed: int) -> list[np.ndarray]:
        trainer.model.set_weights(task.initial_weights(config, 0, data.x))
        set_optimizer_state(trainer.model, None)  # a fresh episode's Adam
        trainer.fit_epochs(data.x, data.y, 1, 16, np.random.default_rng(seed))
        return trainer.model.get_weights()

    first, other, again = trained(5), trained(6), trained(5)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_a_task_with_its_own_partitions_gives_each_node_its_data(tmp_path: Path) -> None:
    path = write_task(tmp_path, extra='''

        def load_partition(partition_id, num_partitions, seed):
            x, y = _samples(40 + partition_id, 100 + seed)
            return x, y
        ''')
    config = config_for(path, seed=3)
    task.check_task(config)
    assert [len(node_partition(config, n).y) for n in range(4)] == [40, 41, 42, 43]


def test_settings_reach_functions_that_name_them(tmp_path: Path) -> None:
    path = write_task(tmp_path, TRAIN_ARGS="seed", TRAIN_X="x[:seed * 100]",
                      TRAIN_Y="y[:seed * 100]")
    assert task.training_set(config_for(path, seed=4)).x_train.shape == (400, 12)
    assert task.training_set(config_for(path, seed=5)).x_train.shape == (500, 12)


def test_a_subclassed_model_is_sized_by_its_output(tmp_path: Path) -> None:
    """A subclassed keras.Model has no output_shape; C comes from its output."""
    path = write_task(tmp_path, extra='''

        class Classifier(keras.Model):
            def __init__(self):
                super().__init__()
                self.hidden = keras.layers.Dense(16, activation="relu")
                self.out = keras.layers.Dense(CLASSES)

            def call(self, x, training=False):
                return self.out(self.hidden(x))

        def load_model():
            return Classifier()
        ''')
    config = config_for(path)
    task.check_task(config)
    data = node_partition(config, 0)
    trainer = node_trainer(config, data)
    trainer.fit_epochs(data.x, data.y, 2, 16, np.random.default_rng(0))
    assert task.model_classes(config, data.x) == 3


def test_a_module_name_selects_a_task_too() -> None:
    config = HLConfig(task="hl_flower.reference_task", dataset="digits")
    assert task.training_set(config).input_shape == (8, 8, 1)
    assert task.model_classes(config, task.training_set(config).x_train) == 10


BAD_TASKS = [
    ({"OUTPUTS": "CLASSES + 1"}, "", "the model has 4 outputs per sample, the training set 3"),
    ({"TRAIN_Y": "np.eye(3)[y]"}, "", "y has shape (600, 3)"),
    ({"TRAIN_X": "x[:-1]"}, "", "x has shape (599, 12) and y (600,)"),
    ({"TRAIN_Y": "y + 1"}, "", "labels run 1..3, expected 0..2"),
    ({"TRAIN_Y": "y * 2"}, "", "take the values 0, 2, 4, expected every class 0..C-1"),
    ({"TEST_Y": "np.where(y == 2, 3, y)"}, "", "load_test_set(): a label is 3, but the model "
                                                "has 3 classes"),
    ({"TRAIN_Y": "y.astype(float) + 0.5"}, "", "not whole numbers"),
    ({"TRAIN_X": "np.where(np.arange(600)[:, None] == 7, np.nan, x)"}, "",
     "1 of 600 samples hold NaN or Inf (the first is sample 7)"),
    ({"TEST_X": "x[:, :10]"}, "", "load_test_set() gives samples of shape (10,), "
                                  "load_training_set() (12,)"),
    ({"TRAIN_X": "x[:, :10]", "TEST_X": "x[:, :10]"}, "", "the model cannot take samples"),
    ({"TRAIN_Y": "y[:0]", "TRAIN_X": "x[:0]"}, "", "holds no samples"),
    ({}, "\ndef load_model():\n    return 'a model'\n", "return a keras.Model"),
    ({}, "\ndef load_test_set():\n    raise RuntimeError('no network')\n",
     "load_test_set() raised RuntimeError: no network"),
    ({}, "\ndel load_test_set\n", "defines no load_test_set()"),
    ({}, "\ndef broken(:\n", "importing it failed (SyntaxError"),
    ({}, "\nimport no_such_package_here\n", "importing it failed (No module named "
                                               "'no_such_package_here'); install what"),
    ({"TRAIN_Y": "np.array(['abc'[i % 3] for i in y])"}, "", "y holds text or objects"),
    ({}, "\n_plain = load_model\n\ndef load_model():\n    model = _plain()\n"
         "    model.compile(optimizer='adam')\n    return model\n",
     "compile it with one loss, or leave it uncompiled"),
    ({}, "\n_plain = load_model\n\ndef load_model():\n    model = _plain()\n"
         "    model.compile(optimizer='adam', loss='mse')\n    return model\n",
     "one training step fails with its loss"),
    ({}, "\ndef load_partition(partition_id):\n    return _samples(9, 0)\n",
     "(HL calls it as load_partition(partition_id, num_partitions))"),
    ({}, "\ndef load_partition(partition_id, num_partitions):\n    return _samples(9, 0)[0], "
         "np.full(9, 5)\n", "load_partition(): a label is 5"),
]


@pytest.mark.parametrize(("changes", "extra", "expected"), BAD_TASKS)
def test_a_task_mistake_is_one_line_exit_2_and_nothing_written(
        tmp_path: Path, changes: dict[str, str], extra: str, expected: str) -> None:
    (tmp_path / "task").mkdir()
    path = write_task(tmp_path / "task", extra, **changes)
    out = tmp_path / "runs"
    done = refused("--task", str(path), *SMALL, "--out", str(out))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --task "), done.stderr
    assert expected in lines[0], lines[0]
    assert "Traceback" not in done.stderr and not out.exists()


def test_a_missing_task_file_or_module_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not python\n")
    for given, expected in ((str(tmp_path / "nope.py"), "no such file"),
                            (str(tmp_path / "nope"), "no such file"),
                            (str(tmp_path), "is a folder"),
                            (str(tmp_path / "notes.txt"), "is not a .py file"),
                            ("no_such_package.task", "no module of that name")):
        done = refused("--task", given, *SMALL, "--out", str(tmp_path / "runs"))
        assert done.returncode == 2 and expected in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def run_sim(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "sim.py", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_sim_py_trains_and_compares_on_a_users_task(tmp_path: Path) -> None:
    """Train and compare on the tabular task through Flower's simulation
    engine: the accuracy rises over each episode's steps, the chosen node is
    the next holder, and every method of compare runs on the same task."""
    path = write_task(tmp_path)
    settings = ["--task", str(path), *SMALL, "--learning-rate", "0.01", "--goal", "0.97",
                "--max-steps", "5", "--out", str(tmp_path / "runs")]
    done = run_sim(*settings, "--episodes", "2", "--name", "train")
    assert done.returncode == 0, done.stderr[-3000:]
    folder = tmp_path / "runs" / "train"
    assert json.loads((folder / "config.json").read_text())["task"] == str(path)
    steps = read_csv(folder / "steps.csv")
    for episode in ("0", "1"):
        rows = [r for r in steps if r["episode"] == episode]
        accuracy = [float(r["accuracy"]) for r in rows]
        assert accuracy[-1] > accuracy[0] and max(accuracy) > 0.8, accuracy
        for before, after in zip(rows, rows[1:], strict=False):
            assert before["next_node"] == after["holder"]
    done = run_sim("compare", *settings, "--episodes", "1", "--seeds", "1", "--name", "cmp")
    assert done.returncode == 0, done.stderr[-3000:]
    summary = read_csv(tmp_path / "runs" / "cmp" / "compare.csv")
    assert {"HL-greedy", "Standalone", "FedAvg"} <= {r["method"] for r in summary}
    assert all(float(r["accuracy_mean"]) > 0.8 for r in summary), summary


@pytest.mark.slow
def test_flwr_run_trains_the_example_task(tmp_path: Path) -> None:
    """``flwr run`` through the simulation engine (a local SuperLink that
    ``flwr`` starts, stopped at the end) on examples/breast_cancer: the task
    is found from the installed app and the episode reaches the goal."""
    from deploy.cli import flower_executable
    from deploy.local import LocalProcess, environment, free_port

    run_dir = tmp_path / "flwr"
    config = (f"task='examples/breast_cancer/task.py' num-nodes=4 main-samples=60 "
              f"other-samples=30 goal=0.9 episodes=1 run-dir='{run_dir}'")
    run = LocalProcess("flwr-run", [
        flower_executable("flwr"), "run", str(ROOT), "--stream", "--federation-config",
        "num-supernodes=4", "--run-config", config], tmp_path / "flwr-run.log",
        environment(tmp_path / "flwr-home") | {  # not Flower's fixed ports, 39091 and
            # 39093: inside the kernel's ephemeral range, and shared by every flwr run
            "FLWR_LOCAL_SUPERLINK_HTTP_API_PORT": str(free_port()),
            "FLWR_LOCAL_CONTROL_API_PORT": str(free_port())}, cwd=tmp_path)
    try:
        assert run.wait_for_exit(600) == 0, run.tail(40)
    finally:
        run.stop()  # with the local SuperLink it started (same family tag)
    assert run.family() == []
    steps = read_csv(run_dir / "steps.csv")
    assert steps, run.tail(40)
    for before, after in zip(steps, steps[1:], strict=False):
        assert before["next_node"] == after["holder"]
    assert float(steps[-1]["accuracy"]) >= 0.9 or len(steps) == 36
