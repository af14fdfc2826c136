"""No run is ever lost: damaged checkpoints and logs set aside, unusable settings refused before
anything is written, stop signals ending in a checkpoint. Real processes, real files, real
signals, real write failures."""

from __future__ import annotations

import json
import pickle
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import BASE, CONFIGS, ROOT, checkpoints, one_line_error, resume, run_cli, start_training, train, wait_for

from dqn_atari.replay import crc_of_file


def csv_frames(run: Path) -> list[int]:
    return [int(line.split(",")[0]) for line in (run / "metrics.csv").read_text().splitlines()[1:]]


# ---------------------------------------------------------------------------- 1. the run lock


# ---------------------------------------------------------------------------- 2-3. fallbacks
@pytest.mark.e2e
def test_a_fallback_moves_the_damaged_checkpoint_aside_and_the_run_goes_on(run_copy):
    run = run_copy
    newest = checkpoints(run)[-1]
    (newest / "replay" / "manifest.json").unlink()
    first = resume(run, "train.total_frames=5000")
    assert first.returncode == 0, first.stderr
    assert "replay manifest" in first.stderr and f"moved the damaged {newest.name} aside" in first.stderr
    assert (run / "checkpoints" / f"damaged-{newest.name}").is_dir()
    assert checkpoints(run)[-1].name == "ckpt-000000005000"
    again = resume(run, "train.total_frames=5400")  # and every later resume is clean
    assert again.returncode == 0 and "warning" not in again.stderr, again.stderr


@pytest.mark.e2e
def test_checkpoint_content_that_passes_its_checksum_but_is_wrong_falls_back(run_copy):
    run = run_copy
    newest, previous = checkpoints(run)[-1], checkpoints(run)[-2]
    (newest / "state.json").write_text("{}")
    # a pickle that torch's weights-only loader refuses, its checksum recorded as if genuine
    with open(previous / "model.pt", "wb") as f:
        pickle.dump({"agent": {"online": socket.gethostname}}, f, protocol=2)
    state = json.loads((previous / "state.json").read_text())
    state["files"]["model.pt"] = crc_of_file(previous / "model.pt")
    (previous / "state.json").write_text(json.dumps(state))
    line = one_line_error(resume(run, "train.total_frames=5000"))
    assert "no loadable checkpoint" in line and "model.pt is not a model" in line
    evaluated = run_cli("evaluate", str(previous), "--episodes", "1")
    assert "model.pt is not a model" in one_line_error(evaluated)


@pytest.mark.e2e
def test_a_damaged_chunk_shared_by_every_checkpoint_is_left_out_and_the_run_goes_on(tmp_path, monkeypatch, capsys):
    """Checkpoints hard-link the replay chunks that did not change, so one flipped byte can
    damage all of them at once. The run resumes from the newest without the transitions that
    read that chunk's frames, says so, and its next checkpoint holds an intact chunk again."""
    import dqn_atari.replay as replay
    from dqn_atari.config import load_config, to_dict
    from dqn_atari.trainer import Trainer

    monkeypatch.setattr(replay, "CHUNK_ENTRIES", 256)  # several chunks in a 1,000-step run
    run = tmp_path / "run"
    cfg = load_config(CONFIGS / "smoke.yaml", [f"run_dir={run}", "train.total_frames=4000", "log.progress=quiet"])
    cfg.checkpoint.every_frames = 1000
    trainer = Trainer(cfg, run)
    trainer.train()
    trainer.close()
    newest, previous = checkpoints(run)[-1], checkpoints(run)[-2]
    shared = previous / "replay" / "frames_0_0.npy"
    assert shared.stat().st_nlink == 2 and (newest / "replay" / "frames_0_0.npy").samefile(shared)
    shared_inode = shared.stat().st_ino
    data = bytearray(shared.read_bytes())
    data[-1] ^= 0xFF
    shared.write_bytes(bytes(data))

    cfg.train.total_frames = 5000
    resumed = Trainer(cfg, run)
    capsys.readouterr()
    assert resumed.resume() == [newest]
    warnings = capsys.readouterr().err
    held = f"{len(resumed.replay):,}"  # 1,000 transitions, and one `last` entry per game that ended
    assert f"resuming from {newest.name} with its damaged replay frames left out (259 of {held}" in warnings, warnings
    resumed.train()
    resumed.close()
    latest = checkpoints(run)[-1]
    assert latest.name == "ckpt-000000005000"
    assert (latest / "replay" / "frames_0_0.npy").stat().st_ino != shared_inode  # written afresh, not linked
    check = Trainer(cfg, tmp_path / "check")
    check.seeds[0].checkpointer.load(latest, check.replay, to_dict(cfg))  # every chunk passes its checksum
    check.close()


