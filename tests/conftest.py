"""Test order: the longest modules first, so that pytest-xdist (``-n``, with
``--dist loadfile --no-loadscope-reorder`` in pyproject.toml) starts them
early and the workers finish close together. Within a module the order is
unchanged."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from deploy.local import LocalFederation

# Measured with --durations (docs: README, "Tests"); the rest follow in file order.
LONGEST_FIRST = ("test_learning_random_starter.py", "test_deployment.py",
                 "test_clientapp_worker.py", "test_resume.py", "test_sim_integration.py",
                 "test_learning_digits.py", "test_compare.py",
                 "test_failures.py", "test_tensorboard.py", "test_shipped_policy.py",
                 "test_starters.py", "test_forgetting.py", "test_task.py", "test_scale.py",
                 "test_ray_cluster.py", "test_truncation.py", "test_traffic.py")


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
