"""Exploration rules: the epsilon schedules, noisy nets' none, and the rule a config asks for."""

import numpy as np
import pytest
from helpers import CONFIGS

from dqn_atari.config import load_config
from dqn_atari.exploration import LinearEpsilon, NoEpsilon, exploration_from_config, linear_epsilon


def test_epsilon_schedule_values_from_zero_and_from_learning_start():
    assert linear_epsilon(0, 1.0, 0.1, 1_000_000) == 1.0
    assert linear_epsilon(500_000, 1.0, 0.1, 1_000_000) == pytest.approx(0.55)
    assert linear_epsilon(1_000_000, 1.0, 0.1, 1_000_000) == pytest.approx(0.1)
    assert linear_epsilon(7_000_000, 1.0, 0.1, 1_000_000) == pytest.approx(0.1)
    # held at the start value until learning starts (200,000 frames), then annealed
    assert linear_epsilon(150_000, 1.0, 0.1, 1_000_000, begin_frames=200_000) == 1.0
    assert linear_epsilon(700_000, 1.0, 0.1, 1_000_000, begin_frames=200_000) == pytest.approx(0.55)
    assert linear_epsilon(1_200_000, 1.0, 0.1, 1_000_000, begin_frames=200_000) == pytest.approx(0.1)


def test_the_config_chooses_the_rule_and_where_its_annealing_begins():
    held = exploration_from_config(load_config(CONFIGS / "pong.yaml", ["train.learning_starts_steps=1000"]))
    assert isinstance(held, LinearEpsilon)
    a = load_config(CONFIGS / "pong.yaml").agent
    assert held.begin_frames == (4000 if a.epsilon_decay_start == "learning_starts" else 0)
    from_zero = exploration_from_config(
        load_config(CONFIGS / "pong.yaml", ["agent.epsilon_decay_start=zero", "agent.epsilon_start=1.0"])
    )
    assert from_zero.begin_frames == 0 and from_zero.epsilons(0, 3).tolist() == [1.0, 1.0, 1.0]
    noisy = exploration_from_config(load_config(CONFIGS / "pong.yaml", ["agent.exploration=none"]))
    assert isinstance(noisy, NoEpsilon) and noisy.epsilons(10**9, 4).tolist() == [0.0] * 4


@pytest.mark.parametrize("frames", [0, 123_457, 10**7])
def test_every_game_gets_the_schedules_epsilon(frames):
    rule = LinearEpsilon(1.0, 0.01, 600_000)
    assert np.array_equal(rule.epsilons(frames, 8), np.full(8, linear_epsilon(frames, 1.0, 0.01, 600_000)))