# ---------------------------------------------------------------------------- 4-6. logs, config, weights
@pytest.mark.e2e
def test_a_restart_before_the_first_checkpoint_sets_the_old_logs_aside(tmp_path):
    run = tmp_path / "run"
    first = start_training(run, "train.total_frames=400000", "checkpoint.every_frames=0")
    try:
        wait_for(lambda: (run / "metrics.csv").exists() and len(csv_frames(run)) >= 8, "a few log lines")
    finally:
        first.kill()
        first.communicate()
    killed_rows = csv_frames(run)
    again = train(run, "train.total_frames=1200")
    assert again.returncode == 0, again.stderr
    assert "has logs but no checkpoint" in again.stderr
    frames = csv_frames(run)
    assert frames == sorted(frames) and frames[-1] == 1200  # one run's rows, in order
    (aside,) = run.glob("abandoned-*")
    assert [int(x.split(",")[0]) for x in (aside / "metrics.csv").read_text().splitlines()[1:]] == killed_rows


@pytest.mark.e2e
def test_resume_with_another_optimizer_is_refused_before_anything_is_written(run_copy):
    run = run_copy
    config_before = (run / "config.yaml").read_bytes()
    line = one_line_error(resume(run, "optimizer.name=rmsprop", "train.total_frames=5000"))
    assert "optimizer.name is 'adam' in the checkpoint but 'rmsprop' now" in line
    assert (run / "config.yaml").read_bytes() == config_before
    assert resume(run, "train.total_frames=4400").returncode == 0


@pytest.mark.e2e
def test_non_finite_weights_are_never_saved(tmp_path):
    from dqn_atari.config import load_config
    from dqn_atari.trainer import Trainer, TrainingDiverged

    cfg = load_config(CONFIGS / "smoke.yaml", ["train.total_frames=400", "log.tensorboard=false"])
    trainer = Trainer(cfg, tmp_path)
    try:
        trainer.train()  # a checkpoint at the end, weights finite
        saved = checkpoints(tmp_path)
        with torch.no_grad():
            next(trainer.agent.online.parameters())[0].fill_(float("nan"))
        trainer.seeds[0].frames += 4
        with pytest.raises(TrainingDiverged, match="non-finite weights"):
            trainer.save_checkpoint()
        assert checkpoints(tmp_path) == saved
    finally:
        trainer.close()


# ---------------------------------------------------------------------------- 7-9. integrity
@pytest.mark.e2e
def test_evaluate_refuses_a_model_that_fails_its_checksum(run_copy):
    run = run_copy
    model = checkpoints(run)[-1] / "model.pt"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    line = one_line_error(run_cli("evaluate", str(run), "--episodes", "1"))
    assert "model.pt is corrupt (checksum mismatch)" in line


@pytest.mark.e2e
def test_copies_and_damaged_logs_do_not_stop_a_resume(run_copy, tmp_path):
    import shutil

    run = run_copy
    newest = checkpoints(run)[-1]
    shutil.copytree(newest, newest.with_name(newest.name + " copy"))
    with open(run / "metrics.csv", "a") as f:
        f.write("3000,750,17000000\n")  # a line cut short by a crash
    result = resume(run, "train.total_frames=4400")
    assert result.returncode == 0, result.stderr
    assert "dropped 1 malformed line" in result.stderr
    assert csv_frames(run)[-1] == 4400
    plotted = run_cli("plot", str(run), "--metric", "train", "--out", str(tmp_path / "c.png"))
    assert plotted.returncode == 0, plotted.stderr
    (run / "metrics.csv").write_text("")  # emptied by a full disk
    result = resume(run, "train.total_frames=4800")
    assert result.returncode == 0, result.stderr
    assert (run / "metrics.csv").read_text().startswith("frames,steps,wall_time,tag,value\n")


# ---------------------------------------------------------------------------- 10-12. bad input


def test_a_population_whose_replays_fit_one_by_one_but_not_together_is_refused_before_anything(tmp_path):
    from dqn_atari.replay import memory_available_bytes

    capacity = int(0.4 * memory_available_bytes() / (84 * 84 + 6))  # each replay fits; four do not
    group = tmp_path / "group"
    overrides = [f"replay.capacity={capacity}", f"run_dir={group}", "train.total_frames=40000000"]
    error = one_line_error(run_cli("train", str(CONFIGS / "smoke.yaml"), *overrides, "--seeds", "0-3"))
    assert "4 seeds need about" in error and "train fewer seeds at once or lower replay.capacity" in error
    assert not group.exists()


@pytest.mark.e2e
def test_unwritable_outputs_are_refused_before_any_work(tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    line = one_line_error(run_cli("train", str(CONFIGS / "smoke.yaml"), f"run_dir={a_file}"))
    assert f"run_dir {a_file} is not a writable directory" in line
    line = one_line_error(run_cli("train", str(CONFIGS / "smoke.yaml"), "run_dir=/proc/dqn-run"))
    assert "run_dir /proc/dqn-run is not a writable directory" in line
    started = time.monotonic()
    line = one_line_error(run_cli("benchmark", "learner", "--json", "/proc/dqn-bench/b.json"))
    assert "--json /proc/dqn-bench/b.json: cannot write there" in line
    assert time.monotonic() - started < 60  # refused before measuring
    run = tmp_path / "run"
    (run / "tb").mkdir(parents=True)
    (run / "metrics.csv").write_text("frames,steps\n1,2\n")
    (run / "config.yaml").write_text("seed: 0\nenv: {game: Pong}\n")
    assert "is not a metrics.csv" in one_line_error(run_cli("plot", str(run), "--out", str(tmp_path / "p.png")))
    assert "--out /proc/p.png" in one_line_error(run_cli("plot", str(run), "--out", "/proc/p.png"))
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "sweep.json").write_text("[1, 2")
    assert "is not a sweep manifest" in one_line_error(run_cli("summarize", str(tmp_path / "sweep")))


