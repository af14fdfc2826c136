import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"

# Tests run in 2 worker processes (pytest-xdist, `-n 2` in pyproject.toml): each gets its share of
# the cores, for torch in this process and for the CLI processes the tests start.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREADS = max(1, (os.cpu_count() or 2) // _WORKERS)
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
torch.set_num_threads(THREADS)
# cuBLAS reads its workspace setting once, when it first starts: set here, before any test
# touches a GPU, so the tests that turn on deterministic algorithms in-process may do so.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

# The CUDA variants of device tests: collected everywhere, run where a GPU is present, skipped
# (with this reason in the summary) on CPU-only machines. `pytest -m cuda` runs only them.
ON_CUDA = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
CUDA = pytest.param("cuda", marks=ON_CUDA, id="cuda")


def _has_bf16_units() -> bool:
    """A CPU with bfloat16 matrix units (AVX-512 BF16 or AMX); elsewhere bf16 is emulated, several
    times slower than fp32 (6.5x on this project's AVX2 machine)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


# bf16 tests on the CPU: run where it has bf16 units, skipped (saying so) where bf16 is emulated.
BF16_HERE = pytest.mark.skipif(not _has_bf16_units(), reason="bf16 is emulated on this CPU (no AVX-512 BF16 or AMX)")


def on_host(x):
    """A sampled field as a numpy array, wherever it lives (frames on a GPU come back as CUDA
    tensors)."""
    return x.cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """The real console entry point in a child process: exit status and stderr as a user sees them."""
    return subprocess.run(
        [sys.executable, "-m", "dqn_atari", *args],
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def cli():
    return run_cli
