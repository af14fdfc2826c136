"""pytest's set-up for the whole suite: each worker's share of the cores and the `cli` fixture.
What test modules share otherwise is in helpers.py."""

import os
import shutil

import pytest
import torch
from helpers import CONFIGS, run_cli, train

# Tests run in 2 worker processes (pytest-xdist, `-n 2` in pyproject.toml): each gets its share of
# the cores, for torch in this process and for the CLI processes the tests start.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREADS = max(1, (os.cpu_count() or 2) // _WORKERS)
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
torch.set_num_threads(THREADS)
# cuBLAS reads its workspace setting once, when it first starts: set here, before any test
# touches a GPU, so the tests that turn on deterministic algorithms in-process may do so.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """One short run on Pong (helpers.BASE: 4,000 frames, the checkpoints of 3,000 and 4,000 kept),
    trained once per worker process for every test that only needs a finished run to start from."""
    run = tmp_path_factory.mktemp("trained") / "run"
    result = train(run)
    assert result.returncode == 0, result.stderr
    return run


@pytest.fixture
def run_copy(trained_run, tmp_path):
    """A copy of `trained_run` of this test's own, to damage, extend or resume."""
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    return copy


@pytest.fixture(scope="session")
def untrained_run(tmp_path_factory):
    """A 400-frame run on Pong that has not started learning: a checkpoint for `evaluate` and
    `record` to read, trained once per worker process."""
    run = tmp_path_factory.mktemp("untrained") / "run"
    result = run_cli(
        "train",
        str(CONFIGS / "smoke.yaml"),
        f"run_dir={run}",
        "train.total_frames=400",
        "train.learning_starts_steps=1000",
    )
    assert result.returncode == 0, result.stderr
    return run
