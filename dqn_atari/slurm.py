"""Sweeps as SLURM job arrays: render `slurm/job-array.sbatch`, submit it, report on it.

A sweep directory holds
    job.sbatch       the rendered script (what was submitted)
    tasks/<i>.yaml   the fully resolved config of array task i (its run_dir is fixed)
    sweep.json       array index -> game, seeds, overrides, run directory; the job id
    logs/            SLURM's output, one file per task
    runs/            the run directories
Every value that reaches the script is validated first (#SBATCH lines are not parsed by a
shell, so quoting cannot protect them) and shell-quoted where a shell reads it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import yaml

from dqn_atari.checkpoint import Checkpointer
from dqn_atari.config import load_config, parse_seeds, save_config
from dqn_atari.envs.games import resolve_game
from dqn_atari.metrics import read_csv

# Package data, so `submit` works from an installed wheel; slurm/job-array.sbatch in the source
# tree links to it, where cluster users look for it.
TEMPLATE = Path(__file__).resolve().parent / "data" / "job-array.sbatch"
_TIME = re.compile(r"^(\d+-\d{1,2}(:\d{2}(:\d{2})?)?|\d+(:\d{2}){0,2})$")  # sbatch's --time forms
_MEM = re.compile(r"^\d+[KMGT]?$")
_NAME = re.compile(r"^[A-Za-z0-9_.+\-]+$")
_PATH = re.compile(r"^[A-Za-z0-9_.+\-/]+$")
_DEPENDENCY = re.compile(r"^(singleton|[a-z]+(:[0-9_+]+)+)([,?](singleton|[a-z]+(:[0-9_+]+)+))*$")
# One long option, its value free of anything a #SBATCH line cannot hold.
_SBATCH_OPTION = re.compile(r"^--[a-z][a-z\-]*(=[A-Za-z0-9_.,:@%+\-/=\[\]|&]+)?$")


# Options the job script or a named option already sets: an --sbatch line setting one would take
# it over silently (sbatch reads the last). Each -> what to use instead.
MANAGED_SBATCH_OPTIONS = {
    "--array": "--games and --seeds (and --max-parallel)",
    "--time": "--time",
    "--cpus-per-task": "--cpus",
    "--mem": "--mem",
    "--output": "nothing: logs go to the sweep's logs/",
    "--error": "nothing: logs go to the sweep's logs/",
    "--open-mode": "nothing: the script appends to its log",
    "--requeue": "nothing: the script asks for requeue",
    "--no-requeue": "nothing: requeue is how a time limit resumes",
    "--signal": "--signal-seconds",
    "--job-name": "--job-name",
    "--partition": "--partition",
    "--account": "--account",
    "--qos": "--qos",
    "--dependency": "--dependency",
}


# GPU options of sbatch: given by --gpus, or as one of these in --sbatch, never both.
GPU_SBATCH_OPTIONS = ("--gres", "--gpus", "--gpus-per-task", "--gpus-per-node", "--gpus-per-socket")
# `--gpus` as SLURM writes a GPU request: a count, or TYPE:count (e.g. a100:2).
_GPUS = re.compile(r"^(?:([A-Za-z0-9_.\-]+):)?(\d+)$")
# The longest --time SLURM keeps as a limit: larger values wrap round or read as UNLIMITED.
LONGEST_TIME_SECONDS = 365 * 86400

# sbatch's input environment variables for what the job script sets itself: sbatch lets them beat
# the script's #SBATCH lines, so a leftover SBATCH_TIMELIMIT or SBATCH_NO_REQUEUE in a user's shell
# would change every task. `submit` calls sbatch without them (and says which it left out). Options
# the script leaves unset (partition, account, qos, GPUs) keep the site's variables.
SCRIPT_SBATCH_VARIABLES = (
    "SBATCH_ARRAY_INX",
    "SBATCH_TIMELIMIT",
    "SBATCH_CPUS_PER_TASK",
    "SBATCH_MEM_PER_NODE",
    "SBATCH_MEM_PER_CPU",
    "SBATCH_MEM_PER_GPU",
    "SBATCH_OUTPUT",
    "SBATCH_ERROR",
    "SBATCH_OPEN_MODE",
    "SBATCH_REQUEUE",
    "SBATCH_NO_REQUEUE",
    "SBATCH_SIGNAL",
    "SBATCH_JOB_NAME",
    "SBATCH_DEPENDENCY",
)
# ...and those that beat a setting only where the script makes it.
OPTIONAL_SBATCH_VARIABLES = {
    "partition": ("SBATCH_PARTITION",),
    "account": ("SBATCH_ACCOUNT",),
    "qos": ("SBATCH_QOS",),
    "gpus": ("SBATCH_GRES", "SBATCH_GPUS", "SBATCH_GPUS_PER_TASK", "SBATCH_GPUS_PER_NODE"),
}


def managed_option(option: str) -> str | None:
    """The script-managed sbatch option that `option` names, abbreviations included (sbatch takes
    any unambiguous prefix of a long option, so --arr is --array)."""
    if option in MANAGED_SBATCH_OPTIONS:
        return option
    names = [name for name in MANAGED_SBATCH_OPTIONS if name.startswith(option) and len(option) > 2]
    return names[0] if names else None


def time_limit_seconds(text: str) -> int | None:
    """Seconds in a SLURM --time value (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS)."""
    days, _, clock = text.rpartition("-")
    parts = [int(x) for x in clock.split(":")]
    if days:
        hours, minutes, seconds = (parts + [0, 0])[:3]
        return int(days) * 86400 + hours * 3600 + minutes * 60 + seconds
    if len(parts) == 1:
        return parts[0] * 60
    if len(parts) == 2:
        return parts[0] * 60 + parts[1]
    return parts[0] * 3600 + parts[1] * 60 + parts[2]


class SlurmError(RuntimeError):
    """A problem with a submission; the message is one line for the user."""


def _check_time_fields(text: str) -> None:
    """Minutes and seconds below 60, hours below 24 after a day count: sbatch would otherwise
    carry 99:99:99 over into days without a word."""
    days, _, clock = text.rpartition("-")
    parts = [int(x) for x in clock.split(":")]
    if days:  # D-HH, D-HH:MM, D-HH:MM:SS
        fields = list(zip(parts, [24, 60, 60], ["hours", "minutes", "seconds"], strict=False))
    elif len(parts) == 3:  # HH:MM:SS
        fields = list(zip(parts[1:], [60, 60], ["minutes", "seconds"], strict=True))
    elif len(parts) == 2:  # MM:SS
        fields = [(parts[1], 60, "seconds")]
    else:  # MM
        fields = []
    for value, limit, name in fields:
        if value >= limit:
            raise SlurmError(f"--time {text!r}: {value} {name} is out of range (below {limit}); e.g. 1-12:00:00")


@dataclass
class Resources:
    time: str = "24:00:00"
    cpus: int = 4
    mem: str = "32G"
    gpus: str | int = 0  # a count or TYPE:count, as SLURM writes them (a100:2)
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    max_parallel: int | None = None
    signal_seconds: int = 120
    job_name: str | None = None  # default: the sweep directory's name
    dependency: str | None = None  # sbatch --dependency, e.g. afterok:1234
    setup: str = ""  # shell lines run before training (module load, conda activate...)
    sbatch_extra: tuple[str, ...] = ()  # more #SBATCH options, e.g. --constraint=a100

    def validate(self) -> None:
        if not _TIME.match(self.time):
            raise SlurmError(
                f"--time {self.time!r} is not a SLURM time; use MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS"
            )
        _check_time_fields(self.time)
        limit = time_limit_seconds(self.time)
        if limit is not None and limit > LONGEST_TIME_SECONDS:
            raise SlurmError(
                f"--time {self.time!r} is longer than a year, which SLURM does not keep as a limit; "
                f"give a real limit, e.g. --time 7-00:00:00"
            )
        if not limit:
            raise SlurmError(
                f"--time {self.time!r} means no time limit, so the warning that checkpoints a task before its "
                f"limit never comes; give a limit, e.g. --time 24:00:00"
            )
        # The warning must leave the trainer time to start, finish a step and write its
        # checkpoint, and it may fire up to a minute early: at most half the limit.
        if limit and self.signal_seconds * 2 > limit:
            raise SlurmError(
                f"--signal-seconds {self.signal_seconds} is not well inside --time {self.time} ({limit} s): "
                f"give a warning of at most half the time limit, or a longer --time"
            )
        if self.job_name is not None and not _NAME.match(self.job_name):
            raise SlurmError(f"--job-name {self.job_name!r} may hold only letters, digits and _ . + -")
        if self.dependency is not None and not _DEPENDENCY.match(self.dependency):
            raise SlurmError(
                f"--dependency {self.dependency!r} is not a SLURM dependency; use e.g. afterok:1234 or "
                f"afterany:1234:1235,singleton"
            )
        for line in self.sbatch_extra:
            if not _SBATCH_OPTION.match(line):
                raise SlurmError(
                    f"--sbatch {line!r} is not one sbatch option; use e.g. --constraint=a100 or --mail-type=END"
                )
            option = line.split("=", 1)[0]
            managed = managed_option(option)
            if managed is not None:
                said = option if managed == option else f"{managed} (abbreviated {option})"
                raise SlurmError(
                    f"--sbatch {line!r} sets {said}, which the job script manages; use "
                    f"{MANAGED_SBATCH_OPTIONS[managed]} instead"
                )
            if self.gpu_count and option in GPU_SBATCH_OPTIONS:
                raise SlurmError(
                    f"--sbatch {line!r} asks for GPUs and so does --gpus {self.gpus}; give them once, either way"
                )
        if "\0" in self.setup:
            raise SlurmError("--setup holds a NUL byte")
        if self.setup.strip():
            check = subprocess.run(["bash", "-n"], input=self.setup, capture_output=True, text=True)
            # bash only warns about a here-document that never ends, and then swallows the rest
            # of the script into it: the job script's own lines after the set-up would never run.
            if check.returncode != 0 or "here-document" in check.stderr:
                said = (check.stderr.strip().splitlines() or ["a syntax error"])[-1].replace("bash: ", "")
                raise SlurmError(f"--setup is not valid bash ({said}); it would fail in every task")
        if not _MEM.match(self.mem):
            raise SlurmError(f"--mem {self.mem!r} is not a SLURM memory size; use e.g. 32G, 4000M or 16000")
        for name in ("partition", "account", "qos"):
            value = getattr(self, name)
            if value is not None and not _NAME.match(value):
                raise SlurmError(f"--{name} {value!r} may hold only letters, digits and _ . + -")
        if self.cpus < 1:
            raise SlurmError(f"--cpus must be at least 1, got {self.cpus}")
        if not _GPUS.match(str(self.gpus)):
            raise SlurmError(f"--gpus {self.gpus!r} is not a GPU request; use a count (2) or TYPE:count (a100:2)")
        if self.max_parallel is not None and self.max_parallel < 1:
            raise SlurmError(f"--max-parallel must be at least 1, got {self.max_parallel}")
        if self.signal_seconds < 1:
            raise SlurmError(f"--signal-seconds must be at least 1, got {self.signal_seconds}")

    @property
    def gpu_count(self) -> int:
        match = _GPUS.match(str(self.gpus))
        return int(match.group(2)) if match else 0

    def sbatch_environment(self, environ: dict[str, str]) -> tuple[dict[str, str], list[str]]:
        """`environ` without the SBATCH_* variables that would beat this script's own settings,
        and the names of those left out."""
        script_sets = {"partition": self.partition, "account": self.account, "qos": self.qos, "gpus": self.gpu_count}
        names = list(SCRIPT_SBATCH_VARIABLES)
        for setting, variables in OPTIONAL_SBATCH_VARIABLES.items():
            if script_sets[setting]:
                names += variables
        left_out = [name for name in names if name in environ]
        return {k: v for k, v in environ.items() if k not in left_out}, left_out


class _ProfileLoader(yaml.SafeLoader):
    """YAML as SafeLoader reads it, but `time: 2:00:00` stays the string it means: YAML 1.1
    reads unquoted colons as a base-60 number (7200), which SLURM would take as minutes."""


_ProfileLoader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp) for tag, regexp in resolvers if tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _tag, _pattern in (
    ("tag:yaml.org,2002:int", r"^[-+]?(?:0|[1-9][0-9_]*)$"),
    ("tag:yaml.org,2002:float", r"^[-+]?(?:[0-9][0-9_]*)?\.[0-9_]*(?:[eE][-+]?[0-9]+)?$"),
):
    _ProfileLoader.add_implicit_resolver(_tag, re.compile(_pattern), list("-+0123456789."))


PROFILE_KEYS: dict[str, type | tuple[type, ...]] = {
    "time": str,
    "cpus": int,
    "mem": str,
    "gpus": (int, str),
    "partition": str,
    "account": str,
    "qos": str,
    "max_parallel": int,
    "signal_seconds": int,
    "job_name": str,
    "dependency": str,
    "setup": str,
    "sbatch": list,
}


def load_profile(name_or_path: str) -> dict:
    """A cluster profile: a YAML mapping of submit options (see PROFILE_KEYS), from a file or
    slurm/profiles/<name>.yaml. `sbatch` is a list of extra options; `setup` shell lines."""
    path = Path(name_or_path)
    if not path.is_file():
        if "/" in name_or_path or name_or_path.endswith((".yaml", ".yml")):
            raise SlurmError(f"--profile {name_or_path}: no such file")
        path = Path("slurm") / "profiles" / f"{name_or_path}.yaml"
    if not path.is_file():
        raise SlurmError(f"--profile {name_or_path}: no such file, and no slurm/profiles/{name_or_path}.yaml here")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_ProfileLoader) or {}
    except (yaml.YAMLError, UnicodeDecodeError):
        raise SlurmError(f"profile {path} is not valid UTF-8 YAML") from None
    if not isinstance(data, dict):
        raise SlurmError(f"profile {path} must be a mapping of submit options")
    out: dict = {}
    for key, value in data.items():
        kind = PROFILE_KEYS.get(key)
        if kind is None:
            raise SlurmError(f"profile {path}: unknown key {key!r}; known: {', '.join(PROFILE_KEYS)}")
        if kind is str and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # `mem: 4000` or `time: 60` mean what they say as text
        if isinstance(value, bool) or not isinstance(value, kind):
            wanted = " or ".join(k.__name__ for k in kind) if isinstance(kind, tuple) else kind.__name__
            raise SlurmError(f"profile {path}: {key} must be {wanted}, got {value!r}")
        if key == "sbatch":
            options = cast(list, value)
            if not all(isinstance(v, str) for v in options):
                raise SlurmError(f"profile {path}: sbatch must be a list of options such as --constraint=a100")
            out["sbatch_extra"] = tuple(options)
        else:
            out[key] = value
    return out


def render_script(sweep_dir: Path, job_name: str, num_tasks: int, res: Resources, python: str = sys.executable) -> str:
    array = f"0-{num_tasks - 1}" + (f"%{res.max_parallel}" if res.max_parallel else "")
    optional = {
        "GPUS_LINE": ("--gres=gpu:{}", res.gpus if res.gpu_count else None),
        "PARTITION_LINE": ("--partition={}", res.partition),
        "ACCOUNT_LINE": ("--account={}", res.account),
        "QOS_LINE": ("--qos={}", res.qos),
        "DEPENDENCY_LINE": ("--dependency={}", res.dependency),
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
        "EXTRA_SBATCH_LINES": "\n".join(f"#SBATCH {line}" for line in res.sbatch_extra) or "# (no extra #SBATCH lines)",
        "SETUP": res.setup.strip() or "# (none)",
    }
    for key, (form, value) in optional.items():
        values[key] = f"#SBATCH {form.format(value)}" if value is not None else f"##SBATCH {form.format('')} (not set)"
    script = TEMPLATE.read_text()
    # The set-up goes in last: it is the user's own shell text, and may hold anything.
    for key, value in values.items():
        if key != "SETUP":
            script = script.replace(f"@@{key}@@", value)
    leftover = re.search(r"@@(?!SETUP@@)[A-Z_]+@@", script)
    if leftover:
        raise SlurmError(f"template {TEMPLATE} has an unknown placeholder {leftover.group(0)}")
    return script.replace("@@SETUP@@", values["SETUP"])


def plan_sweep(
    config: str,
    games: list[str] | None,
    seeds: list[int],
    overrides: list[str],
    sweep_dir: Path,
    seeds_per_task: int = 1,
):
    """One task per game and group of `seeds_per_task` seeds, each with a resolved config and
    a fixed run directory: one seed's run, or a population's directory (group.json listing
    its seeds, each seed's run directory inside it); validated."""
    base = load_config(config, overrides)
    for override in overrides:
        key = override.split("=", 1)[0].strip()
        if key in ("seed", "run_dir"):
            raise SlurmError(
                f"the override {override!r} would be lost: submit gives each task its seed and run directory; "
                f"use --seeds and --sweep-dir"
            )
    if any(o.split("=", 1)[0].strip() == "env.game" for o in overrides) and games:
        raise SlurmError("--games and an env.game= override both name the game; give one of them")
    games = [resolve_game(g) for g in (games or [base.env.game])]
    repeated = sorted({g for g in games if games.count(g) > 1})
    if repeated:
        raise SlurmError(f"--games names {', '.join(repeated)} twice: two tasks would share one run directory")
    if seeds_per_task < 1:
        raise SlurmError(f"--seeds-per-task must be at least 1, got {seeds_per_task}")
    tasks: list[dict] = []
    for game in games:
        for start in range(0, len(seeds), seeds_per_task):
            group = seeds[start : start + seeds_per_task]
            if len(group) == 1:
                run_dir = sweep_dir / "runs" / f"{game}-s{group[0]}"
                members = [{"seed": group[0], "run_dir": str(run_dir)}]
            else:
                run_dir = sweep_dir / "runs" / f"{game}-s{'+'.join(map(str, group))}"
                members = [{"seed": seed, "run_dir": str(run_dir / f"s{seed}")} for seed in group]
            cfg = load_config(config, [*overrides, f"env.game={game}", f"seed={group[0]}", f"run_dir={run_dir}"])
            cfg.config_name = base.config_name
            tasks.append(
                {
                    "index": len(tasks),
                    "game": game,
                    "seed": group[0],
                    "seeds": group,
                    "members": members,
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
    seeds_per_task: int = 1,
) -> dict:
    resources.validate()
    seeds = parse_seeds(seeds_text)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    sweep = Path(sweep_dir or f"sweeps/{Path(config).stem}-{stamp}").absolute()
    if not _PATH.match(str(sweep)):
        raise SlurmError(f"sweep directory {str(sweep)!r} may hold only letters, digits and _ . + - /")
    if sweep.exists() and not sweep.is_dir():
        raise SlurmError(f"--sweep-dir {sweep} is a file; give a new directory")
    if sweep.exists() and any(sweep.iterdir()):
        raise SlurmError(f"sweep directory {sweep} already exists and is not empty; choose another with --sweep-dir")
    if seeds_per_task < 1:
        raise SlurmError(f"--seeds-per-task must be at least 1, got {seeds_per_task}")
    # Refused before any config is resolved: a typo such as --seeds 0-100000 is minutes of work.
    count = len(games or [None]) * -(-len(seeds) // seeds_per_task)
    largest, source = max_array_size()
    if count > largest:
        raise SlurmError(
            f"the sweep has {count:,} tasks but this cluster takes job arrays of at most {largest:,} ({source}); "
            f"give fewer games or seeds, or pack seeds with --seeds-per-task"
        )
    tasks = plan_sweep(config, games, seeds, overrides, sweep, seeds_per_task)
    job_name = resources.job_name or sweep.name  # readable in squeue, one per sweep
    script = render_script(sweep, job_name, len(tasks), resources)
    check_fits_a_node(resources)
    if dry_run:
        return {"script": script, "tasks": tasks, "sweep_dir": str(sweep), "job_id": None}

    if shutil.which("sbatch") is None:
        raise SlurmError("sbatch not found: run this on a SLURM login node (or start slurm/local-cluster/up.sh)")
    created = not sweep.exists()
    try:
        (sweep / "tasks").mkdir(parents=True, exist_ok=True)
        (sweep / "logs").mkdir(exist_ok=True)
    except OSError as err:
        if created:
            shutil.rmtree(sweep, ignore_errors=True)
        raise SlurmError(f"--sweep-dir {sweep} cannot be written ({err.strerror or err}); choose another") from None
    try:
        for task in tasks:
            save_config(task["config"], sweep / "tasks" / f"{task['index']}.yaml")
            if len(task["seeds"]) > 1:  # a population: its directory lists its seeds for `train`
                group = Path(task["run_dir"])
                group.mkdir(parents=True)
                listed = [{"seed": m["seed"], "run_dir": Path(m["run_dir"]).name} for m in task["members"]]
                (group / "group.json").write_text(json.dumps({"members": listed}, indent=2) + "\n")
        (sweep / "job.sbatch").write_text(script)
        environment, left_out = resources.sbatch_environment(dict(os.environ))
        for name in left_out:
            print(f"submit: {name} from the environment left out: the job script sets it", file=sys.stderr)
        result = subprocess.run(
            ["sbatch", "--parsable", str(sweep / "job.sbatch")], capture_output=True, text=True, env=environment
        )
        if result.returncode != 0:
            message = (result.stderr or result.stdout).strip().splitlines()
            raise SlurmError(f"sbatch failed: {message[-1] if message else f'exit {result.returncode}'}")
        job_id = result.stdout.strip().split(";")[0]
    except BaseException:
        shutil.rmtree(sweep, ignore_errors=True)  # nothing half-submitted left looking like a sweep
        raise
    manifest = {
        "job_id": job_id,
        "job_name": job_name,
        "submitted": stamp,
        "config": str(Path(config).absolute()),
        "command": sys.argv,
        "resources": resources.__dict__,
        "tasks": [{k: v for k, v in t.items() if k != "config"} for t in tasks],
    }
    (sweep / "sweep.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return {"script": script, "tasks": tasks, "sweep_dir": str(sweep), "job_id": job_id}


SLURM_DEFAULT_MAX_ARRAY_SIZE = 1001


def max_array_size() -> tuple[int, str]:
    """The largest job array the cluster takes (MaxArraySize, from `scontrol show config`), and
    where that came from; SLURM's default where scontrol does not answer."""
    out = _run(["scontrol", "show", "config"], timeout=20)
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", out.stdout if out else "", re.M)
    if match:
        return int(match.group(1)), "MaxArraySize in scontrol show config"
    return SLURM_DEFAULT_MAX_ARRAY_SIZE, "SLURM's default MaxArraySize; scontrol did not answer"


def _megabytes(mem: str) -> int:
    number, unit = (mem[:-1], mem[-1]) if mem[-1] in "KMGT" else (mem, "M")
    return int(int(number) * {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024**2}[unit])


def check_fits_a_node(res: Resources) -> None:
    """Refuse a task that no node of the partition can ever run (it would pend forever with no
    word). Nothing is said when sinfo cannot tell."""
    command = ["sinfo", "-h", "-N", "-o", "%c %m %P"] + (["-p", res.partition] if res.partition else [])
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return
    nodes = []
    for line in out.stdout.splitlines():
        cpus, mem, _ = line.split(maxsplit=2)
        if cpus.isdigit() and mem.rstrip("+").isdigit():
            nodes.append((int(cpus), int(mem.rstrip("+"))))
    if out.returncode != 0 or not nodes:
        return
    need_mb = _megabytes(res.mem)
    if not any(cpus >= res.cpus and mem >= need_mb for cpus, mem in nodes):
        biggest_cpus, biggest_mem = max(c for c, _ in nodes), max(m for _, m in nodes)
        where = f"partition {res.partition}" if res.partition else "this cluster"
        raise SlurmError(
            f"no node of {where} can run a task with --cpus {res.cpus} --mem {res.mem}: the largest have "
            f"{biggest_cpus} CPUs and {biggest_mem:,} MB (sinfo); ask for less"
        )


# ---------------------------------------------------------------------------- status
class ControllerUnreachable(SlurmError):
    """scontrol cannot reach slurmctld: no task state can be known."""


def _run(command: list[str], timeout: float = 30) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None


def check_controller() -> None:
    """One quick question to slurmctld before the others, each of which would wait about a
    minute for a controller that is down."""
    out = _run(["scontrol", "ping"], timeout=20)
    if out is None:
        raise ControllerUnreachable(
            "the SLURM controller did not answer `scontrol ping` within 20 s; task states unknown"
        )
    if " is UP" not in out.stdout:
        said = (out.stdout or out.stderr).strip().splitlines()
        raise ControllerUnreachable(
            f"the SLURM controller cannot be reached ({said[0] if said else 'scontrol ping failed'}); "
            f"task states unknown"
        )


def _task_indices(text: str) -> list[int]:
    """Array task ids as SLURM writes them: '3', '0-2', '[0-2%1]', '1,4-5'."""
    out: list[int] = []
    for part in text.strip("[]").split("%")[0].split(","):
        low, _, high = part.partition("-")
        if low.isdigit() and (not high or high.isdigit()):
            out.extend(range(int(low), int(high or low) + 1))
    return out


def _live_states(job_id: str, job_name: str | None = None, script: str | None = None) -> dict[int, dict]:
    """Array index -> {'state', 'reason', 'restarts'} of tasks the controller still holds:
    squeue (pending and running, with the pending reason) and `scontrol show job` (also tasks
    ended within the last few minutes, and restart counts). Jobs of another name, or another
    job script than this sweep's `script`, are another array that got this id (a controller
    restarted with a fresh state numbers jobs from 1 again; two sweeps may share a job name):
    nothing of them is taken."""
    states: dict[int, dict] = {}
    shown = _run(["scontrol", "show", "job", "-o", job_id])
    for line in shown.stdout.splitlines() if shown else []:
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if job_name is not None and fields.get("JobName", job_name) != job_name:
            return {}
        if script is not None and fields.get("Command", script) != script:
            return {}
        for index in _task_indices(fields.get("ArrayTaskId", "")):
            states[index] = {
                "state": fields.get("JobState", "?"),
                "reason": fields.get("Reason", "None"),
                "restarts": int(fields.get("Restarts", 0)),
            }
    queued = _run(["squeue", "-h", "-r", "-j", job_id, "-o", "%K|%T|%r|%j|%o"])
    for line in queued.stdout.splitlines() if queued else []:
        index, state, reason, name, command = (line.split("|") + ["", "", "", ""])[:5]
        if job_name is not None and name and name != job_name:
            continue
        if script is not None and command and command != script:
            continue
        for i in _task_indices(index):
            states.setdefault(i, {"restarts": 0}).update(state=state, reason=reason)
    return states


def _accounting_states(job_id: str) -> tuple[dict[int, str], str] | None:
    """Array index -> final state from sacct, where the cluster keeps accounting; None where it
    does not (no slurmdbd: sacct says accounting storage is disabled)."""
    out = _run(["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "JobID,State"])
    if out is None or out.returncode != 0 or "disabled" in (out.stderr + out.stdout):
        return None
    states = {}
    for line in out.stdout.splitlines():
        job, _, state = line.partition("|")
        if "_" in job:
            for i in _task_indices(job.split("_", 1)[1]):
                states[i] = state.split()[0] if state else "?"  # "CANCELLED by 0" -> CANCELLED
    return states, "sacct"


WHOLE_ARRAY = -1  # key of a state recorded for every task of an array at once


def _completion_records(job_id: str, job_name: str | None = None) -> tuple[dict[int, str], str] | None:
    """Array index -> final state from the job completion file (jobcomp/filetxt); None where the
    cluster keeps no such file. Records of another job name are another array's."""
    config = _run(["scontrol", "show", "config"])
    match = re.search(r"^JobCompLoc\s*=\s*(\S+)", config.stdout if config else "", re.M)
    if not match or not Path(match.group(1)).is_file():
        return None
    out = {}
    for line in Path(match.group(1)).read_text(errors="replace").splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if job_name is not None and fields.get("Name", job_name) != job_name:
            continue
        if fields.get("ArrayJobId") == job_id:
            for i in _task_indices(fields.get("ArrayTaskId", "")):
                out[i] = fields.get("JobState", "?")
        elif fields.get("JobId") == job_id and "ArrayTaskId" not in fields:
            # an array that ended before any task started (e.g. cancelled while pending) leaves
            # one record for all its tasks
            out[WHOLE_ARRAY] = fields.get("JobState", "?")
    return out, f"job completion file {match.group(1)}"


def run_progress(run_dir: Path) -> dict:
    """Frames done, the mean raw score of the last 10 games, and restarts, from a run's files."""
    out: dict[str, Any] = {"frames": 0, "return10": None, "restarts": 0}
    csv_path = run_dir / "metrics.csv"
    if csv_path.is_file():
        try:
            metrics = read_csv(csv_path)
        except ValueError:  # damaged; the trainer repairs it on its next start
            metrics = {}
        frames = [f for points in metrics.values() for f, _ in points]
        out["frames"] = max(frames) if frames else 0
        scores = [v for _, v in metrics.get("train/episode_return", [])][-10:]
        out["return10"] = sum(scores) / len(scores) if scores else None
        restarts = metrics.get("slurm/restart_count", [])
        out["restarts"] = int(restarts[-1][1]) if restarts else 0
    checkpoints = Checkpointer(run_dir).list()
    if checkpoints:
        out["frames"] = max(out["frames"], int(checkpoints[0].name.split("-")[1]))
    return out


def status(sweep_dir: str | Path) -> tuple[list[dict], list[str]]:
    """One row per task, and the sources its states came from. A task that has left the
    controller (squeue forgets an ended task within minutes) is looked up in accounting (sacct)
    where the cluster keeps it, else in the job completion file."""
    sweep = Path(sweep_dir)
    try:
        manifest = json.loads((sweep / "sweep.json").read_text())
        job_id, tasks = manifest["job_id"], manifest["tasks"]
    except (OSError, ValueError, KeyError, TypeError):
        raise SlurmError(f"{sweep} is not a sweep directory (no readable sweep.json)") from None
    live: dict[int, dict] = {}
    ended: dict[int, str] = {}
    sources = []
    if shutil.which("scontrol"):
        check_controller()
        job_name = manifest.get("job_name")  # sweeps written before it was recorded: no check
        live = _live_states(job_id, job_name, str(sweep.absolute() / "job.sbatch"))
        sources.append("squeue and scontrol (tasks queued, running or ended minutes ago)")
        found = _accounting_states(job_id) or _completion_records(job_id, job_name)
        if found is not None:
            ended, source = found
            sources.append(f"{source} (ended tasks)")
        else:
            sources.append("no accounting and no job completion file: ended tasks read UNKNOWN")
    else:
        sources.append("no SLURM commands here: states unknown, progress from the run directories")
    rows = []
    for task in tasks:
        i = task["index"]
        cfg = load_config(sweep / "tasks" / f"{i}.yaml")
        slurm = live.get(i, {})
        state = slurm.get("state") or ended.get(i) or ended.get(WHOLE_ARRAY) or "UNKNOWN"
        reason = slurm.get("reason", "") if state == "PENDING" else ""
        # A task holding a population: one row per seed, each from its own run directory.
        members = task.get("members") or [{"seed": task["seed"], "run_dir": task["run_dir"]}]
        for member in members:
            progress = run_progress(Path(member["run_dir"]))
            rows.append(
                {
                    "index": i,
                    "job": f"{job_id}_{i}",
                    "game": task["game"],
                    "seed": member["seed"],
                    "state": state,
                    "reason": "" if reason in ("None", "(null)") else reason,
                    "frames": progress["frames"],
                    "budget": cfg.train.total_frames,
                    "return10": progress["return10"],
                    "restarts": max(slurm.get("restarts", 0), progress["restarts"]),
                }
            )
    return rows, sources


def format_status(rows: list[dict], sources: list[str] | None = None) -> str:
    lines = [
        f"{'task':<12} {'game':<14} {'seed':>4} {'state':<11} {'frames':>23} {'return10':>9} {'restarts':>8}  reason"
    ]
    for r in rows:
        ret = f"{r['return10']:.1f}" if r["return10"] is not None else "-"
        lines.append(
            f"{r['job']:<12} {r['game']:<14} {r['seed']:>4} {r['state']:<11} "
            f"{r['frames']:>11,}/{r['budget']:<11,} {ret:>9} {r['restarts']:>8}  {r.get('reason', '')}".rstrip()
        )
    if sources:
        lines.append("states from: " + "; ".join(sources))
    return "\n".join(lines)
