"""Tasks: the model and the data HL trains, in the shape of Flower's ``task.py``.

A task is a Python module, named by ``--task`` (run-config key ``task``) as an
importable name (``examples.wine.task``) or as the path of a ``.py`` file. It
defines:

- ``load_model() -> keras.Model``: any Keras 3 classifier with one output of
  C units (one per class). An uncompiled model is compiled with sparse
  categorical cross-entropy (on probabilities when its outputs are
  probabilities, else on logits) and Adam at ``--learning-rate``; a compiled
  one keeps its own loss and optimizer.
- ``load_training_set() -> (x, y)``: every training sample, ``x`` of shape
  (n, ...) and ``y`` of shape (n,) with integer labels 0..C-1. HL partitions
  it into nodes with ``--partition``.
- ``load_test_set() -> (x, y)``: the server's test set, same shapes.
- optionally ``load_partition(partition_id, num_partitions) -> (x, y)``: a
  node's own data (for data that lives on the device); where it exists, nodes
  use it instead of a partition of the training set.
- optionally ``initial_weights(model, seed) -> list[np.ndarray]``: each
  episode's fresh weights. Without it they are the weights of a new
  ``load_model()`` whose unseeded initialisers draw from ``seed``.

A function that takes keyword arguments named like HL settings in snake_case
(``seed``, ``dataset``, ``num_nodes``, ``learning_rate``, ...) gets their values.
Everything a task returns is checked before a run starts; a mistake raises
:class:`TaskError` naming the function and the fix.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import importlib.util
import inspect
import random
import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from .data import DataError

if TYPE_CHECKING:
    import keras

    from .config import HLConfig
    from .data import Dataset
    from .model import LocalTrainer

REFERENCE_TASK = "hl_flower.reference_task"  # --task "" (the default)
REQUIRED = ("load_model", "load_training_set", "load_test_set")


class TaskError(ValueError):
    """A task cannot be loaded or returned something unusable; one line."""


def task_name(config: HLConfig) -> str:
    """The task a run uses: ``--task``, else the built-in reference task."""
    return config.task or REFERENCE_TASK


@functools.lru_cache(maxsize=8)
def import_task(reference: str) -> ModuleType:
    """The task module for ``reference`` (a module name or a ``.py`` path).

    Raises TaskError when it cannot be imported or lacks a required function.
    """
    as_path = reference.endswith(".py") or "/" in reference or Path(reference).exists()
    try:
        module = (_import_path(Path(reference)) if as_path
                  else importlib.import_module(reference))
    except TaskError:
        raise
    except ModuleNotFoundError as err:
        if not as_path and err.name and reference.startswith(err.name):
            raise TaskError(f"--task {reference}: no module of that name; give a module "
                            "name or the path of a .py file") from None
        raise TaskError(f"--task {reference}: importing it failed ({err}); install what "
                        "it imports") from None
    except Exception as err:  # noqa: BLE001 - any import failure is the task's
        raise TaskError(f"--task {reference}: importing it failed ({type(err).__name__}: "
                        f"{err}); fix the task's code") from None
    missing = [name for name in REQUIRED if not callable(getattr(module, name, None))]
    if missing:
        raise TaskError(f"--task {reference} defines no {', '.join(f'{m}()' for m in missing)}"
                        f"; a task defines {', '.join(f'{m}()' for m in REQUIRED)}")
    return module


def _import_path(path: Path) -> ModuleType:
    """Import a task file under a name unique to its resolved path; its
    folder goes on ``sys.path`` so that it can import its neighbours. A
    relative path not found from the working directory is looked up in the
    project (where ``flwr run`` installs the app)."""
    given = path
    if path.is_dir():
        raise TaskError(f"--task {given} is a folder; give the path of its task's .py file")
    if not path.is_absolute() and not path.exists():  # e.g. flwr run's installed app
        path = Path(__file__).resolve().parents[1] / path
    if not path.is_file():
        raise TaskError(f"--task {given}: no such file; give the path of a .py file "
                        "or a module name")
    if path.suffix != ".py":
        raise TaskError(f"--task {given} is not a .py file; give the path of a .py file "
                        "or a module name")
    resolved = path.resolve()
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:10]
    name = f"hl_task_{resolved.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise TaskError(f"--task {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    if str(resolved.parent) not in sys.path:
        sys.path.insert(0, str(resolved.parent))
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _keyword_names(function: Callable[..., Any], skip: int = 0) -> list[str]:
    """Parameter names of ``function`` after its first ``skip`` positional ones."""
    try:
        return list(inspect.signature(function).parameters)[skip:]
    except (TypeError, ValueError):
        return []


POSITIONAL = {"load_partition": 2, "initial_weights": 2}  # arguments HL passes itself
SIGNATURES = {"load_model": "load_model()", "load_training_set": "load_training_set()",
              "load_test_set": "load_test_set()",
              "load_partition": "load_partition(partition_id, num_partitions)",
              "initial_weights": "initial_weights(model, seed)"}


def task_config(config: HLConfig) -> HLConfig:
    """``config`` reduced to what the task sees: the task, the learning rate
    (an uncompiled model's Adam) and the settings its functions name; every
    other setting at its default. Runs that differ only elsewhere (goal,
    episodes, DQN) share one loaded task, its data and its model."""
    from .config import HLConfig

    module = import_task(task_name(config))
    names = {"task", "learning_rate"}
    for function in (*REQUIRED, *POSITIONAL):
        if callable(getattr(module, function, None)):
            names.update(_keyword_names(getattr(module, function), POSITIONAL.get(function, 0)))
    fields = {field.name for field in dataclasses.fields(config)}
    return dataclasses.replace(HLConfig(), **{name: getattr(config, name)
                                              for name in names & fields})


def call_task(module: ModuleType, function: str, config: HLConfig, *args: Any) -> Any:
    """``module.function(*args, **settings)`` with the HL settings the
    function names among its keyword parameters.

    Raises TaskError (one line) when the function raises.
    """
    target: Callable[..., Any] = getattr(module, function)
    settings = {field.name: getattr(config, field.name) for field in dataclasses.fields(config)}
    keywords = {name: settings[name] for name in _keyword_names(target, len(args))
                if name in settings}
    try:
        return target(*args, **keywords)
    except TaskError:
        raise
    except Exception as err:  # noqa: BLE001 - the user's code failed: one line
        if isinstance(err, DataError) and task_name(config) == REFERENCE_TASK:
            raise  # the built-in task's own line, naming --dataset
        called = (f" (HL calls it as {SIGNATURES[function]})"
                  if isinstance(err, TypeError) and function in SIGNATURES else "")
        raise TaskError(f"--task {task_name(config)}: {function}() raised "
                        f"{type(err).__name__}: {_first_line(err)}{called}") from None


def _where(config: HLConfig, function: str) -> str:
    return f"--task {task_name(config)}: {function}()"


def _arrays(value: Any, function: str, config: HLConfig) -> tuple[np.ndarray, np.ndarray]:
    """Check one ``(x, y)`` a task returned: x (n, ...) of finite numbers,
    y (n,) whole numbers 0 or more; x as float32 if it is floating point."""
    where = _where(config, function)
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TaskError(f"{where} returned {type(value).__name__}; return (x, y): "
                        "samples and their integer labels")
    try:
        x, y = np.asarray(value[0]), np.asarray(value[1])
    except (TypeError, ValueError) as err:
        raise TaskError(f"{where}: x and y must be numpy arrays ({err})") from None
    if y.ndim != 1:
        raise TaskError(f"{where}: y has shape {y.shape}; give one integer label per "
                        "sample, shape (n,), not one-hot rows")
    if x.ndim < 2 or len(x) != len(y):
        raise TaskError(f"{where}: x has shape {x.shape} and y {y.shape}; x must be "
                        "(n, ...) with one row per label")
    if len(y) == 0:
        raise TaskError(f"{where}: holds no samples; return at least one")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise TaskError(f"{where}: x holds {x.dtype} values; give numbers")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
        raise TaskError(f"{where}: {int(bad.sum())} of {len(x)} samples hold NaN or Inf "
                        f"(the first is sample {int(np.argmax(bad))}); drop or repair them")
    whole = np.issubdtype(y.dtype, np.integer) or (
        np.issubdtype(y.dtype, np.floating) and np.isfinite(y).all()
        and bool((y == np.round(y)).all()))
    if y.dtype.kind in "USO":
        raise TaskError(f"{where}: y holds text or objects, not numbers; map the labels "
                        "to integers 0..C-1 (for example with scikit-learn's LabelEncoder)")
    if not whole:
        raise TaskError(f"{where}: y holds {y.dtype} values that are not whole numbers; "
                        "give integer labels 0..C-1")
    if y.min() < 0:
        raise TaskError(f"{where}: a label is {int(y.min())}; give labels 0..C-1")
    if np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    return x, y.astype(np.int64)


def _returned_arrays(config: HLConfig, function: str, *args: Any
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The checked ``(x, y)`` that the task's ``function(*args)`` returns."""
    return _arrays(call_task(import_task(task_name(config)), function, config, *args),
                   function, config)


def training_set(config: HLConfig) -> Dataset:
    """The task's training set (the nodes' side; no test arrays), checked:
    labels 0..C-1 with every class present. Loaded once per process and task."""
    return _training_set(task_config(config))


@functools.lru_cache(maxsize=4)
def _training_set(config: HLConfig) -> Dataset:
    from .data import Dataset
    from .data_checks import checked_labels

    x, y = _returned_arrays(config, "load_training_set")
    y, _ = checked_labels(y, y[:0], _where(config, "load_training_set"))
    return Dataset(x, y, x[:0].copy(), y[:0].copy(), int(y.max()) + 1)


def test_set(config: HLConfig) -> Dataset:
    """The task's test set (the server's side; no training arrays), its
    labels checked against the model's classes. Loaded once per process and task."""
    return _test_set(task_config(config))


@functools.lru_cache(maxsize=4)
def _test_set(config: HLConfig) -> Dataset:
    from .data import Dataset

    x, y = _returned_arrays(config, "load_test_set")
    classes = model_classes(config, x)
    _check_labels(y, classes, _where(config, "load_test_set"))
    return Dataset(x[:0].copy(), y[:0].copy(), x, y, classes)


def _check_labels(labels: np.ndarray, classes: int, where: str) -> None:
    if int(labels.max()) >= classes:
        raise TaskError(f"{where}: a label is {int(labels.max())}, but the model has "
                        f"{classes} classes (0..{classes - 1}); renumber the labels or "
                        "widen the model's output")


def has_own_partitions(config: HLConfig) -> bool:
    """Whether the task defines ``load_partition`` (data that lives on nodes)."""
    return callable(getattr(import_task(task_name(config)), "load_partition", None))


def own_partition(config: HLConfig, node: int) -> tuple[np.ndarray, np.ndarray]:
    """Node ``node``'s ``(x, y)`` from the task's ``load_partition``, checked
    against the model's classes."""
    x, y = _returned_arrays(config, "load_partition", node, config.num_nodes)
    _check_labels(y, model_classes(config, x), _where(config, "load_partition"))
    return x, y


def new_model(config: HLConfig, seed: int | None = None) -> keras.Model:
    """A new model from the task's ``load_model`` (as it returns it); with
    ``seed``, its unseeded initialisers draw from ``seed`` (Python's
    ``random`` state is restored afterwards). Raises TaskError."""
    import keras

    state = random.getstate()
    if seed is not None:
        random.seed(seed)
    try:
        model = call_task(import_task(task_name(config)), "load_model", config)
    finally:
        random.setstate(state)
    if not isinstance(model, keras.Model):
        raise TaskError(f"{_where(config, 'load_model')} returned "
                        f"{type(model).__name__}; return a keras.Model")
    return model


def shared_model(config: HLConfig) -> keras.Model:
    """The process's one model for this task (built on first use, reused)."""
    return _shared_model(task_config(config))


@functools.lru_cache(maxsize=4)
def _shared_model(config: HLConfig) -> keras.Model:
    return new_model(config)


def model_classes(config: HLConfig, sample: np.ndarray) -> int:
    """C as the model sees it: the size of its output per sample, from its
    output shape or, for a subclassed model, from its output on ``sample``
    (inputs (n, ...))."""
    model = shared_model(config)
    try:
        shape = tuple(model.output_shape)
    except (AttributeError, ValueError, TypeError):
        shape = _output_on(model, sample[:2], config).shape
    if len(shape) != 2 or not shape[1]:
        raise TaskError(f"{_where(config, 'load_model')}: the model's output has shape "
                        f"{shape}; give one output of shape (batch, C), one unit per class")
    return int(shape[1])


def _output_on(model: keras.Model, sample: np.ndarray, config: HLConfig) -> np.ndarray:
    """The model's output on ``sample``; TaskError if it cannot take it."""
    try:
        return np.asarray(model(sample, training=False))
    except Exception as err:  # noqa: BLE001 - the model does not fit the data
        raise TaskError(f"{_where(config, 'load_model')}: the model cannot take samples "
                        f"of shape {sample.shape[1:]} ({type(err).__name__}: "
                        f"{_first_line(err)}); match its input to the data") from None


def compiled_model(config: HLConfig, sample: np.ndarray) -> keras.Model:
    """The shared model ready to train: compiled if the task left it
    uncompiled (sparse categorical cross-entropy, on logits unless its
    outputs on ``sample`` are probabilities, and Adam at ``--learning-rate``),
    its optimizer's slots built."""

    model = shared_model(config)
    if needs_compiling(model):
        compile_classifier(model, _output_on(model, sample[:16], config),
                           config.learning_rate)
    model.optimizer.build(model.trainable_variables)
    return model


def needs_compiling(model: keras.Model) -> bool:
    """Whether ``model`` was left uncompiled (no optimizer to train with)."""
    return not getattr(model, "compiled", False) or getattr(model, "optimizer", None) is None


def compile_classifier(model: keras.Model, output: np.ndarray, learning_rate: float) -> None:
    """Compile an uncompiled classifier: sparse categorical cross-entropy on
    probabilities if its ``output`` (n, C) on some samples is probabilities
    (rows of non-negative values summing to 1), else on logits; Adam at
    ``learning_rate``."""
    import keras

    probabilities = bool((output >= 0).all()
                         and np.allclose(output.sum(axis=1), 1.0, atol=1e-3))
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(
                      from_logits=not probabilities),
                  metrics=["accuracy"])


