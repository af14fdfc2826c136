"""The command line (`dqn_atari/cli.py`): every mistake a user can make in a command, a config, a
value or a path is one line, exit 2, no traceback, often with the name that was meant."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import CONFIGS, ROOT, one_line_error, run_cli


@pytest.mark.parametrize(
    "args,message",
    [
        (["seed=-1"], "'seed' must be an integer in [0, 2**32)"),
        (["seed=18446744073709551616"], "'seed' must be an integer in [0, 2**32)"),
        (["env.frame_size=20"], "'env.frame_size' must be an integer in [36, 1024]"),
        (["train.device=cuda:abc"], "must be auto, cpu, cuda or cuda:N"),
        (["train.batch_size=10000000"], "must not exceed 'replay.capacity'"),
        (["env.noop_max=100000000"], "'env.noop_max' must be an integer in [0, 10000]"),
        (["optimizer.lr=inf"], "'optimizer.lr' must be a finite number"),
        (["optimizer.lr=.nan"], "'optimizer.lr' must be a finite number"),
        (["agent.value_head=qr_dqn", "agent.quantiles=1000000000"], "'agent.quantiles' must be an integer in"),
    ],
)
def test_values_that_would_crash_later_are_refused_up_front(args, message):
    assert message in one_line_error(run_cli("train", str(CONFIGS / "smoke.yaml"), *args))


def test_bad_yaml_files_are_refused_in_one_line(tmp_path):
    (tmp_path / "base5.yaml").write_text("base: 5\n")
    assert "'base' must be a file name" in one_line_error(run_cli("train", str(tmp_path / "base5.yaml")))
    (tmp_path / "latin1.yaml").write_bytes("env:\n  game: Pong # caf\xe9\n".encode("latin-1"))
    assert "is not UTF-8 text" in one_line_error(run_cli("train", str(tmp_path / "latin1.yaml")))


@pytest.mark.parametrize("command", ["evaluate", "record"])
def test_evaluation_options_are_checked(command):
    for option, message in ((["--device", "bogus"], "--device must be"), (["--seed", "-1"], "--seed must be")):
        assert message in one_line_error(run_cli(command, "runs/none", *option))


@pytest.mark.parametrize(
    "args,message",
    [
        (["trian.total_frames=5000"], "did you mean 'train.total_frames'?"),
        (["agent.lr=0.001"], "did you mean 'optimizer.lr'?"),
        (["eval.every_frames=1000", "eval.episodes=0"], "'eval.episodes' must be at least 1 when evaluating"),
        (["env.game=BreakoutNoFrameskip-v4"], "is a gym id; the game is env.game=Breakout"),
        (["--seed", "3"], "unrecognized option --seed; config values are key=value: seed=3"),
    ],
)
def test_typos_get_the_name_they_meant(args, message):
    assert message in one_line_error(run_cli("train", str(CONFIGS / "smoke.yaml"), *args))


def test_config_paths_that_cannot_be_configs_are_refused_in_one_line(tmp_path):
    assert "is a directory; give a YAML file" in one_line_error(run_cli("train", str(tmp_path)))
    assert "did you mean" in one_line_error(run_cli("train", str(CONFIGS / "smoek.yaml")))
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * 50_000 + "]" * 50_000 + "\n")
    assert "nested too deeply" in one_line_error(run_cli("train", str(deep)))
    (tmp_path / "missing-base.yaml").write_text("seed: 1\nbase: natrue.yaml\n")
    line = one_line_error(run_cli("train", str(tmp_path / "missing-base.yaml")))
    assert (
        "line 2: base natrue.yaml is neither next to it nor among the shipped configs; did you mean nature.yaml?"
        in line
    )
    (tmp_path / "shipped-base.yaml").write_text("base: smoke.yaml\nseed: 1\n")  # found among configs/
    printed = run_cli("train", str(tmp_path / "shipped-base.yaml"), "--print-config")
    assert printed.returncode == 0 and "total_frames: 8000" in printed.stdout


def test_a_run_dir_that_is_not_utf8_is_refused_in_one_line(tmp_path):
    result = subprocess.run(
        [
            sys.executable.encode(),
            b"-m",
            b"dqn_atari",
            b"train",
            str(CONFIGS / "smoke.yaml").encode(),
            b"run_dir=" + bytes(tmp_path) + b"/r\xff",
        ],
        cwd=ROOT,
        capture_output=True,
    )
    line = one_line_error(
        subprocess.CompletedProcess(result.args, result.returncode, "", result.stderr.decode(errors="replace"))
    )
    assert "'run_dir' holds a byte that is not UTF-8" in line


def test_evaluate_refuses_a_negative_frame_cap(tmp_path):
    line = one_line_error(run_cli("evaluate", str(tmp_path), "--max-episode-frames", "-5"))
    assert "--max-episode-frames must be at least 1" in line
