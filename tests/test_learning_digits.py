"""The learning test: a short training on digits with the ``improved`` preset
(training seed 0) chooses better than random, by margins a random next-node
policy fails (its ratios to RandomHop are 1 by definition, and RandomHop
against itself over the same 3 evaluation seeds gives 1 exactly).

Runs are bit-identical on machines of the same CPU model and software
stack (``hl_flower.determinism``), so the outcome is not chance on one
machine: this run gave 0.670x RandomHop's steps and 0.256x its cost per step
on the AVX-512 machines of 2026-11/12-01, and the same figures to the last
digit on the AVX2 machine of 2026-12-02 once OpenBLAS's kernels were pinned
(with that machine's Haswell kernels it gave 0.830x and 1.145x and failed:
the trained policy depends on every kernel's rounding, and one training
seed decides). The three-seed measurement (seeds 0-2: 0.670, 0.717 and
0.704 steps; 0.256, 0.419 and 0.307 cost per step; the earlier machines) is
``python benchmarks/learning_digits.py --training-seeds 3``, a benchmark,
not a test. Real training through Flower's simulation engine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_improved_preset_beats_random_on_digits() -> None:
    done = subprocess.run(
        [sys.executable, "benchmarks/learning_digits.py", "--seed", "0", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stderr[-3000:]
    verdict = json.loads(done.stdout.splitlines()[-1])
    assert len(verdict["per_seed"]) == 1
    assert verdict["steps_ratio"] <= 0.8, done.stdout  # random: 1.0
    assert verdict["cost_per_step_ratio"] <= 0.5, done.stdout  # random: 1.0
    assert verdict["better_than_random"]
