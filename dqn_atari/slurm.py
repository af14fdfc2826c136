"""Sweeps as SLURM job arrays: render `slurm/job-array.sbatch`, submit it, report on it.

A sweep directory holds
    job.sbatch       the rendered script (what was submitted)
    tasks/<i>.yaml   the fully resolved config of array task i (its run_dir is fixed)
    sweep.json       array index -> game, seed, overrides, run directory; the job id
    logs/            SLURM's output, one file per task
    runs/            the run directories
Every value that reaches the script is validated first (#SBATCH lines are not parsed by a
shell, so quoting cannot protect them) and shell-quoted where a shell reads it.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dqn_atari.config import load_config, save_config
from dqn_atari.envs.games import resolve_game
from dqn_atari.metrics import read_csv

# Package data, so `submit` works from an installed wheel; slurm/job-array.sbatch in the source
# tree links to it, where cluster users look for it.
TEMPLATE = Path(__file__).resolve().parent / "data" / "job-array.sbatch"
_TIME = re.compile(r"^(\d+-\d{1,2}(:\d{2}(:\d{2})?)?|\d+(:\d{2}){0,2})$")  # sbatch's --time forms
_MEM = re.compile(r"^\d+[KMGT]?$")
_NAME = re.compile(r"^[A-Za-z0-9_.+\-]+$")
_PATH = re.compile(r"^[A-Za-z0-9_.+\-/]+$")


class SlurmError(RuntimeError):
    """A problem with a submission; the message is one line for the user."""


@dataclass
class Resources:
    time: str = "24:00:00"
    cpus: int = 4
    mem: str = "32G"
    gpus: int = 0
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    max_parallel: int | None = None
    signal_seconds: int = 120

    def validate(self) -> None:
        if not _TIME.match(self.time):
            raise SlurmError(
                f"--time {self.time!r} is not a SLURM time; use MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS"
            )
        if not _MEM.match(self.mem):
            raise SlurmError(f"--mem {self.mem!r} is not a SLURM memory size; use e.g. 32G, 4000M or 16000")
        for name in ("partition", "account", "qos"):
            value = getattr(self, name)
            if value is not None and not _NAME.match(value):
                raise SlurmError(f"--{name} {value!r} may hold only letters, digits and _ . + -")
        if self.cpus < 1:
            raise SlurmError(f"--cpus must be at least 1, got {self.cpus}")
        if self.gpus < 0:
            raise SlurmError(f"--gpus must be 0 or more, got {self.gpus}")
        if self.max_parallel is not None and self.max_parallel < 1:
            raise SlurmError(f"--max-parallel must be at least 1, got {self.max_parallel}")
        if self.signal_seconds < 1:
            raise SlurmError(f"--signal-seconds must be at least 1, got {self.signal_seconds}")


def parse_seeds(text: str) -> list[int]:
    """'0-4', '0,2,7' or '3' -> seeds."""
    seeds: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise SlurmError(f"--seeds {text!r} is not a seed list; use e.g. 0-4 or 0,1,5")
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
        if high < low:
            raise SlurmError(f"--seeds {text!r}: the range {low}-{high} is empty")
        seeds.extend(range(low, high + 1))
    if len(set(seeds)) != len(seeds):
        raise SlurmError(f"--seeds {text!r} repeats a seed")
    return seeds


def render_script(sweep_dir: Path, job_name: str, num_tasks: int, res: Resources, python: str = sys.executable) -> str:
    array = f"0-{num_tasks - 1}" + (f"%{res.max_parallel}" if res.max_parallel else "")
    optional = {
        "GPUS_LINE": ("--gres=gpu:{}", res.gpus or None),
        "PARTITION_LINE": ("--partition={}", res.partition),
        "ACCOUNT_LINE": ("--account={}", res.account),
        "QOS_LINE": ("--qos={}", res.qos),
    }
    values = {
        "JOB_NAME": job_name,
        "ARRAY": array,
        "LOG_DIR": str(sweep_dir / "logs"),
        "TIME": res.time,
        "CPUS": str(res.cpus),
        "MEM": res.mem,
        "SIGNAL_SECONDS": str(res.signal_seconds),
        # Read by the shell: quoted.
        "SWEEP_DIR": shlex.quote(str(sweep_dir)),
        "PYTHON": shlex.quote(python),
    }
    for key, (form, value) in optional.items():
        values[key] = f"#SBATCH {form.format(value)}" if value is not None else f"##SBATCH {form.format('')} (not set)"
    script = TEMPLATE.read_text()
    for key, value in values.items():
        script = script.replace(f"@@{key}@@", value)
    leftover = re.search(r"@@[A-Z_]+@@", script)
    if leftover:
        raise SlurmError(f"template {TEMPLATE} has an unknown placeholder {leftover.group(0)}")
    return script


def plan_sweep(config: str, games: list[str] | None, seeds: list[int], overrides: list[str], sweep_dir: Path):
    """One resolved config per (game, seed), each with its own fixed run directory; validated."""
    base = load_config(config, overrides)
    games = [resolve_game(g) for g in (games or [base.env.game])]
    tasks: list[dict] = []
    for game in games:
        for seed in seeds:
            run_dir = sweep_dir / "runs" / f"{game}-s{seed}"
            cfg = load_config(config, [*overrides, f"env.game={game}", f"seed={seed}", f"run_dir={run_dir}"])
            cfg.config_name = base.config_name
            tasks.append(
                {
                    "index": len(tasks),
                    "game": game,
                    "seed": seed,
                    "overrides": overrides,
                    "run_dir": str(run_dir),
                    "config": cfg,
                }
            )
    return tasks


def submit(
    config: str,
    *,
    games: list[str] | None,
    seeds_text: str,
    overrides: list[str],
    resources: Resources,
    sweep_dir: str | None = None,
    dry_run: bool = False,
) -> dict:
    resources.validate()
    seeds = parse_seeds(seeds_text)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    sweep = Path(sweep_dir or f"sweeps/{Path(config).stem}-{stamp}").absolute()
    if not _PATH.match(str(sweep)):
        raise SlurmError(f"sweep directory {str(sweep)!r} may hold only letters, digits and _ . + - /")
    if sweep.exists() and any(sweep.iterdir()):
        raise SlurmError(f"sweep directory {sweep} already exists and is not empty; choose another with --sweep-dir")
    tasks = plan_sweep(config, games, seeds, overrides, sweep)
    job_name = f"dqn-{Path(config).stem}"
    if not _NAME.match(job_name):
        job_name = "dqn-sweep"
    script = render_script(sweep, job_name, len(tasks), resources)
    if dry_run:
        return {"script": script, "tasks": tasks, "sweep_dir": str(sweep), "job_id": None}

    if shutil.which("sbatch") is None:
        raise SlurmError("sbatch not found: run this on a SLURM login node (or start slurm/local-cluster/up.sh)")
    (sweep / "tasks").mkdir(parents=True, exist_ok=True)
    (sweep / "logs").mkdir(exist_ok=True)
    try:
        for task in tasks:
            save_config(task["config"], sweep / "tasks" / f"{task['index']}.yaml")
        (sweep / "job.sbatch").write_text(script)
        result = subprocess.run(["sbatch", "--parsable", str(sweep / "job.sbatch")], capture_output=True, text=True)
        if result.returncode != 0:
            message = (result.stderr or result.stdout).strip().splitlines()
            raise SlurmError(f"sbatch failed: {message[-1] if message else f'exit {result.returncode}'}")
        job_id = result.stdout.strip().split(";")[0]
    except BaseException:
        shutil.rmtree(sweep, ignore_errors=True)  # nothing half-submitted left looking like a sweep
        raise
    manifest = {
        "job_id": job_id,
        "submitted": stamp,
        "config": str(Path(config).absolute()),
        "command": sys.argv,
        "resources": resources.__dict__,
        "tasks": [{k: v for k, v in t.items() if k != "config"} for t in tasks],
    }
    (sweep / "sweep.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return {"script": script, "tasks": tasks, "sweep_dir": str(sweep), "job_id": job_id}


# ---------------------------------------------------------------------------- status
def _slurm_states(job_id: str) -> dict[int, dict]:
    """Array index -> {'state', 'restarts'} from squeue (live) and scontrol (recently ended)."""
    states: dict[int, dict] = {}
    try:
        out = subprocess.run(
            ["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    for line in out.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if "ArrayTaskId" in fields and fields["ArrayTaskId"].isdigit():
            states[int(fields["ArrayTaskId"])] = {
                "state": fields.get("JobState", "?"),
                "restarts": int(fields.get("Restarts", 0)),
            }
    try:
        out = subprocess.run(
            ["squeue", "-h", "-r", "-j", job_id, "-o", "%K %T"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    for line in out.splitlines():
        index, state = line.split()
        if index.isdigit():
            states.setdefault(int(index), {"restarts": 0})["state"] = state
    return states


def _completion_records(job_id: str) -> dict[int, str]:
    """Array index -> final state from the job completion file (jobcomp/filetxt), for tasks that
    squeue and scontrol have forgotten. Empty when the cluster keeps no such file."""
    try:
        config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    match = re.search(r"^JobCompLoc\s*=\s*(\S+)", config, re.M)
    if not match or not Path(match.group(1)).is_file():
        return {}
    out = {}
    for line in Path(match.group(1)).read_text().splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if fields.get("ArrayJobId") == job_id and fields.get("ArrayTaskId", "").isdigit():
            out[int(fields["ArrayTaskId"])] = fields.get("JobState", "?")
    return out


def run_progress(run_dir: Path) -> dict:
    """Frames done, the mean raw score of the last 10 games, and restarts, from a run's files."""
    out: dict[str, Any] = {"frames": 0, "return10": None, "restarts": 0}
    csv_path = run_dir / "metrics.csv"
    if csv_path.is_file():
        metrics = read_csv(csv_path)
        frames = [f for points in metrics.values() for f, _ in points]
        out["frames"] = max(frames) if frames else 0
        scores = [v for _, v in metrics.get("train/episode_return", [])][-10:]
        out["return10"] = sum(scores) / len(scores) if scores else None
        restarts = metrics.get("slurm/restart_count", [])
        out["restarts"] = int(restarts[-1][1]) if restarts else 0
    checkpoints = sorted((run_dir / "checkpoints").glob("ckpt-*")) if (run_dir / "checkpoints").is_dir() else []
    if checkpoints:
        out["frames"] = max(out["frames"], int(checkpoints[-1].name.split("-")[1]))
    return out


