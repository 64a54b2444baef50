"""Training curves for TensorBoard (``--tensorboard``): ``<run>/tensorboard/``.

One event-file writer per training run (``tf.summary.create_file_writer``);
the scalars are written with ``tf.summary.write`` and the scalar plugin's
metadata, so nothing beyond TensorFlow is needed to write them (the
``tensorboard`` package, installed apart, only shows them). The CSVs of the
run folder are written as before; these curves hold the same figures.
``compare`` and ``eval`` add one subfolder per method
(:func:`write_method_curves`).

Tags of a training run, and what their x-axis (TensorBoard's "step") counts:

* ``episode/steps``, ``episode/communication_cost``, ``episode/return``
  (the episode's total reward), ``episode/epsilon``, ``episode/accuracy``
  (test accuracy at the episode's end, 0-1), ``episode/dqn_loss`` (only
  after episodes in which the DQN trained) and ``episode/starter`` (the node
  of step 1): x = training episodes done, i.e. ``episode + 1`` of the
  ``episodes.csv`` row.
* ``validation/steps``, ``validation/accuracy``,
  ``validation/communication_cost``, ``validation/reached_goal`` (every
  numeric figure of a :class:`~hl_flower.best_policy.Validation`, means over
  the validation seeds): x = training episodes done when it was played.
* ``step/accuracy``: test accuracy after each step, x = the step's number
  over the whole run (1, 2, ...: its row in ``steps.csv``), so the curve
  runs on across episodes.

A step's point is written with its episode's points when the episode ends,
then the file is flushed: the event files hold finished episodes only, as a
resumed run's CSVs do. A resumed run (``--resume``) appends a new event file
to the same folder and numbers on; it first writes what the CSVs it resumes
from hold and the event files lack (all of it when the earlier part ran
without ``--tensorboard``). Should the event files hold points the CSVs no
longer do (a damaged newest checkpoint sent the run back one episode
further), the event files are written anew from the CSVs, so the curves
always agree with them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from strategies import EpisodeResult, StepResult

    from .best_policy import Validation
    from .compare import CurvePoint, MethodRun

TENSORBOARD_FOLDER = "tensorboard"  # inside the run folder
EVENT_FILE_PREFIX = "events.out.tfevents."  # how TensorFlow names its event files
STEP_ACCURACY = "step/accuracy"
EPISODE_TAGS = {  # tag: EpisodeResult field
    "episode/steps": "steps",
    "episode/communication_cost": "communication_cost",
    "episode/return": "total_reward",
    "episode/epsilon": "epsilon",
    "episode/accuracy": "accuracy",
    "episode/dqn_loss": "dqn_loss",
    "episode/starter": "starter",
}
VALIDATION_PREFIX = "validation/"
VALIDATION_X = "episodes_done"  # the Validation field that is the x-axis, not a curve


def tensorboard_folder(run: Path) -> Path:
    """Where a run folder's event files are: ``<run>/tensorboard``."""
    return Path(run) / TENSORBOARD_FOLDER


def numeric_points(prefix: str, record: Any, x_fields: Iterable[str]) -> dict[str, float]:
    """``<prefix><field>`` -> value of every number (a bool as 0 or 1) among
    the fields of the dataclass ``record``, but the ``x_fields`` (its x-axis
    and what names the curve)."""
    skip = set(x_fields)
    return {prefix + name: float(value)
            for name, value in dataclasses.asdict(record).items()
            if name not in skip and isinstance(value, int | float)}


def validation_points(validation: Validation) -> dict[str, float]:
    """``validation/<field>`` of every numeric figure of ``validation`` (not
    the episodes done, which is the x-axis, nor the paths)."""
    return numeric_points(VALIDATION_PREFIX, validation, [VALIDATION_X])


class ScalarWriter:
    """One event-file writer (``tf.summary.create_file_writer``) in ``folder``,
    for scalars that TensorBoard's scalar plugin shows. A context manager
    that closes on exit."""

    def __init__(self, folder: Path) -> None:
        """Make ``folder`` and open a new event file in it. Imports
        TensorFlow. Raises OSError when the folder cannot be made."""
        import tensorflow as tf

        self._tf = tf
        Path(folder).mkdir(parents=True, exist_ok=True)
        self._writer = tf.summary.create_file_writer(str(folder))
        # serialized once: tf.summary.write would serialize a proto on every call
        self._metadata = tf.compat.v1.SummaryMetadata(
            plugin_data=tf.compat.v1.SummaryMetadata.PluginData(plugin_name="scalars")
        ).SerializeToString()

    def __enter__(self) -> ScalarWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(self, points: Mapping[str, float | None], x: int) -> None:
        """One point per tag at ``x`` (TensorBoard's step), as float32; a
        None or NaN value is left out."""
        tf = self._tf
        with self._writer.as_default():
            for tag, value in points.items():
                if value is not None and not math.isnan(value):
                    tf.summary.write(tag, tf.constant(value, tf.float32), step=x,
                                     metadata=self._metadata)

    def flush(self) -> None:
        """Write what is queued to the event file."""
        self._writer.flush()

    def close(self) -> None:
        """Flush and close; closing again does nothing."""
        self._writer.close()


