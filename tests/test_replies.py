"""The server accepts a node's reply only if every part of it is valid.

Property-based: arbitrary layer names, shapes, dtypes, values, metrics and
next-node choices are generated; a reply passes ``reply_problem`` exactly
when it matches the model that was sent, is finite, and (when the node was
asked to choose) names ``k`` distinct existing nodes with a finite
observation.
"""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hl_flower.messages import ARRAYS, METRICS
from strategies.replies import one_line, reply_problem

NODES, K, OBSERVATION = 4, 1, 8
SENT = ArrayRecord([np.zeros((3, 2), np.float32), np.zeros(2, np.float32)])
PROPERTY = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])  # a loaded machine


@pytest.fixture(autouse=True)
def server_identity() -> None:
    TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 7, 1, 0


def good_metrics(**changes: object) -> MetricRecord:
    values = {"train-loss": 0.5, "time-train": 0.1, "time-observe": 0.01,
              "num-examples": 500, "policy-version": 3, "next-nodes": [2],
              "observation": [0.0] * OBSERVATION}
    values.update(changes)
    return MetricRecord({k: v for k, v in values.items() if v is not None})


def reply(arrays: ArrayRecord | None, metrics: MetricRecord | None) -> Message:
    asked = Message(RecordDict(), dst_node_id=5, message_type="train")
    records = {}
    if arrays is not None:
        records[ARRAYS] = arrays
    if metrics is not None:
        records[METRICS] = metrics
    return Message(RecordDict(records), reply_to=asked)


def problem(arrays: ArrayRecord | None, metrics: MetricRecord | None,
            choices: int | None = K) -> str | None:
    return reply_problem(reply(arrays, metrics), SENT, NODES, choices, OBSERVATION)


def test_an_honest_reply_passes() -> None:
    trained = ArrayRecord([np.ones((3, 2), np.float32), np.ones(2, np.float32)])
    assert problem(trained, good_metrics()) is None


@PROPERTY
@given(first=hnp.arrays(hnp.floating_dtypes() | hnp.integer_dtypes(),
                        hnp.array_shapes(max_dims=3, max_side=4)))
def test_weights_pass_only_with_the_sent_shape_dtype_and_finite_values(
        first: np.ndarray) -> None:
    arrays = ArrayRecord([first, np.zeros(2, np.float32)])
    valid = (first.shape == (3, 2) and first.dtype == np.float32
             and bool(np.all(np.isfinite(first))))
    assert (problem(arrays, good_metrics()) is None) == valid


@PROPERTY
@given(values=hnp.arrays(np.float32, (3, 2),
                         elements=st.floats(width=32, allow_nan=True,
                                            allow_infinity=True)))
def test_nan_or_inf_anywhere_is_refused(values: np.ndarray) -> None:
    arrays = ArrayRecord([values, np.zeros(2, np.float32)])
    accepted = problem(arrays, good_metrics()) is None
    assert accepted == bool(np.all(np.isfinite(values)))


@PROPERTY
@given(names=st.lists(st.text(min_size=1, max_size=5), min_size=0, max_size=3,
                      unique=True))
def test_layer_names_must_match(names: list[str]) -> None:
    arrays = ArrayRecord({name: Array(np.zeros((3, 2), np.float32)) for name in names})
    assert problem(arrays, good_metrics()) is not None or names == list(SENT.keys())


@PROPERTY
@given(chosen=st.lists(st.integers(-3, 2 * NODES), max_size=3),
       decide=st.booleans())
def test_next_nodes_must_be_k_distinct_nodes_when_asked(chosen: list[int],
                                                        decide: bool) -> None:
    trained = ArrayRecord([np.zeros((3, 2), np.float32), np.zeros(2, np.float32)])
    found = problem(trained, good_metrics(**{"next-nodes": chosen}),
                    choices=K if decide else None)
    valid = len(chosen) == K and all(0 <= n < NODES for n in chosen) \
        and len(set(chosen)) == K
    assert (found is None) == (valid or not decide)


@PROPERTY
@given(observation=st.lists(st.floats(allow_nan=True, allow_infinity=True),
                            max_size=2 * OBSERVATION))
def test_observation_must_be_finite_and_full_length(observation: list[float]) -> None:
    trained = ArrayRecord([np.zeros((3, 2), np.float32), np.zeros(2, np.float32)])
    found = problem(trained, good_metrics(observation=observation))
    valid = len(observation) == OBSERVATION and bool(np.all(np.isfinite(observation)))
    assert (found is None) == valid


@pytest.mark.parametrize("metrics", [
    None,
    good_metrics(**{"train-loss": None}),
    good_metrics(**{"train-loss": float("nan")}),
    good_metrics(**{"num-examples": -1}),
    good_metrics(**{"num-examples": 2.5}),
    good_metrics(**{"time-train": float("inf")}),
    good_metrics(**{"policy-version": None}),
])
def test_missing_or_bad_metrics_are_refused(metrics: MetricRecord | None) -> None:
    trained = ArrayRecord([np.zeros((3, 2), np.float32), np.zeros(2, np.float32)])
    assert problem(trained, metrics) is not None


def test_no_model_is_refused() -> None:
    assert "no model" in problem(None, good_metrics())


def test_error_reasons_become_one_line() -> None:
    reason = "Traceback (most recent call last):\n  File x\nRuntimeError: boom\n"
    assert one_line(reason) == "RuntimeError: boom"
    assert len(one_line("x" * 500)) == 160
