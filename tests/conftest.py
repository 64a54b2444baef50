"""Test order: the longest modules first, so that pytest-xdist (``-n``, with
``--dist loadfile --no-loadscope-reorder`` in pyproject.toml) starts them
early and the workers finish close together. Within a module the order is
unchanged."""

from __future__ import annotations

import pytest

# Measured with --durations (docs: README, "Tests"); the rest follow in file order.
LONGEST_FIRST = ("test_deployment.py", "test_resume.py", "test_sim_integration.py",
                 "test_learning_digits.py", "test_compare.py", "test_failures.py",
                 "test_task.py", "test_scale.py", "test_ray_cluster.py", "test_traffic.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each module keeps its own order