def initial_weights(config: HLConfig, seed: int, sample: np.ndarray) -> list[np.ndarray]:
    """An episode's fresh weights, reproducible from ``seed``: the task's
    ``initial_weights(model, seed)``, else those of a new ``load_model()``
    whose unseeded initialisers draw from ``seed`` (built on ``sample``,
    inputs (n, ...), if it has no weights before its first call)."""
    module = import_task(task_name(config))
    model = shared_model(config)
    if not model.weights:
        _output_on(model, sample[:1], config)
    if callable(getattr(module, "initial_weights", None)):
        weights = call_task(module, "initial_weights", config, model, seed)
    else:
        fresh = new_model(config, seed)
        if not fresh.weights:  # a subclassed model builds on its first call
            _output_on(fresh, sample[:1], config)
        weights = fresh.get_weights()
    current = model.get_weights()
    if [tuple(np.shape(w)) for w in weights] != [w.shape for w in current]:
        raise TaskError(f"--task {task_name(config)}: the fresh weights do not match the "
                        "model's weights; initial_weights() must return arrays shaped like "
                        "model.get_weights(), and load_model() the same model every call")
    return [np.asarray(w, dtype=ref.dtype) for w, ref in zip(weights, current, strict=True)]


def check_task(config: HLConfig) -> list[str]:
    """Load and check everything a run will use, before anything is
    written: both data sets, the model against them (input shape, one output
    unit per class), its fresh weights and, where the task has them, every
    node's own partition. Raises TaskError naming the function and the fix.
    Returns advice that does not stop the run (one line each)."""
    train = training_set(config)
    classes, outputs = train.num_classes, model_classes(config, train.x_train)
    if outputs != classes:
        raise TaskError(f"{_where(config, 'load_model')}: the model has {outputs} outputs "
                        f"per sample, the training set {classes} classes; give it one "
                        "output unit per class")
    test = test_set(config)
    checked = [("load_test_set", test.x_test)]
    if has_own_partitions(config):
        checked += [("load_partition", own_partition(config, node)[0])
                    for node in range(config.num_nodes)]
    for function, x in checked:
        if x.shape[1:] != train.input_shape:
            raise TaskError(f"{_where(config, function)} gives samples of shape "
                            f"{x.shape[1:]}, load_training_set() {train.input_shape}; "
                            "make them match")
    _output_on(shared_model(config), train.x_train[:8], config)
    trainer = shared_trainer(config, train.x_train)
    try:
        trainer.warm_up()  # one training step on a blank sample; weights kept
    except Exception as err:  # noqa: BLE001 - the loss does not fit the model or labels
        raise TaskError(f"{_where(config, 'load_model')}: one training step fails with "
                        f"its loss ({type(err).__name__}: {_first_line(err)}); the loss "
                        "must take integer labels (n,) and the model's output (n, C), "
                        "or leave the model uncompiled") from None
    initial_weights(config, 0, train.x_train)
    return scaling_advice(config, train.x_train)


