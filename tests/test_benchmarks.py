"""The benchmark command: every benchmark the module has can be asked for by name."""

import re

from helpers import run_cli

from dqn_atari.benchmarks import BENCHMARKS


def test_the_command_offers_every_benchmark_by_name_in_the_order_all_runs_them():
    result = run_cli("benchmark", "--help")
    assert result.returncode == 0, result.stderr
    offered = re.search(r"\{([a-z_,]+)\}", result.stdout).group(1).split(",")
    assert offered == [*BENCHMARKS, "all"]
