"""Console progress for sim.py: a bar over episodes and one line per episode."""

from __future__ import annotations

import statistics
import sys
from typing import TYPE_CHECKING

from tqdm import tqdm

if TYPE_CHECKING:
    from strategies import EpisodeResult, StepResult

    from .validation import Validation


from .config import HLConfig
from .validation import describe_validation


class ConsoleProgress:
    """Progress bar (steps of the current episode) plus a line per episode."""

    def __init__(self, config: HLConfig, done: int = 0) -> None:
        self.config = config
        self.done = done  # episodes finished before (a resumed run)
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
        """Show the running episode's step and accuracy on the bar."""
        if self.bar is not None:
            self.bar.set_postfix_str(f"step {step.step} acc {step.accuracy:.3f}")

    def on_episode(self, episode: EpisodeResult) -> None:
        """Print the episode's line above the bar."""
        self.episodes.append(episode)
        self._print(f"episode {episode.episode + 1:3d}/{self.config.episodes}  "
                    f"steps {episode.steps:2d}  acc {episode.accuracy:.3f}  "
                    f"cost {episode.communication_cost:.3f}  "
                    f"reward {episode.total_reward:7.3f}  eps {episode.epsilon:.3f}")
        if self.bar is not None:
            self.bar.update(1)

    def on_validation(self, validation: Validation, improved: bool) -> None:
        """Print a validation's line above the bar."""
        self._print(describe_validation(validation, improved))

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
        return (f"done: {len(self.episodes)} episodes, goal reached in {reached}, "
                f"mean steps {steps:.1f}")
