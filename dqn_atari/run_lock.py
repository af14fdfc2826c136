"""One trainer per run directory.

`train.lock` in the run directory names its holder: host, pid, the process's start time (so a
recycled pid is not mistaken for the holder) and the SLURM task it belongs to. A daemon thread
touches the file every HEARTBEAT_SECONDS while the holder lives.

A second trainer finding the lock refuses to start unless the holder is provably gone:
- same host: no process with that pid and start time;
- the same SLURM task (a requeued task: SLURM ends the old instance before it starts the new one,
  possibly on another node);
- another host: no heartbeat for STALE_SECONDS (run directories on a shared filesystem: the
  holder's node may have died without a word).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from pathlib import Path

LOCK_NAME = "train.lock"
HEARTBEAT_SECONDS = 30.0
STALE_SECONDS = 300.0


class RunLocked(RuntimeError):
    """The run directory belongs to a live trainer; the message is one line for the user."""


def _process_start_ticks(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot (/proc/<pid>/stat field 22); None where
    there is no /proc or no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its last ')'
    return int(stat.rsplit(")", 1)[1].split()[19])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _slurm_task() -> str | None:
    """This process's SLURM task: array job and task id for an array task, else the job id."""
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_job and task:
        return f"{array_job}_{task}"
    return os.environ.get("SLURM_JOB_ID")


def _identity() -> dict:
    pid = os.getpid()
    return {
        "host": socket.gethostname(),
        "pid": pid,
        "start_ticks": _process_start_ticks(pid),
        "slurm_task": _slurm_task(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


class RunLock:
    """`with RunLock(run_dir):` holds the run directory for the block, or raises RunLocked."""

    def __init__(self, run_dir: str | Path, warn=print):
        self.path = Path(run_dir) / LOCK_NAME
        self.warn = warn
        self.me = _identity()
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    # ------------------------------------------------------------------ acquire / release
    def acquire(self) -> None:
        for _ in range(3):  # a stale lock removed by us, then a race with another taker
            if self._create():
                self._heartbeat = threading.Thread(target=self._beat, name="run-lock-heartbeat", daemon=True)
                self._heartbeat.start()
                return
            holder = self._read_holder()
            if holder is None:
                continue  # released (or being written) between our two looks: try again
            why_gone = self._why_gone(holder)
            if why_gone is None:
                raise RunLocked(self._held_message(holder))
            self.warn(
                f"dqn-atari: warning: taking over {self.path} left by pid {holder.get('pid')} on "
                f"{holder.get('host')} ({why_gone})"
            )
            self._remove_stale()
        raise RunLocked(f"{self.path}: could not take the lock (another trainer keeps taking it)")

    def release(self) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
            self._heartbeat = None
        holder = self._read_holder()
        if holder is not None and self._is_me(holder):
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    # ------------------------------------------------------------------ the pieces
    def _create(self) -> bool:
        """Write our identity to a private file, then hard-link it to the lock's name: the link
        fails if the lock exists, and a lock never exists half-written."""
        mine = self.path.with_name(f".{LOCK_NAME}.{self.me['host']}.{self.me['pid']}")
        mine.write_text(json.dumps(self.me) + "\n")
        try:
            os.link(mine, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            mine.unlink(missing_ok=True)

    def _read_holder(self) -> dict | None:
        try:
            holder = json.loads(self.path.read_text())
            holder["heartbeat_age_s"] = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            # not ours to judge: a damaged lock is treated as held until it goes stale
            try:
                age = time.time() - self.path.stat().st_mtime
            except FileNotFoundError:
                return None
            return {"host": "?", "pid": "?", "heartbeat_age_s": age}
        return holder if isinstance(holder, dict) else {"host": "?", "pid": "?", "heartbeat_age_s": 0.0}

    def _is_me(self, holder: dict) -> bool:
        return holder.get("host") == self.me["host"] and holder.get("pid") == self.me["pid"]

    def _why_gone(self, holder: dict) -> str | None:
        """Why the holder is certainly not running, or None when it may be."""
        if holder.get("host") == self.me["host"] and isinstance(holder.get("pid"), int):
            pid = holder["pid"]
            if not _pid_alive(pid):
                return "that process has exited"
            ticks = holder.get("start_ticks")
            if ticks is not None and _process_start_ticks(pid) not in (None, ticks):
                return "that pid now belongs to another process"
            return None
        if self.me["slurm_task"] is not None and holder.get("slurm_task") == self.me["slurm_task"]:
            return f"an earlier instance of SLURM task {self.me['slurm_task']}, requeued"
        if holder["heartbeat_age_s"] > STALE_SECONDS:
            return f"no heartbeat for {holder['heartbeat_age_s']:.0f} s"
        return None

    def _held_message(self, holder: dict) -> str:
        slurm = f", SLURM task {holder['slurm_task']}" if holder.get("slurm_task") else ""
        return (
            f"run directory {self.path.parent} is in use by pid {holder.get('pid')} on host "
            f"{holder.get('host')}{slurm} (since {holder.get('started', '?')}, heartbeat "
            f"{holder['heartbeat_age_s']:.0f} s ago); stop that trainer first, or, if it is gone "
            f"for good, delete {self.path}"
        )

    def _remove_stale(self) -> None:
        # rename first: of two trainers taking over the same stale lock, only one succeeds
        aside = self.path.with_name(f".{LOCK_NAME}.stale.{self.me['host']}.{self.me['pid']}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        aside.unlink(missing_ok=True)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            # the directory may have gone away; the trainer finds that out by itself
            with contextlib.suppress(OSError):
                os.utime(self.path)
