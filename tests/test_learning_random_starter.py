"""The random-starter learning test: a short training on digits with the
``random-starter`` preset (training seed 0; episodes start at a node drawn
from the seed) takes fewer steps to the goal than ``Standalone``, which keeps
the model wherever the episode started, by a margin that ``Standalone``
(1 by definition) and RandomHop fail.

The nodes hold a Dirichlet(0.3) partition of digits (``--partition
dirichlet:0.3``), so they differ in size and classes and it matters where the
model trains; on the reference slicing (60 + 60 samples a node) the nodes
are too alike and HL only ties ``Standalone`` (1.015x,
docs/results.md section 14.4). Runs are bit-identical on machines of the same CPU model and software
stack (``hl_flower.determinism``): this one gave HL 0.847x and RandomHop
1.032x ``Standalone``'s steps over the 10 evaluation seeds (one per
starter) on the machines of 2026-11/12-01. On the AVX2 machine of
2026-12-02 it gave 0.902x with OpenBLAS's Haswell kernels (a failure) and,
with the kernels pinned to Sandybridge (hl_flower.determinism), 0.757x:
not the earlier machines' run, so something else in it depends on the CPU
or on code changed since (README, "Reproducibility"). Real training
through Flower's simulation engine; about 9 minutes on 2 cores."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_random_starter_preset_beats_standalone_on_digits() -> None:
    done = subprocess.run(
        [sys.executable, "benchmarks/learning_digits.py", "--random-starter", "--seed", "0",
         "--json", "--", "--partition", "dirichlet:0.3"],
        cwd=ROOT, capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stderr[-3000:]
    verdict = json.loads(done.stdout.splitlines()[-1])
    assert len(verdict["per_seed"]) == 1
    assert verdict["steps_to_standalone"] <= 0.9, done.stdout  # Standalone: 1.0
    assert verdict["random_to_standalone"] > 0.9, done.stdout  # RandomHop fails it
    assert verdict["better_than_standalone"]
