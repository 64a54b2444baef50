"""What ``--tensorboard`` costs a training run: time and disk of its curves.

    python benchmarks/tensorboard_cost.py                  # the paper's worst case
    python benchmarks/tensorboard_cost.py --episodes 12 --steps 10

Feeds ``hl_flower.tensorboard_curves.TrainingCurves`` what ``run_hl`` feeds
it over a whole run, with made-up figures: every episode runs the full
``--steps`` (the paper's cap, 36, by default), and a validation follows every
``--validate-every`` episodes. Prints the seconds spent in the curves per
episode (TensorFlow's import excluded: the server has it loaded already) and
the size of the event files. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hl_flower.quiet import import_tensorflow_quietly, quiet_environment  # noqa: E402

quiet_environment()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=120)
    parser.add_argument("--steps", type=int, default=36, help="steps per episode")
    parser.add_argument("--validate-every", type=int, default=5)
    args = parser.parse_args()
    import_tensorflow_quietly()
    from hl_flower.best_policy import Validation
    from hl_flower.tensorboard_curves import TrainingCurves, event_files, tensorboard_folder
    from strategies import EpisodeResult, StepResult

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        started = time.perf_counter()
        with TrainingCurves(run) as curves:
            for episode in range(args.episodes):
                for step in range(1, args.steps + 1):
                    curves.on_step(StepResult(
                        episode, step, [0], [1], step / args.steps, -1.0, 0.1, 10**6, 2,
                        False, 0.5, 1.0, 0.01, 0.05, 1.2, step == args.steps))
                curves.on_episode(EpisodeResult(
                    episode, args.steps, 0.79, 3.6, -40.0, 0.98 ** episode, False,
                    72 * 10**6, 0.01, 45.0))
                if (episode + 1) % args.validate_every == 0:
                    curves.on_validation(Validation(episode + 1, 20.0, 0.8, 2.5, 1.0, "0"))
        seconds = time.perf_counter() - started
        size = sum(path.stat().st_size for path in event_files(tensorboard_folder(run)))
    print(f"{args.episodes} episodes x {args.steps} steps, a validation every "
          f"{args.validate_every}: {seconds / args.episodes * 1000:.1f} ms per episode "
          f"in the curves, {size / 1000:.0f} kB of event files "
          f"({size / args.episodes / 1000:.1f} kB per episode)")


if __name__ == "__main__":
    main()
