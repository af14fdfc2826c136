"""The CUDA path end to end on real Pong: where the replay's frames live does not change what a
run learns, and a checkpoint written on a GPU resumes and evaluates on a machine without one.
Skipped where there is no GPU; the other device tests carry their CUDA cases beside the CPU ones."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import ON_CUDA, assert_same_final_state, checkpoints, run_cli, train

pytestmark = [pytest.mark.e2e, *ON_CUDA]


def test_frames_on_the_gpu_and_in_pinned_host_memory_learn_the_same_weights(tmp_path):
    """Deterministic runs differ only in where the replay keeps its frames: the same replay
    bytes, the same sampled batches, hence bit-identical networks and optimiser state."""
    host, on_gpu = tmp_path / "host", tmp_path / "on-gpu"
    for run, frames_on_device in ((host, "false"), (on_gpu, "true")):
        result = train(run, "train.device=cuda", f"replay.frames_on_device={frames_on_device}")
        assert result.returncode == 0, result.stderr
        assert "device cuda" in result.stdout
    assert_same_final_state(host, on_gpu)


def test_a_gpu_checkpoint_resumes_and_evaluates_on_the_cpu(tmp_path):
    run = tmp_path / "run"
    assert train(run, "train.device=cuda").returncode == 0
    written_on_gpu = torch.load(checkpoints(run)[-1] / "model.pt", map_location="cpu", weights_only=True)
    assert "cuda_rng" in written_on_gpu

    result = run_cli("train", "--resume", str(run), "train.device=cpu", "train.total_frames=6000")
    assert result.returncode == 0, result.stderr
    assert "resumed from" in result.stdout and "device cpu" in result.stdout
    assert checkpoints(run)[-1].name.endswith("6000")

    out = tmp_path / "evaluation"
    result = run_cli(
        "evaluate", str(run), "--device", "cpu", "--episodes", "1", "--max-episode-frames", "800", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert len(json.loads((out / "report.json").read_text())["per_episode"]) == 1
