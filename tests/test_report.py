"""The compare report's ratio lines (hl_flower.report.ratio_lines)."""

from __future__ import annotations

from hl_flower.compare import MethodRun
from hl_flower.report import ratio_lines


def run(method: str, seed: int, steps: int) -> MethodRun:
    return MethodRun(method, seed, steps, True, 0.9, 0.1 * steps, 1000, steps, 1.0, "0")


def test_hl_is_set_against_the_fixed_rule_with_the_fewest_steps() -> None:
    runs = [run("HL-greedy", s, 6) for s in (1, 2)] + \
        [run("Standalone", s, 30) for s in (1, 2)] + \
        [run("RoundRobin", 1, 4), run("RoundRobin", 2, 8)] + \
        [run("RandomHop", s, 12) for s in (1, 2)]
    text = "\n".join(ratio_lines(runs))
    assert "Steps of HL-greedy / RoundRobin (of the fixed rules run, the fewest" in text
    assert "1.125 ± 0.530 over 2 seeds" in text  # 6/4 and 6/8
    assert "- steps: 0.500 ± 0.000 over 2 seeds" in text  # against RandomHop


def test_without_fixed_rules_there_is_no_rule_ratio() -> None:
    runs = [run("HL-greedy", 1, 6), run("FedAvg", 1, 3)]
    assert ratio_lines(runs) == []
