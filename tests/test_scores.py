"""Reference scores and score statistics: human-normalised scores by hand, bootstrap intervals,
and the module's promise to results.py: no torch."""

import subprocess
import sys

import pytest

from dqn_atari.scores import bootstrap_ci, human_normalized, reference_scores


def test_human_normalised_score_by_hand():
    assert human_normalized("Pong", 14.6) == pytest.approx(1.0)
    assert human_normalized("Pong", -20.7) == pytest.approx(0.0)
    assert human_normalized("Breakout", 16.1) == pytest.approx((16.1 - 1.7) / (30.5 - 1.7))
    assert human_normalized("Adventure", 1.0) is None  # not one of the 57
    assert len(reference_scores()) == 57


def test_bootstrap_interval_brackets_the_mean():
    assert bootstrap_ci([3.0, 3.0, 3.0]) == (3.0, 3.0)
    low, high = bootstrap_ci([0.0, 10.0] * 10)
    assert low < 5.0 < high and low > 2.0 and high < 8.0


def test_plotting_and_summarising_import_no_torch():
    """`plot` and `summarize` read CSV and YAML files: they must not pay for torch's import (or
    need it installed) to do so."""
    probe = "import sys, dqn_atari.results; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
