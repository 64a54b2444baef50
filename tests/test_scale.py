"""100 virtual nodes run through the real simulation engine (kept small for CI)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # real simulations or processes

ROOT = Path(__file__).resolve().parents[1]


def test_a_hundred_nodes_run_a_few_steps(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "sim.py", "--nodes", "100", "--main-samples", "4",
         "--other-samples", "36", "--episodes", "1", "--max-steps", "4", "--goal", "0.99",
         "--out", str(tmp_path), "--name", "hundred"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    folder = tmp_path / "hundred"
    with (folder / "steps.csv").open() as handle:
        steps = list(csv.DictReader(handle))
    assert [int(s["step"]) for s in steps] == [1, 2, 3, 4]
    holders = [int(s["holder"]) for s in steps]
    assert holders[0] == 0 and all(0 <= h < 100 for h in holders)
    assert [s["next_node"] for s in steps[:-1]] == [s["holder"] for s in steps[1:]]
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["failures_total"] == 0
