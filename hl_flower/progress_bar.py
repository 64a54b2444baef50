"""Console progress for sim.py: a bar over episodes and one line per episode."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

if TYPE_CHECKING:
    from strategies import EpisodeResult, StepResult

    from .best_policy import Validation


from .best_policy import describe_validation
from .config import HLConfig


class ConsoleProgress:
    """Progress bar (steps of the current episode) plus a line per episode."""

    def __init__(self, config: HLConfig, done: int = 0, run_log: Path | None = None,
                 name_failures: bool = True) -> None:
        self.config = config
        self.done = done  # episodes finished before (a resumed run)
        self.run_log = run_log  # where the failures' tracebacks are
        self.name_failures = name_failures  # False with --verbose: Flower's log names them
        self.episodes: list[EpisodeResult] = []
        self.bar: tqdm | None = None

    def __enter__(self) -> ConsoleProgress:
        self.bar = tqdm(total=self.config.episodes, initial=self.done, unit="episode",
                        file=sys.stdout,
                        dynamic_ncols=True, leave=False,
                        disable=not sys.stdout.isatty())
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()

    def on_step(self, step: StepResult) -> None:
        """Show the running episode's step and accuracy on the bar, and one
        warning line per node that failed in it."""
        if self.name_failures:
            for failure in step.failures:
                self._warn(describe_failure(step, failure, self.run_log))
        if self.bar is not None and step.completed:
            self.bar.set_postfix_str(f"step {step.step} acc {step.accuracy:.3f}")

    def on_episode(self, episode: EpisodeResult) -> None:
        """Print the episode's line above the bar; it ends with the node the
        episode started from when that is drawn (``--starter`` random or a
        list)."""
        self.episodes.append(episode)
        drawn = len(self.config.starter_nodes) > 1 and episode.starter is not None
        self._print(f"episode {episode.episode + 1:3d}/{self.config.episodes}  "
                    f"steps {episode.steps:2d}  acc {episode.accuracy:.3f}  "
                    f"cost {episode.communication_cost:.3f}  "
                    f"reward {episode.total_reward:7.3f}  eps {episode.epsilon:.3f}"
                    + (f"  from {episode.starter}" if drawn else ""))
        if self.bar is not None:
            self.bar.update(1)

    def on_validation(self, validation: Validation, improved: bool) -> None:
        """Print a validation's line above the bar."""
        self._print(describe_validation(validation, improved))

    def _warn(self, line: str) -> None:
        """A line on stderr, above the bar."""
        if self.bar is not None and not self.bar.disable:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    def _print(self, line: str) -> None:
        """A line above the bar, or plain when there is no bar."""
        if self.bar is not None and not self.bar.disable:
            self.bar.write(line, file=sys.stdout)
        else:
            print(line, flush=True)

    def summary_line(self) -> str:
        """One closing line over all episodes."""
        if not self.episodes:
            return "no episode finished"
        reached = sum(e.reached_goal for e in self.episodes)
        steps = statistics.fmean(e.steps for e in self.episodes)
        count = len(self.episodes)
        return (f"done: {count} episode{'s' if count != 1 else ''}, goal reached in {reached}, "
                f"mean steps {steps:.1f}")


def describe_failure(step: StepResult, failure: str, run_log: Path | None) -> str:
    """One plain line for one failed node: where, which node, why, and where
    the details are. ``failure`` is a step's "node: why" entry."""
    node, _, why = failure.partition(": ")
    node = node if node.startswith("node ") else f"node {node}"
    outcome = "the run stopped in this step" if not step.completed else "the step went on"
    details = f"; details in {run_log}" if run_log else ""
    return (f"warning: episode {step.episode + 1}, step {step.step}: {node} failed: "
            f"{why} ({outcome}{details})")
