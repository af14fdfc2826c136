"""The benchmark command: every benchmark the module has can be asked for by name, and what the
benchmarks set up is what they say they measure."""

import re
import subprocess
import sys

import torch
from helpers import ROOT, checkpoints, run_cli, train

from dqn_atari.benchmarks import BENCHMARKS, DENORMAL_MOMENT_SHARE, learning_step_on_decaying_moments


def test_the_command_offers_every_benchmark_by_name_in_the_order_all_runs_them():
    result = run_cli("benchmark", "--help")
    assert result.returncode == 0, result.stderr
    offered = re.search(r"\{([a-z_,]+)\}", result.stdout).group(1).split(",")
    assert offered == [*BENCHMARKS, "all"]


def test_the_denormal_benchmark_steps_on_moments_a_share_denormal_and_flushes_them_all():
    """Its IEEE arm must really compute on denormal moments (and its flushed arm on none), or
    the speed-up it prints measures nothing. One thread, as the benchmark: torch's worker
    threads, started earlier in this process, keep the flush flag they started with."""
    tiny = torch.finfo(torch.float32).tiny
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    agent, step = learning_step_on_decaying_moments()

    def denormal_share() -> float:
        moments = [m for state in agent.optimizers[0].state.values() for m in (state["exp_avg"], state["exp_avg_sq"])]
        denormal = sum(int(((m != 0) & (m.abs() < tiny)).sum()) for m in moments)
        return denormal / sum(m.numel() for m in moments)

    try:
        step(False)
        assert abs(denormal_share() - DENORMAL_MOMENT_SHARE) < 0.01
        step(True)
        assert denormal_share() == 0
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(threads)


def test_denormal_moments_reports_every_weight_of_a_checkpoint_and_refuses_a_run_directory(tmp_path):
    run = tmp_path / "run"
    assert train(run).returncode == 0
    script = [sys.executable, str(ROOT / "scripts" / "denormal-moments.py")]
    report = subprocess.run([*script, str(checkpoints(run)[-1])], capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stderr
    rows = report.stdout.splitlines()[1:]
    weights = ["features.0.weight", "features.0.bias", "features.2.weight", "features.2.bias", "features.4.weight"]
    assert [row.split()[0] for row in rows[:5]] == weights
    assert rows[-1].startswith("  all weights  exp_avg ") and "exp_avg_sq" in rows[-1]
    refused = subprocess.run([*script, str(run)], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "holds no model.pt: give a checkpoint" in refused.stderr