# ---------------------------------------------------------------------------- 13-14. disk and signals
@pytest.mark.e2e
def test_a_write_failure_during_a_checkpoint_says_so_in_one_line_and_cleans_up(run_copy):
    """A file-size limit makes the kernel refuse the checkpoint's writes (EFBIG), as a full disk
    refuses them (ENOSPC): the same failure path, for real, without filling a disk."""
    import resource

    run = run_copy
    kept = checkpoints(run)

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write instead of killing us
        resource.setrlimit(resource.RLIMIT_FSIZE, (4 << 20, 4 << 20))  # model.pt is larger

    result = subprocess.run(
        [sys.executable, "-m", "dqn_atari", "train", "--resume", str(run), "train.total_frames=4400"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limit_file_size,
    )
    line = one_line_error(result, code=1)
    assert "cannot write checkpoint" in line and f"the previous checkpoint {kept[-1]} is intact" in line
    assert checkpoints(run) == kept
    assert not list((run / "checkpoints").glob(".tmp-*"))
    assert resume(run, "train.total_frames=4400").returncode == 0


@pytest.mark.e2e
def test_a_stop_signal_during_start_up_still_ends_in_a_checkpoint(tmp_path):
    run = tmp_path / "run"
    process = start_training(run)
    assert process.stdout is not None
    assert process.stdout.readline().startswith("run directory:")  # start-up is under way
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 75, err
    assert "stopped by signal 15" in out
    assert len(checkpoints(run)) == 1
    assert resume(run, "train.total_frames=800").returncode == 0


@pytest.mark.e2e
def test_a_replay_much_larger_than_the_run_is_warned_about_and_not_saved(tmp_path):
    (tmp_path / "empty.yaml").write_text("")  # Nature's defaults: a 1M-transition replay
    run = tmp_path / "run"
    result = run_cli(
        "train", str(tmp_path / "empty.yaml"), f"run_dir={run}", "train.total_frames=8", "train.device=cpu"
    )
    assert result.returncode == 0, result.stderr
    assert "replay.capacity=1,000,000 but this run stores at most 2 transitions" in result.stderr
    replay_bytes = sum(f.stat().st_size for f in (checkpoints(run)[-1] / "replay").iterdir())
    assert replay_bytes < 200 << 20  # the one chunk written to, not a 6.6 GB empty ring


# ---------------------------------------------------------------------------- terminals and typos
@pytest.mark.e2e
def test_a_reader_that_goes_away_never_kills_training(tmp_path):
    """`dqn-atari train ... | head -3`: once head exits, stdout is a broken pipe. Training goes
    on to its end and its checkpoint, exit 0, no traceback; a one-shot command exits quietly."""
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dqn_atari", "train", *BASE, f"run_dir={run}", "train.total_frames=2000"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for _ in range(3):
        proc.stdout.readline()
    proc.stdout.close()  # the reader goes, as head does after three lines
    err = proc.stderr.read()
    assert proc.wait(timeout=600) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert checkpoints(run)[-1].name == "ckpt-000000002000"
    listing = subprocess.run(
        f"{sys.executable} -m dqn_atari train --help-config | head -2",
        shell=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert len(listing.stdout.splitlines()) == 2 and listing.stderr == ""


@pytest.mark.e2e
def test_two_ctrl_c_in_quick_succession_checkpoint_and_exit_75(tmp_path):
    run = tmp_path / "run"
    proc = start_training(run, "train.total_frames=400000", "checkpoint.every_frames=0")
    while "frames=" not in proc.stdout.readline():
        assert proc.poll() is None, proc.stderr.read()
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 75, err
    assert "Traceback" not in err and len(checkpoints(run)) == 1


@pytest.mark.e2e
def test_plot_and_summarize_say_how_many_malformed_rows_they_skipped(tmp_path):
    run = tmp_path / "run"
    assert train(run, "train.total_frames=800").returncode == 0
    with open(run / "metrics.csv", "a") as f:  # a game's score (800 frames end none), then two bad rows
        f.write("800,200,1800000000.0,train/episode_return,-21.0\n12,3,not-a-time,train/loss,0.5\ncut-by-a-cra")
    for command in (["plot", str(run), "--metric", "train", "--out", str(tmp_path / "c.png")], ["summarize", str(run)]):
        result = run_cli(*command)
        assert result.returncode == 0, result.stderr
        assert f"{run / 'metrics.csv'}: skipped 2 malformed row(s)" in result.stderr