class TrainingCurves:
    """Writes a training run's curves to ``<run>/tensorboard/``.

    Feed it as the CSV recorder is fed (:meth:`on_step`, :meth:`on_episode`,
    :meth:`on_validation`), then :meth:`close` it; it is also a context
    manager that closes on exit.
    """

    def __init__(self, run: Path, steps: Sequence[StepResult] = (),
                 episodes: Sequence[EpisodeResult] = (),
                 validations: Sequence[Validation] = ()) -> None:
        """Open the run's writer, after writing what the event files lack of
        the finished ``steps``, ``episodes`` and ``validations`` a resumed
        run starts from (none for a new run). Event files holding points
        beyond those (an older run's, or episodes the resume went back on)
        are removed first, and everything is written anew.

        Imports TensorFlow. Raises OSError when the folder cannot be written.
        """
        self.folder = tensorboard_folder(run)
        done = [s for s in steps if s.completed]
        held = {"step": len(done), "episode": len(episodes),
                "validation": max((v.episodes_done for v in validations), default=0)}
        last = last_points(self.folder)
        if any(x > held[family] for family, x in last.items() if family in held):
            _remove_event_files(self.folder)  # points the CSVs dropped: start anew
            last = {}
        self._writer = ScalarWriter(self.folder)
        self.steps_done = 0  # completed steps so far: the x of the last step's point
        self._pending: list[tuple[int, float]] = []  # (x, accuracy) not written yet
        for step in done:
            self._step_point(step, write=self.steps_done + 1 > last.get("step", 0))
        self._write_pending()
        for episode in episodes:
            if episode.episode + 1 > last.get("episode", 0):
                self._writer.write(_episode_points(episode), episode.episode + 1)
        for validation in validations:
            if validation.episodes_done > last.get("validation", 0):
                self._writer.write(validation_points(validation), validation.episodes_done)
        self._writer.flush()

    def __enter__(self) -> TrainingCurves:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def on_step(self, result: StepResult) -> None:
        """Keep a completed step's accuracy for its episode's end (a step the
        run stopped in, with NaN accuracy, is left out)."""
        if result.completed:
            self._step_point(result, write=True)

    def on_episode(self, result: EpisodeResult) -> None:
        """Write the episode's step points and its own points, then flush."""
        self._write_pending()
        self._writer.write(_episode_points(result), result.episode + 1)
        self._writer.flush()

    def on_validation(self, validation: Validation) -> None:
        """Write a validation's figures at its episodes done, then flush."""
        self._writer.write(validation_points(validation), validation.episodes_done)
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the writer; closing again does nothing. The
        points of an episode that did not finish are not written."""
        self._pending.clear()
        self._writer.close()

    def _step_point(self, step: StepResult, write: bool) -> None:
        self.steps_done += 1
        if write:
            self._pending.append((self.steps_done, step.accuracy))

    def _write_pending(self) -> None:
        for x, accuracy in self._pending:
            self._writer.write({STEP_ACCURACY: accuracy}, x)
        self._pending.clear()


def _episode_points(result: EpisodeResult) -> dict[str, float | None]:
    """The episode's figures by tag (``episode/dqn_loss`` is None or NaN
    where the DQN did not train, and so left out)."""
    return {tag: getattr(result, name) for tag, name in EPISODE_TAGS.items()}


def write_method_curves(run: Path, runs: Sequence[MethodRun],
                        curves: Sequence[CurvePoint]) -> None:
    """``compare``'s and ``eval``'s curves: per method a folder
    ``<run>/tensorboard/<method>/`` (a TensorBoard run, so the methods share
    each chart) holding ``method/<figure>`` of every numeric figure of its
    episodes (steps, reached_goal as 0 or 1, accuracy, communication_cost,
    bytes_sent, model_transfers, wall_time, and the starter but for Flower's
    strategies) at x = the evaluation seed, and
    ``seed_<seed>/accuracy``, ``seed_<seed>/cumulative_cost`` and
    ``seed_<seed>/cumulative_bytes`` at x = the step of that seed's episode.
    NaN figures (a Flower strategy's cost) are left out.

    Imports TensorFlow. Raises OSError when a folder cannot be written.
    """
    for method in dict.fromkeys(r.method for r in runs):
        with ScalarWriter(tensorboard_folder(run) / method) as writer:
            for episode in (r for r in runs if r.method == method):
                writer.write(numeric_points("method/", episode, ["seed"]), episode.seed)
            for point in (p for p in curves if p.method == method):
                writer.write(numeric_points(f"seed_{point.seed}/", point, ["seed", "step"]),
                             point.step)


def last_points(folder: Path) -> dict[str, int]:
    """The largest x written so far per family of tags (``step``,
    ``episode``, ``validation``: the part of the tag before ``/``), from the
    event files in ``folder``; empty when there are none. Imports TensorFlow."""
    last: dict[str, int] = {}
    for tag, points in read_scalars(folder).items():
        family = tag.partition("/")[0]
        last[family] = max([last.get(family, 0), *(x for x, _ in points)])
    return last


def event_files(folder: Path) -> list[Path]:
    """The event files directly in ``folder``, oldest first (TensorFlow's
    names start with the creation time)."""
    return sorted(Path(folder).glob(EVENT_FILE_PREFIX + "*"))


def _remove_event_files(folder: Path) -> None:
    for path in event_files(folder):
        path.unlink()


def read_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the event files directly in ``folder``: tag -> list of
    (x, value), in the order written (files oldest first). A missing folder
    reads as none; a file cut off by a kill is read up to the cut.

    Imports TensorFlow.
    """
    import tensorflow as tf

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in event_files(folder):
        for event in _events(tf, path):
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append(
                    (int(event.step), float(tf.make_ndarray(value.tensor))))
    return scalars


def _events(tf: Any, path: Path) -> Iterator[Any]:
    """The events of one file, up to a record torn by a kill."""
    try:
        for record in tf.data.TFRecordDataset(str(path)):
            yield tf.compat.v1.Event.FromString(record.numpy())
    except tf.errors.DataLossError:
        return
