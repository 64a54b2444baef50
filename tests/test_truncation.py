"""``--truncation``: a transition that ends only at the step cap is terminal
(the reference) or bootstraps from the state at the cap (Pardo et al., "Time
Limits in Reinforcement Learning", ICML 2018); one that ends at the goal is
terminal either way."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from flwr.app import ArrayRecord
from sim_runner import refused

from hl_flower.checkpoint import FILES, load_checkpoint, save_checkpoint
from hl_flower.config import ConfigError, HLConfig
from hl_flower.distance import reference_distance
from hl_flower.dqn import DQNAgent, NStepReturns, Transition, q_values
from strategies.episodes import RoundOutcome
from strategies.hl import HomogeneousLearning

SMALL = HLConfig(num_nodes=4, dqn_hidden_1=16, dqn_hidden_2=8, replay_batch=2,
                 dqn_fit_batch=2, normalize_targets=False, discount=0.5)
STATE = np.zeros(SMALL.observation_size, np.float32)
AT_CAP = np.linspace(-1.0, 1.0, SMALL.observation_size, dtype=np.float32)
REWARD = -1.25
ROOT = Path(__file__).resolve().parents[1]


def _agent(truncation: str, **changes: object) -> DQNAgent:
    return DQNAgent(SMALL.replace(truncation=truncation, **changes), seed=0)


def _last_step(truncated: bool, steps: int = 1) -> Transition:
    """The decision that ended the episode: at the cap (``truncated``) or at the goal."""
    return Transition(STATE, (2,), REWARD, AT_CAP, True, steps=steps, truncated=truncated)


def _target(agent: DQNAgent, transition: Transition) -> float:
    _, targets = agent.minibatch_targets([transition])
    return float(targets[0, 2])


def _with_another_target_network(agent: DQNAgent) -> DQNAgent:
    """Give ``agent`` a target network that differs from its online one."""
    agent.target_weights = DQNAgent(agent.config, seed=9).get_weights()
    return agent


# --- the TD target --------------------------------------------------------------------

def test_the_reference_stores_the_step_cap_as_terminal() -> None:
    assert HLConfig().truncation == "terminal"
    assert _target(_agent("terminal"), _last_step(truncated=True)) == pytest.approx(REWARD)


def test_bootstrap_at_the_cap_adds_the_discounted_max_q_of_the_state_at_the_cap() -> None:
    agent = _agent("bootstrap")
    next_max = q_values(agent.get_weights(), AT_CAP[None, :]).max()
    assert next_max != 0.0
    assert _target(agent, _last_step(truncated=True)) == pytest.approx(
        REWARD + 0.5 * next_max, rel=1e-5)


def test_bootstrap_at_the_cap_uses_the_target_network_when_there_is_one() -> None:
    agent = _with_another_target_network(_agent("bootstrap", target_sync=5))
    online, target = (q_values(w, AT_CAP[None, :])[0]
                      for w in (agent.get_weights(), agent.target_weights))
    assert target.max() != pytest.approx(online.max())
    assert _target(agent, _last_step(truncated=True)) == pytest.approx(
        REWARD + 0.5 * target.max(), rel=1e-5)


def test_bootstrap_at_the_cap_with_double_dqn_values_the_online_choice_by_the_target() -> None:
    agent = _with_another_target_network(
        _agent("bootstrap", target_sync=5, double_dqn=True))
    online, target = (q_values(w, AT_CAP[None, :])[0]
                      for w in (agent.get_weights(), agent.target_weights))
    chosen = int(np.argmax(online))
    assert _target(agent, _last_step(truncated=True)) == pytest.approx(
        REWARD + 0.5 * target[chosen], rel=1e-5)


@pytest.mark.parametrize("truncation", ["terminal", "bootstrap"])
@pytest.mark.parametrize("changes", [{}, {"target_sync": 5},
                                     {"target_sync": 5, "double_dqn": True}])
def test_the_goal_stays_terminal(truncation: str, changes: dict) -> None:
    agent = _agent(truncation, **changes)
    assert _target(agent, _last_step(truncated=False)) == pytest.approx(REWARD)


def test_a_transition_before_the_end_bootstraps_under_both() -> None:
    middle = Transition(STATE, (2,), REWARD, AT_CAP, False)
    assert (_target(_agent("terminal"), middle)
            == _target(_agent("bootstrap"), middle))


def test_terminal_flags_by_hand() -> None:
    goal, cap, going = _last_step(False), _last_step(True), Transition(
        STATE, (0,), 0.0, AT_CAP, False)
    assert [t.terminal("terminal") for t in (goal, cap, going)] == [True, True, False]
    assert [t.terminal("bootstrap") for t in (goal, cap, going)] == [True, False, False]


# --- n-step returns ---------------------------------------------------------------

def _episode(n: int, truncated: bool) -> list[Transition]:
    """Three decisions (rewards 1, 2, 4), the last ending the episode."""
    returns = NStepReturns(n=n, discount=0.5)
    stored = []
    for index, reward in enumerate((1.0, 2.0, 4.0)):
        last = index == 2
        stored += returns.add(Transition(
            np.full(SMALL.observation_size, index, np.float32), (index,), reward,
            AT_CAP if last else np.full(SMALL.observation_size, index + 1, np.float32),
            last, truncated=last and truncated))
    return stored


def test_n_step_returns_at_the_cap_bootstrap_from_the_state_at_the_cap() -> None:
    agent = _agent("bootstrap")
    stored = _episode(n=3, truncated=True)
    assert [(t.steps, t.truncated) for t in stored] == [(3, True), (2, True), (1, True)]
    next_max = q_values(agent.get_weights(), AT_CAP[None, :]).max()
    _, targets = agent.minibatch_targets(stored)
    sums = [1.0 + 0.5 * 2.0 + 0.25 * 4.0, 2.0 + 0.5 * 4.0, 4.0]
    expected = [s + 0.5 ** t.steps * next_max for s, t in zip(sums, stored, strict=True)]
    assert [targets[row, t.actions[0]] for row, t in enumerate(stored)] == pytest.approx(
        expected, rel=1e-5)
    _, reference = _agent("terminal").minibatch_targets(stored)
    assert [reference[row, t.actions[0]] for row, t in enumerate(stored)] == pytest.approx(
        sums)


def test_n_step_returns_at_the_goal_stay_terminal_under_bootstrap() -> None:
    stored = _episode(n=2, truncated=False)
    assert not any(t.truncated for t in stored) and stored[-1].done
    _, targets = _agent("bootstrap").minibatch_targets(stored[1:])  # the flushed ones
    assert [targets[row, t.actions[0]] for row, t in enumerate(stored[1:])] == (
        pytest.approx([2.0 + 0.5 * 4.0, 4.0]))


# --- where the flag comes from: the strategy --------------------------------------

def _strategy(max_steps: int) -> HomogeneousLearning:
    config = SMALL.replace(max_steps=max_steps, goal=0.8)
    return HomogeneousLearning.from_config(config, reference_distance(4),
                                           agent=DQNAgent(config, seed=0))


def _play(strategy: HomogeneousLearning, accuracies: list[float]) -> None:
    """After-step hooks of one episode with these accuracies, ended by the
    goal or the cap as :meth:`EpisodeLoop.run_episode` would end it."""
    strategy.begin_episode(0)
    for step, accuracy in enumerate(accuracies, start=1):
        strategy.step = step
        done = accuracy >= strategy.goal or step >= strategy.max_steps
        strategy.after_step(RoundOutcome(ArrayRecord([np.zeros(1, np.float32)]), [1], [2],
                                         np.full(SMALL.observation_size, step, np.float32),
                                         0.0, 0.0, 0.0), accuracy, -1.0, done)


@pytest.mark.parametrize(("accuracies", "flags"), [
    ([0.1, 0.2, 0.3], [(False, False), (True, True)]),  # the cap
    ([0.1, 0.9], [(True, False)]),  # the goal
    ([0.1, 0.2, 0.8], [(False, False), (True, False)]),  # the goal at the cap: the goal
])
def test_the_strategy_marks_only_an_episode_cut_by_the_cap_as_truncated(
        accuracies: list[float], flags: list[tuple[bool, bool]]) -> None:
    strategy = _strategy(max_steps=3)
    _play(strategy, accuracies)
    assert [(t.done, t.truncated) for t in strategy.agent.memory] == flags
    assert strategy.agent.memory[-1].next_state[0] == len(accuracies)  # the last observation


# --- checkpoints ------------------------------------------------------------------

def _rewrite_checksums(folder: Path) -> None:
    """Make ``state.json`` match the files as they are now."""
    state = json.loads((folder / "state.json").read_text())
    state["sha256"] = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
                       for name in state["sha256"]}
    (folder / "state.json").write_text(json.dumps(state))


def test_a_checkpoint_keeps_the_truncated_flags(tmp_path: Path) -> None:
    saved = _agent("bootstrap")
    for done, truncated in ((False, False), (True, True), (True, False)):
        saved.remember(Transition(STATE, (1,), 1.0, AT_CAP, done, truncated=truncated))
    folder = save_checkpoint(tmp_path, saved, episodes_done=2, policy_updates=0)
    restored = _agent("bootstrap")
    load_checkpoint(folder, restored)
    assert [(t.done, t.truncated) for t in restored.memory] == [
        (False, False), (True, True), (True, False)]


def test_a_checkpoint_from_before_truncation_loads_every_end_as_terminal(
        tmp_path: Path) -> None:
    saved = _agent("terminal")
    saved.remember(Transition(STATE, (1,), 1.0, AT_CAP, True, truncated=True))
    folder = save_checkpoint(tmp_path, saved, episodes_done=1, policy_updates=0)
    with np.load(folder / FILES[2], allow_pickle=False) as memory:
        older = {name: memory[name] for name in memory.files if name != "truncated"}
    np.savez(folder / FILES[2], **older)
    _rewrite_checksums(folder)
    restored = _agent("terminal")
    load_checkpoint(folder, restored)
    assert [(t.done, t.truncated) for t in restored.memory] == [(True, False)]


# --- the setting ------------------------------------------------------------------

def test_an_unknown_truncation_is_one_line_naming_the_flag() -> None:
    with pytest.raises(ConfigError, match=r"^unknown --truncation 'cap'; "
                                          r"use terminal or bootstrap$"):
        HLConfig(truncation="cap").validate()
    finished = refused("--truncation", "cap")
    assert finished.returncode == 2
    assert finished.stderr.strip().splitlines() == [
        "error: unknown --truncation 'cap'; use terminal or bootstrap"]


def test_the_agent_refuses_an_unknown_truncation() -> None:
    with pytest.raises(ValueError, match="truncation must be one of"):
        DQNAgent(SMALL.replace(truncation="cap"), seed=0)


# --- a real run -------------------------------------------------------------------

@pytest.mark.slow
def test_a_short_run_with_bootstrap_truncation_stores_the_cap_as_truncated(
        tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "sim.py", "--dataset", "digits", "--nodes", "4",
         "--main-samples", "60", "--other-samples", "60", "--episodes", "2",
         "--max-steps", "3", "--replay-batch", "2", "--dqn-fit-batch", "2",
         "--truncation", "bootstrap", "--out", str(tmp_path), "--name", "t"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "t"
    assert json.loads((run / "config.json").read_text())["truncation"] == "bootstrap"
    with (run / "episodes.csv").open() as handle:
        episodes = list(csv.DictReader(handle))
    assert len(episodes) == 2
    (checkpoint,) = sorted(run.glob("checkpoint-00002"))
    with np.load(checkpoint / FILES[2], allow_pickle=False) as memory:
        dones, truncated = memory["dones"], memory["truncated"]
    capped = sum(e["reached_goal"] == "False" for e in episodes)
    goals_after_step_1 = sum(e["reached_goal"] == "True" and e["steps"] != "1"
                             for e in episodes)
    assert capped >= 1  # 3 steps on digits stay far below the goal
    assert int(truncated.sum()) == capped
    assert int((dones & ~truncated).sum()) == goals_after_step_1
    assert not (truncated & ~dones).any()