def status(sweep_dir: str | Path) -> list[dict]:
    sweep = Path(sweep_dir)
    try:
        manifest = json.loads((sweep / "sweep.json").read_text())
    except (OSError, json.JSONDecodeError):
        raise SlurmError(f"{sweep} is not a sweep directory (no readable sweep.json)") from None
    job_id = manifest["job_id"]
    live = _slurm_states(job_id) if shutil.which("scontrol") else {}
    ended = _completion_records(job_id) if shutil.which("scontrol") else {}
    rows = []
    for task in manifest["tasks"]:
        i = task["index"]
        cfg = load_config(sweep / "tasks" / f"{i}.yaml")
        progress = run_progress(Path(task["run_dir"]))
        slurm = live.get(i, {})
        rows.append(
            {
                "index": i,
                "job": f"{job_id}_{i}",
                "game": task["game"],
                "seed": task["seed"],
                "state": slurm.get("state") or ended.get(i) or "UNKNOWN",
                "frames": progress["frames"],
                "budget": cfg.train.total_frames,
                "return10": progress["return10"],
                "restarts": max(slurm.get("restarts", 0), progress["restarts"]),
            }
        )
    return rows


def format_status(rows: list[dict]) -> str:
    lines = [f"{'task':<12} {'game':<14} {'seed':>4} {'state':<11} {'frames':>23} {'return10':>9} {'restarts':>8}"]
    for r in rows:
        ret = f"{r['return10']:.1f}" if r["return10"] is not None else "-"
        lines.append(
            f"{r['job']:<12} {r['game']:<14} {r['seed']:>4} {r['state']:<11} "
            f"{r['frames']:>11,}/{r['budget']:<11,} {ret:>9} {r['restarts']:>8}"
        )
    return "\n".join(lines)
