"""The package as a user installs it: a wheel built from this tree, in a fresh virtual
environment, run from outside the source tree (no editable install, no slurm/ folder beside it)."""

from __future__ import annotations

import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from helpers import CONFIGS, ROOT


def run(*args, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=600, **kwargs)


@pytest.mark.e2e
def test_a_wheel_installs_into_a_fresh_venv_and_its_commands_work(tmp_path):
    built = run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        tmp_path / "dist",
        ROOT,
        cwd=tmp_path,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("dqn_atari-*.whl")

    venv = tmp_path / "venv"
    assert run(sys.executable, "-m", "venv", venv, cwd=tmp_path).returncode == 0
    python = venv / "bin" / "python"
    purelib = Path(
        run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).stdout.strip()
    )
    # The dependencies (torch, ale-py, ...) come from this environment's site-packages, read as a
    # plain path: its .pth files, the editable install of this tree among them, are not run.
    ours = [p for p in {*site.getsitepackages(), sysconfig.get_paths()["purelib"]} if Path(p).is_dir()]
    (purelib / "dependencies.pth").write_text("\n".join(ours) + "\n")
    installed = run(python, "-m", "pip", "install", "--no-deps", "--no-index", wheel, cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr

    where = run(python, "-c", "import dqn_atari; print(dqn_atari.__file__)", cwd=tmp_path).stdout
    assert where.startswith(str(venv)), where  # the wheel's copy, not this source tree
    cli = venv / "bin" / "dqn-atari"
    assert "Pong" in run(cli, "games", cwd=tmp_path).stdout
    dry = run(cli, "submit", CONFIGS / "smoke.yaml", "--seeds", "0-1", "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "#SBATCH --array=0-1" in dry.stdout  # the template shipped inside the wheel
    trained = run(
        cli,
        "train",
        CONFIGS / "smoke.yaml",
        f"run_dir={tmp_path / 'run'}",
        "train.total_frames=800",
        "train.learning_starts_steps=500",
        cwd=tmp_path,
    )
    assert trained.returncode == 0, trained.stderr
    assert (tmp_path / "run" / "checkpoints").is_dir()
