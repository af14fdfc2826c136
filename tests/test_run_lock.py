"""The run lock: one trainer per run directory, a dead holder never blocks, a lock of another
host holds while it beats, and a requeued SLURM task takes over its own."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest
from helpers import checkpoints, one_line_error, resume, start_training, train, wait_for

from dqn_atari.run_lock import LOCK_NAME, RunLock, RunLocked


def _write_lock(run: Path, holder: dict, age_s: float) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / LOCK_NAME).write_text(json.dumps(holder))
    then = time.time() - age_s
    os.utime(run / LOCK_NAME, (then, then))


@pytest.mark.e2e
def test_a_second_trainer_on_a_live_run_is_refused_and_a_dead_holder_does_not_block(tmp_path):
    run = tmp_path / "run"
    first = start_training(run, "train.total_frames=400000", "checkpoint.every_frames=1000")
    try:
        wait_for(lambda: len(checkpoints(run)) >= 1, "the first checkpoint")
        for attempt in (train(run), resume(run)):
            line = one_line_error(attempt)
            assert f"in use by pid {first.pid} on host {socket.gethostname()}" in line
        assert first.poll() is None  # the holder runs on, untouched
    finally:
        first.kill()
        first.communicate()
    assert (run / LOCK_NAME).exists()  # a SIGKILLed holder leaves its lock behind...
    frames = int(checkpoints(run)[-1].name.split("-")[1])
    resumed = resume(run, f"train.total_frames={frames + 400}")
    assert resumed.returncode == 0, resumed.stderr  # ...which does not block the resume
    assert f"left by pid {first.pid}" in resumed.stderr and "that process has exited" in resumed.stderr
    assert not (run / LOCK_NAME).exists()  # released at the end


def test_a_lock_from_another_host_holds_while_it_beats_and_goes_stale_without(tmp_path):
    holder = {"host": "node-that-is-not-this-one", "pid": 4242, "slurm_task": None, "started": "earlier"}
    _write_lock(tmp_path, holder, age_s=10)
    with pytest.raises(RunLocked, match="in use by pid 4242 on host node-that-is-not-this-one"):
        RunLock(tmp_path, warn=lambda line: None).acquire()
    _write_lock(tmp_path, holder, age_s=3600)  # its node died an hour ago
    warnings: list[str] = []
    with RunLock(tmp_path, warn=warnings.append):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert "no heartbeat for" in warnings[0]
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_requeued_slurm_task_takes_over_its_own_lock_from_another_node(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "77")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    other_task = {"host": "node-b", "pid": 99, "slurm_task": "77_2", "started": "earlier"}
    _write_lock(tmp_path, other_task, age_s=5)
    with pytest.raises(RunLocked, match="SLURM task 77_2"):
        RunLock(tmp_path, warn=lambda line: None).acquire()
    _write_lock(tmp_path, dict(other_task, slurm_task="77_1"), age_s=5)  # this task, before its requeue
    warnings: list[str] = []
    with RunLock(tmp_path, warn=warnings.append):
        pass
    assert "earlier instance of SLURM task 77_1" in warnings[0]
