"""The run folder: config, partitions, per-step and per-episode logs, summary,
policy, plots.

``runs/<name>/`` holds ``config.json``, ``partitions.csv``, ``steps.csv``,
``episodes.csv``, ``summary.json``, the trained policy (``policy.weights.h5``
+ ``policy.json``), PNG plots and ``run.log`` (Flower's log of the run, with
every failed node's traceback). CSV rows are appended and flushed as they
happen, so a run that stops early still leaves its log.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import re
import shutil
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from strategies import EpisodeResult, StepResult


RUN_LOG = "run.log"

STEP_COLUMNS = ["episode", "step", "holder", "holders", "next_node", "accuracy",
                "reward", "hop_cost", "bytes_sent", "model_transfers", "policy_sent",
                "train_loss", "time_train", "time_observe", "time_evaluate", "time_step", "done",
                "failures"]
EPISODE_COLUMNS = ["episode", "steps", "accuracy", "communication_cost",
                   "total_reward", "epsilon", "reached_goal", "bytes_sent",
                   "model_transfers", "failures", "dqn_loss", "wall_time", "path",
                   "starter"]


RUN_FILE = "run.json"  # {"kind": "train" | "compare" | "eval"}: what wrote the folder
RUN_KINDS = ("train", "compare", "eval")


class RunFolderExists(FileExistsError):
    """The run folder is already there and may not be replaced."""


def run_kind(path: Path) -> str | None:
    """Which command wrote ``path`` (one of :data:`RUN_KINDS`), or None for
    any other folder: a policy folder, ``best/``, a user's own folder.

    Folders written before ``run.json`` existed are recognised by their
    logs (a compare or eval report, else a training's steps or episodes).
    """
    marker = path / RUN_FILE
    if marker.is_file():
        try:
            kind = json.loads(marker.read_text()).get("kind")
        except (ValueError, AttributeError, OSError):
            return None
        return kind if kind in RUN_KINDS else None
    for kind in ("compare", "eval"):
        if (path / f"{kind}_runs.csv").is_file():
            return kind
    if (path / "steps.csv").is_file() or (path / "episodes.csv").is_file():
        return "train"
    return None


def check_run_name(name: str) -> str:
    """``name`` if it is one plain folder name, so the run folder is a child
    of ``--out``; ValueError naming ``--name`` otherwise (a path separator,
    ``.``/``..``, a NUL or a control character)."""
    separators = {"/", os.sep, os.altsep or "/"}
    if (name in (".", "..") or any(sep in name for sep in separators)
            or any(ord(char) < 32 for char in name)):
        raise ValueError(f"--name {name!r} is not a plain folder name, and a run writes "
                         "only under --out; give a name without '/', '..' or control "
                         "characters (or choose the parent with --out)")
    return name


def check_run_folder(path: Path, overwrite: bool) -> None:
    """What :func:`create_run_folder` would refuse, found before anything
    slow runs: RunFolderExists, or OSError when the file system refuses a
    folder where ``path`` would go (tried with a probe folder, removed at
    once; nothing stays)."""
    if _replaces_a_run(path, overwrite):
        return
    existing = next(folder for folder in (path, *path.parents) if folder.exists())
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".hl-probe-", dir=existing))
    except OSError as error:  # named after the folder the user asked for
        raise OSError(error.errno, error.strerror, str(path)) from None


def _replaces_a_run(path: Path, overwrite: bool) -> bool:
    """Whether ``path`` holds a run that ``overwrite`` replaces (False: it is
    missing or empty); RunFolderExists where it must be left alone."""
    if path.exists() and not path.is_dir():
        raise RunFolderExists(f"{path} is a file, not a run folder; pick another --name")
    if not (path.exists() and any(path.iterdir())):
        return False
    if not overwrite:
        raise RunFolderExists(f"run folder {path} already exists; pick another "
                              "--name or pass --overwrite")
    if run_kind(path) is None:
        raise RunFolderExists(f"{path} is not a run folder (a policy or another "
                              "folder), so --overwrite leaves it alone; pick "
                              "another --name")
    return True


def create_run_folder(path: Path, overwrite: bool, kind: str = "train") -> Path:
    """Make an empty run folder marked with ``kind``.

    An existing non-empty folder is refused unless ``overwrite`` is given and
    it is a run folder; then it is replaced whole (nothing of the old run,
    checkpoints included, survives), never mixed with the new one.
    Raises RunFolderExists; OSError where the file system refuses.
    """
    marker = {"kind": kind, "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    if _replaces_a_run(path, overwrite):
        with folder_swapped_in(path) as staging:
            write_json(staging / RUN_FILE, marker)
        return path
    path.mkdir(parents=True, exist_ok=True)
    write_json(path / RUN_FILE, marker)
    return path


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)


PARTITIONS_FILE = "partitions.csv"  # samples per node and class
PARTITIONS_PLOT = "partitions.png"


def write_partition_table(path: Path, counts: np.ndarray) -> None:
    """Write ``partitions.csv``: one row per node with columns ``node``,
    ``samples`` and ``class_0`` .. ``class_<C-1>`` (sample counts), from
    ``counts`` of shape (N, C). Atomic, as :func:`write_json`."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["node", "samples", *(f"class_{c}" for c in range(counts.shape[1]))])
        writer.writerows([node, sum(row), *row] for node, row in enumerate(counts.tolist()))
    tmp.replace(path)


def _swap_folders(final: Path) -> tuple[Path, Path]:
    """The hidden staging folder and the aside folder of a swap into ``final``."""
    return final.with_name(f".{final.name}.tmp"), final.with_name(f".{final.name}.old")


@contextmanager
def folder_swapped_in(final: Path) -> Iterator[Path]:
    """Yield an empty hidden staging folder to write; when the block ends
    without error, it replaces ``final``. At every moment a complete folder
    is at ``final`` or, between the two renames, aside at ``.<name>.old``
    (:func:`restore_interrupted_swap` puts it back)."""
    staging, aside = _swap_folders(final)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    yield staging
    shutil.rmtree(aside, ignore_errors=True)
    if final.exists():
        final.rename(aside)
    staging.rename(final)
    shutil.rmtree(aside, ignore_errors=True)


class PlainFormatter(logging.Formatter):
    """Log lines without terminal colour codes (Ray colours its tracebacks)."""

    COLOUR = re.compile(r"\x1b\[[0-9;]*m")

    def format(self, record: logging.LogRecord) -> str:
        return self.COLOUR.sub("", super().format(record))


@contextmanager
def logging_into(folder: Path) -> Iterator[Path]:
    """Append Flower's log records (INFO and up, tracebacks included) to
    ``folder/run.log`` while the block runs (once, if blocks nest); yields
    the file's path."""
    path = folder / RUN_LOG
    logger = logging.getLogger("flwr")
    if any(isinstance(h, logging.FileHandler) and h.baseFilename == str(path.absolute())
           for h in logger.handlers):
        yield path
        return
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(PlainFormatter("%(asctime)s %(levelname)s %(message)s"))
    level = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield path
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(level)


def restore_interrupted_swap(final: Path) -> None:
    """Undo what a kill during :func:`folder_swapped_in` left: put the old
    folder back if ``final`` is missing, and remove the hidden leftovers."""
    staging, aside = _swap_folders(final)
    if aside.is_dir() and not final.exists():
        aside.rename(final)
    shutil.rmtree(aside, ignore_errors=True)
    shutil.rmtree(staging, ignore_errors=True)


class RunRecorder:
    """Appends step and episode rows to CSV files in the run folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.steps: list[StepResult] = []
        self.episodes: list[EpisodeResult] = []

    def on_step(self, result: StepResult) -> None:
        """Log one step."""
        self.steps.append(result)
        row = dataclasses.asdict(result)
        row["holder"] = result.holders[0] if result.holders else ""
        row["holders"] = " ".join(map(str, result.holders))
        row["next_node"] = " ".join(map(str, result.next_nodes))
        row["failures"] = "; ".join(result.failures)
        self._append("steps.csv", STEP_COLUMNS, row)

    def on_episode(self, result: EpisodeResult) -> None:
        """Log one episode."""
        self.episodes.append(result)
        row = dataclasses.asdict(result)
        row["path"] = " ".join(map(str, result.path))
        self._append("episodes.csv", EPISODE_COLUMNS, row)

    def resume(self, episodes_done: int) -> None:
        """Continue a killed run's logs: keep (and reload) the rows of the
        first ``episodes_done`` episodes; rows of the episode that was cut
        short, and a line torn by the kill, are dropped."""
        from strategies import EpisodeResult, StepResult

        self.steps = self._reload("steps.csv", STEP_COLUMNS, StepResult,
                                  {"holders": "holders", "next_nodes": "next_node"},
                                  episodes_done)
        self.episodes = self._reload("episodes.csv", EPISODE_COLUMNS, EpisodeResult,
                                     {}, episodes_done)

    def _reload(self, name: str, columns: list[str], kind: type, renamed: dict[str, str],
                episodes_done: int) -> list:
        path = self.folder / name
        if not path.exists():
            return []
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        kept, records = [], []
        for row in rows:
            try:
                record = kind(**{f.name: _parse(row[renamed.get(f.name, f.name)], f.type)
                                 for f in dataclasses.fields(kind)
                                 if renamed.get(f.name, f.name) in row
                                 or f.default is dataclasses.MISSING})  # older logs
            except (KeyError, TypeError, ValueError):
                continue  # torn by the kill
            if record.episode < episodes_done:
                kept.append(row)
                records.append(record)
        tmp = path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(kept)
        tmp.replace(path)
        return records

    def _append(self, name: str, columns: list[str], row: dict[str, Any]) -> None:
        path = self.folder / name
        new = not path.exists()
        with path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, columns, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({k: _short(v) for k, v in row.items()})

    def summary(self) -> dict[str, Any]:
        """Figures over the whole run, for ``summary.json``."""
        episodes = self.episodes
        steps = [s for s in self.steps if s.completed]
        last = episodes[-1] if episodes else None
        return {
            "episodes": len(episodes),
            "steps_total": len(steps),
            "unfinished_steps": len(self.steps) - len(steps),  # the run stopped in them
            "goal_reached_episodes": sum(e.reached_goal for e in episodes),
            "last_episode": dataclasses.asdict(last) if last else None,
            "mean_steps": _mean([e.steps for e in episodes]),
            "mean_communication_cost": _mean([e.communication_cost for e in episodes]),
            "bytes_sent_total": sum(e.bytes_sent for e in episodes),
            "failures_total": sum(len(s.failures) for s in self.steps),
            "failures_by_node": _failures_by_node(self.steps),
            "failures_by_cause": _failures_by_cause(self.steps),
            "median_step_seconds": {
                "step": _median([s.time_step for s in steps]),
                "train": _median([s.time_train for s in steps]),
                "evaluate": _median([s.time_evaluate for s in steps]),
                "observe_and_choose": _median([s.time_observe for s in steps]),
                "rest": _median([s.time_step - s.time_train - s.time_evaluate
                                 - s.time_observe for s in steps]),
            },
        }


def _failures_by_node(steps: list[StepResult]) -> dict[str, int]:
    """How often each node failed ("node: why" entries of the steps)."""
    return dict(Counter(node for node, _ in _failure_entries(steps)))


def _failures_by_cause(steps: list[StepResult]) -> dict[str, int]:
    """How often each cause ("why" of the "node: why" entries) occurred."""
    return dict(sorted(Counter(why for _, why in _failure_entries(steps)).items()))


def _failure_entries(steps: list[StepResult]) -> Iterator[tuple[str, str]]:
    """(node, why) of every "node: why" failure entry of the steps."""
    for step in steps:
        for failure in step.failures:
            node, _, why = failure.partition(": ")
            yield node.split(":", 1)[0], why or failure


# Causes that come and go with the nodes (a slow or lost node), not with the
# code or the data: a resumed run can get past them.
# Ray's reason when the process of the virtual nodes died: killed from outside
# or out of memory (a resumed run starts a new one), or a crash in the
# ClientApp's own code (which a resume meets again).
PROCESS_DIED = "The actor is dead"
TRANSIENT_CAUSES = ("no reply within", "did not reply in time", "nodes connected",
                    "disconnected", PROCESS_DIED)
# Stops whose own text only sums up the failures before them.
FAILURE_BUDGET_STOPS = ("node failures, more than", "no node is available",
                        "no node returned a usable model")


def process_died(stopped: str, summary: dict[str, Any]) -> bool:
    """Whether the run stopped where the Ray process of its virtual nodes died
    (:data:`PROCESS_DIED` in the stop or a failure's cause)."""
    return PROCESS_DIED in stopped or any(
        PROCESS_DIED in cause for cause in summary.get("failures_by_cause", {}))


def resume_can_help(stopped: str, summary: dict[str, Any]) -> bool:
    """Whether ``--resume`` can get past what stopped a run: only where every
    cause was a node that did not answer or connect, or whose process died.
    An error the ClientApp raised, a bad reply or a wrong setting comes back
    on resume until its cause is fixed."""
    causes = list(summary.get("failures_by_cause", {}))
    if not any(mark in stopped for mark in FAILURE_BUDGET_STOPS):
        causes.append(stopped)
    return bool(causes) and all(any(mark in cause for mark in TRANSIENT_CAUSES)
                                for cause in causes)


def _parse(text: str | None, annotation: str) -> Any:
    """A CSV cell back to the type its dataclass field declares."""
    if text is None:
        raise ValueError("missing cell")
    optional = {"float | None": float, "int | None": int}.get(annotation)
    if optional is not None:
        return None if text == "" else optional(text)
    if annotation == "list[int]":
        return [int(n) for n in text.split()]
    if annotation == "list[str]":
        return text.split("; ") if text else []
    if annotation == "bool":
        if text not in ("True", "False"):
            raise ValueError(text)
        return text == "True"
    return {"int": int, "float": float}[annotation](text)


def _short(value: Any) -> Any:
    return round(value, 6) if isinstance(value, float) else value


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None
