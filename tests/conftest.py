"""Test order: the longest modules first, so that pytest-xdist (``-n``, with
``--dist loadfile --no-loadscope-reorder`` in pyproject.toml) starts them
early and the workers finish close together. Within a module the order is
unchanged. Each xdist worker picks free ports (``deploy.local.free_port``)
from its own slice of the range, so two workers never pick the same port
between a pick and the bind."""

from __future__ import annotations

import os
import sys

# First: hl_flower pins the numerical kernels before a test module loads numpy.
import hl_flower  # noqa: F401

# isort: split
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from deploy import local
from deploy.local import LocalFederation

# Measured with --durations; the rest follow in file order (README, "Test suite").
LONGEST_FIRST = ("test_learning_random_starter.py", "test_deployment.py",
                 "test_clientapp_worker.py", "test_resume.py", "test_sim_integration.py",
                 "test_learning_digits.py", "test_compare.py",
                 "test_failures.py", "test_tensorboard.py", "test_shipped_policy.py",
                 "test_starters.py", "test_forgetting.py", "test_task.py", "test_scale.py",
                 "test_ray_cluster.py", "test_truncation.py", "test_traffic.py")


def pytest_configure(config: pytest.Config) -> None:
    """Under xdist, worker gwN of K picks ports from the N-th of K slices of
    ``deploy.local.pick_range()``."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    span = local.pick_range()
    if not worker.startswith("gw") or count < 2 or span is None:
        return
    size = (span[1] - span[0]) // count
    if size < local.FEWEST_PORTS:
        return
    first = span[0] + int(worker.removeprefix("gw")) * size
    local.pick_range = lambda: (first, first + size)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each module keeps its own order


@pytest.fixture
def federation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
               ) -> Iterator[Callable[..., LocalFederation]]:
    """Make local federations (real SuperLink and SuperNode processes, see
    tests/deployment_helpers.py); all their processes are stopped afterwards.
    This Python's ``bin`` folder is taken off ``PATH``, as for a user who
    runs the venv's Python without activating the venv."""
    venv_bin = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", os.pathsep.join(
        p for p in os.environ.get("PATH", "").split(os.pathsep) if p != venv_bin))
    made: list[LocalFederation] = []

    def make(**options: object) -> LocalFederation:
        local = LocalFederation(tmp_path / f"federation-{len(made)}", **options)
        made.append(local)
        return local

    try:
        yield make
    finally:
        for local in made:
            local.stop_all()
        for local in made:
            assert local.leftover_pids() == [], "processes left behind"
