"""Greedy validation during training, and the best policy it finds.

The DQN's greedy policy can change a lot from one episode to the next, and
the last episode's policy is not always the best one trained (see
docs/results.md). With ``--validate-every E`` the server stops training every
E episodes (and after the last one) and plays the greedy policy (epsilon 0,
nothing stored or learned) on ``--validation-seeds`` fixed seeds, 301, 302,
... (``--validation-first-seed`` moves them): apart from the training seed and
from the evaluation seeds that ``sim.py compare`` and ``eval`` use unless told
otherwise. Each validation is
a row of ``<run>/validation.csv``; the best policy so far (fewest mean steps
to the goal, then highest mean final accuracy, then lowest communication
cost) is kept in ``<run>/best/``, a policy folder ``sim.py eval --policy``
and ``compare --policy`` accept. This is what RL tooling calls an evaluation
callback that saves the best model. The validation episodes use their own
seeds for data order and model initialisation, so training is the same with
or without them.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .config import CONFIG_FILE, HLConfig, to_flat
from .runlog import folder_swapped_in, restore_interrupted_swap, write_json

if TYPE_CHECKING:
    from strategies import EpisodeResult

    from .dqn import DQNAgent

BEST_FOLDER = "best"
VALIDATION_FILE = "validation.json"  # inside best/: the validation that chose it
VALIDATION_CSV = "validation.csv"


@dataclass(frozen=True)
class Validation:
    """The greedy policy's figures after ``episodes_done`` training episodes
    (means over the validation seeds)."""

    episodes_done: int
    steps: float
    accuracy: float
    communication_cost: float
    reached_goal: float  # fraction of the validation episodes
    paths: str  # each seed's holders, seeds separated by " | "

    @classmethod
    def of(cls, episodes_done: int, results: list[EpisodeResult]) -> Validation:
        """Means over the greedy episodes played after ``episodes_done``."""
        return cls(episodes_done,
                   statistics.fmean(r.steps for r in results),
                   statistics.fmean(r.accuracy for r in results),
                   statistics.fmean(r.communication_cost for r in results),
                   statistics.fmean(r.reached_goal for r in results),
                   " | ".join(" ".join(map(str, r.path)) for r in results))

    @classmethod
    def from_row(cls, row: dict[str, str]) -> Validation:
        """A row of ``validation.csv`` back as a Validation (its ``best``
        column is left out). Raises KeyError, TypeError or ValueError for a
        row that is not whole."""
        kinds = {"int": int, "float": float, "str": str}
        return cls(**{f.name: kinds[str(f.type)](row[f.name])
                      for f in dataclasses.fields(cls)})

    def rank(self) -> tuple[float, float, float]:
        """Sort key: fewer steps, then higher final accuracy, then lower cost."""
        return (self.steps, -self.accuracy, self.communication_cost)


COLUMNS = [field.name for field in dataclasses.fields(Validation)] + ["best"]


def validation_seeds(config: HLConfig) -> list[int]:
    """The fixed seeds validation episodes run on."""
    first = config.validation_first_seed
    return list(range(first, first + config.validation_seeds))


def validation_due(config: HLConfig, episodes_done: int) -> bool:
    """Whether the policy is validated after ``episodes_done`` episodes."""
    every = config.validate_every
    return bool(every) and episodes_done > 0 and (
        episodes_done % every == 0 or episodes_done == config.episodes)


def next_stop(config: HLConfig, episodes_done: int) -> int:
    """Episodes done at the next validation (or the end of training)."""
    every = config.validate_every
    if not every:
        return config.episodes
    return min(config.episodes, (episodes_done // every + 1) * every)


def describe_validation(validation: Validation, improved: bool) -> str:
    """One console line for a validation."""
    return (f"validation after {validation.episodes_done} episodes: steps "
            f"{validation.steps:.1f}  acc {validation.accuracy:.3f}  cost "
            f"{validation.communication_cost:.3f}  goal {validation.reached_goal:.0%}"
            + ("  (best so far, kept in best/)" if improved else ""))


def policy_folder(run: Path) -> Path:
    """Where a run's policy to use is: ``best/`` if validation kept one."""
    best = run / BEST_FOLDER
    return best if best.is_dir() else run


class BestPolicy:
    """Logs validations to ``validation.csv`` and keeps the best policy."""

    def __init__(self, folder: Path, config: HLConfig, episodes_done: int = 0) -> None:
        """Start a log, or continue one from a run resumed after
        ``episodes_done`` episodes (rows after that point are dropped). A new
        run removes what an overwritten run folder held."""
        self.folder, self.config = folder, config
        self.log = folder / VALIDATION_CSV
        self.best: Validation | None = None
        # A kill while saving: the old policy is the one the log agrees with.
        restore_interrupted_swap(folder / BEST_FOLDER)
        rows = []
        if episodes_done and self.log.is_file():
            with self.log.open() as handle:
                rows = [r for r in csv.DictReader(handle)
                        if int(r["episodes_done"]) <= episodes_done]
        self.validated = {int(r["episodes_done"]) for r in rows}
        # the validations logged before (a resumed run's), oldest first
        self.history = _readable(rows)
        saved = folder / BEST_FOLDER / VALIDATION_FILE
        if rows and saved.is_file():
            kept = Validation(**json.loads(saved.read_text()))
            if kept.episodes_done in self.validated:
                self.best = kept
        if not episodes_done:
            shutil.rmtree(folder / BEST_FOLDER, ignore_errors=True)
            self.log.unlink(missing_ok=True)
        if not config.validate_every:
            return
        with self.log.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, COLUMNS)
            writer.writeheader()
            writer.writerows(rows)

    def needs(self, episodes_done: int) -> bool:
        """Whether a validation is due and not yet logged."""
        return (validation_due(self.config, episodes_done)
                and episodes_done not in self.validated)

    def record(self, validation: Validation, agent: DQNAgent) -> bool:
        """Log ``validation``; keep ``agent``'s policy if it is the best.
        Returns whether it was."""
        improved = self.best is None or validation.rank() < self.best.rank()
        if improved:
            self._save(validation, agent)
            self.best = validation
        self.validated.add(validation.episodes_done)
        self.history.append(validation)
        with self.log.open("a", newline="") as handle:
            csv.DictWriter(handle, COLUMNS).writerow(
                dataclasses.asdict(validation) | {"best": improved})
        return improved

    def _save(self, validation: Validation, agent: DQNAgent) -> None:
        """Write the policy folder next to ``best/``, then swap it in."""
        with folder_swapped_in(self.folder / BEST_FOLDER) as staging:
            agent.save(staging)
            write_json(staging / CONFIG_FILE, to_flat(self.config))
            write_json(staging / VALIDATION_FILE, dataclasses.asdict(validation))


def _readable(rows: list[dict[str, str]]) -> list[Validation]:
    """The rows of ``validation.csv`` that read back whole (not a line torn
    by a kill)."""
    validations = []
    for row in rows:
        try:
            validations.append(Validation.from_row(row))
        except (KeyError, TypeError, ValueError):
            continue
    return validations