def scaling_advice(config: HLConfig, x: np.ndarray) -> list[str]:
    """A hint when the training samples ``x`` are whole numbers above 1
    (raw 0-255 pixels, counts): networks train on them, but slowly."""
    if not np.issubdtype(x.dtype, np.integer) or x.size == 0 or int(x.max()) <= 1:
        return []
    return [f"{_where(config, 'load_training_set')} gives {x.dtype} samples up to "
            f"{int(x.max())}; the model trains on them as they are, and usually faster "
            "when they are scaled to about [0, 1] (for pixels: x / 255, as float32)"]


def _first_line(err: Exception) -> str:
    """An error's message without TensorFlow's graph-node decorations."""
    text = re.sub(r"\{\{[^}]*\}\}|\[\[[^\]]*\]\]|\[Op:[^\]]*\]", "", str(err))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else ""


_TRAINERS: dict[tuple, LocalTrainer] = {}


def shared_trainer(config: HLConfig, sample: np.ndarray) -> LocalTrainer:
    """The process's one trainer (and model) for this task and this kind of
    input (``sample``: inputs (n, ...) of the data it will see)."""
    from .model import LocalTrainer

    key = (task_config(config), sample.shape[1:], sample.dtype.str)
    if key not in _TRAINERS:
        try:
            _TRAINERS[key] = LocalTrainer(compiled_model(config, sample), sample)
        except ValueError as err:
            raise TaskError(f"{_where(config, 'load_model')}: {err}; compile it with one "
                            "loss, or leave it uncompiled") from None
    return _TRAINERS[key]
