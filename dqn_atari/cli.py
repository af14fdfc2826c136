"""`dqn-atari`: the command line. User mistakes print one line and exit non-zero, no traceback.

Exit status: 0 done; 2 bad input (config key, value, game, path, checkpoint); 3 training
diverged (non-finite loss or Q-value); 75 stopped by a signal (TERM, INT, USR1, HUP) after
writing a checkpoint: resume me; 1 any other failure.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: "try again", the checkpoint is written
STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGUSR1", "SIGHUP")  # clusters differ in which they send


class UserError(Exception):
    """A mistake the user can fix; printed as one line."""


def _version() -> str:
    """The package's version and, in a git checkout, the commit (with `+changes` when the tree
    differs from it): what a result needs to name the code that made it."""
    import subprocess
    from importlib.metadata import PackageNotFoundError, version

    try:
        number = version("dqn_atari")
    except PackageNotFoundError:
        number = "unknown"
    root = Path(__file__).resolve().parent.parent
    commit = "not a git checkout"
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True
        )
        if head.returncode == 0:
            dirty = subprocess.run(
                ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
            )
            commit = "commit " + head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")
    except OSError:
        pass
    return f"dqn-atari {number} ({commit})"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dqn-atari",
        allow_abbrev=False,
        description="Nature DQN from Atari pixels: train, evaluate and film agents, run sweeps on SLURM, "
        "plot and summarise results.",
        epilog="Config overrides are dotted key=value pairs, e.g. replay.capacity=100000 env.game=Breakout.",
    )
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, **kwargs) -> argparse.ArgumentParser:
        # No abbreviated options: `--seed 3` must not be read as `--seeds 3`.
        return sub.add_parser(name, allow_abbrev=False, **kwargs)

    t = command(
        "train",
        help="train an agent from a YAML config",
        description="Train DQN. Writes runs/<game>-<config>-s<seed>-<time>/ (or run_dir=...) with the "
        "resolved config.yaml, metrics.csv, TensorBoard events under tb/ and checkpoints/. A run_dir "
        "that already holds a checkpoint is resumed. SIGTERM/SIGINT/SIGUSR1/SIGHUP: checkpoint, "
        "then exit 75.",
    )
    t.add_argument("config", nargs="?", help="YAML config, e.g. configs/pong.yaml")
    t.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
    t.add_argument(
        "--resume", metavar="RUN_DIR", help="continue the run (or population) in RUN_DIR from its last checkpoint"
    )
    t.add_argument(
        "--seeds",
        metavar="SEEDS",
        help="train these seeds of the config in one process, in lockstep (e.g. 0-2 or 0,3,7): one run directory "
        "per seed inside one group directory",
    )
    t.add_argument(
        "--help-config",
        action="store_true",
        help="list every config key with its default, allowed values and meaning, then exit",
    )
    t.add_argument(
        "--print-config",
        action="store_true",
        help="print the config CONFIG and the overrides resolve to (every key), then exit",
    )

    command("games", help="list the Atari games available (ROMs ship inside ale-py)")

    def evaluation_options(parser, episodes: int, video_default: bool):
        parser.add_argument(
            "target",
            metavar="RUN_DIR|CHECKPOINT",
            help="a run directory (its newest checkpoint) or a checkpoint directory",
        )
        parser.add_argument("--episodes", type=int, default=episodes, help=f"full games to play (default {episodes})")
        if video_default:
            parser.add_argument("--epsilon", type=float, default=0.05, help="exploration while playing (Nature: 0.05)")
        else:
            parser.add_argument(
                "--epsilon",
                type=float,
                nargs="+",
                default=[0.05],
                help="exploration during evaluation (Nature: 0.05); several values evaluate each in turn, "
                "e.g. --epsilon 0.05 0.01 0.001",
            )
        parser.add_argument(
            "--protocol",
            choices=["nature", "machado"],
            default="nature",
            help="nature: 30 no-ops max, 18,000-frame cap; machado: sticky actions 0.25, 108,000-frame cap",
        )
        parser.add_argument("--max-episode-frames", type=int, default=None, help="override the protocol's frame cap")
        parser.add_argument("--game", default=None, help="play another game than the run's (same action count)")
        parser.add_argument("--seed", type=int, default=0, help="game i is seeded with seed + i")
        parser.add_argument(
            "--out",
            default=None,
            help="output directory (default: RUN_DIR/eval-<frames>-<protocol>-eps<epsilon>/, "
            "or RUN_DIR/record-<frames>/; "
            "with several epsilons, OUT/eps<epsilon>/)",
        )
        if not video_default:
            parser.add_argument("--video", action="store_true", help="record MP4s (by default the best and worst game)")
        parser.add_argument(
            "--keep", choices=["best-worst", "all"], default="best-worst", help="which games' videos to keep"
        )
        parser.add_argument(
            "--scale", type=int, default=3, help="integer upscale of the 160x210 screen (nearest-neighbour)"
        )
        parser.add_argument(
            "--panel", action="store_true", help="add a side panel: the 84x84 stack and Q-values per action"
        )
        parser.add_argument(
            "--gif-seconds", type=float, default=0.0, help="also write a GIF of the best game's first seconds"
        )
        parser.add_argument("--device", default="cpu", help="cpu or cuda")
        parser.add_argument(
            "--games-at-once",
            type=int,
            default=None,
            help="games played side by side, one forward pass per step for all (default: every game)",
        )
        parser.add_argument(
            "--processes",
            type=int,
            default=None,
            help="worker processes stepping the emulators (default: 1 on 2 cores or fewer, else one per core "
            "but one, at most one per game)",
        )
        parser.add_argument(
            "--noise",
            choices=["off", "per_step", "frozen"],
            default=None,
            help="a noisy network's noise: off (mean weights), per_step (fresh at every step) or frozen "
            "(the run's acting noise); default: the run's eval.noise",
        )

    e = command(
        "evaluate",
        help="score a checkpoint under a published protocol (and record videos)",
        description="Play full games (all lives) under the Nature or Machado protocol and write report.json: "
        "per-game raw scores, lengths and caps, mean/median/std/min/max, a 95% bootstrap interval of the "
        "mean and the human-normalised score.",
    )
    evaluation_options(e, episodes=30, video_default=False)
    r = command("record", help="a video of one game of a checkpoint (shorthand for evaluate --episodes 1 --video)")
    evaluation_options(r, episodes=1, video_default=True)

    sm = command(
        "submit",
        help="send a sweep (games x seeds) to SLURM as one job array",
        description="Render slurm/job-array.sbatch for every (game, seed), write a sweep directory (script, one "
        "resolved config per task, sweep.json mapping array index -> game, seed, run directory) and submit it "
        "with sbatch. Tasks train in fixed run directories, so requeued tasks resume by themselves.",
    )
    sm.add_argument("config", help="YAML config, e.g. configs/pong.yaml")
    sm.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides for every task")
    sm.add_argument("--games", nargs="+", help="games to run (default: the config's)")
    sm.add_argument("--seeds", default="0", help="seeds: 0-4, 0,2,7 or 3 (default 0)")
    sm.add_argument(
        "--seeds-per-task",
        type=int,
        default=1,
        help="seeds trained together in one task (one process, one GPU), in lockstep (default 1)",
    )
    sm.add_argument(
        "--profile",
        metavar="NAME|FILE",
        help="a cluster profile: a YAML file of any of the options below (time, cpus, mem, gpus, partition, "
        "account, qos, max_parallel, signal_seconds, job_name, dependency, setup, sbatch), or NAME for "
        "slurm/profiles/NAME.yaml; options given on the command line win",
    )
    sm.add_argument("--time", default=None, help="time limit per task: HH:MM:SS, D-HH:MM:SS, MM ... (default 24:00:00)")
    sm.add_argument("--cpus", type=int, default=None, help="CPUs per task (default 4)")
    sm.add_argument("--mem", default=None, help="memory per task, e.g. 32G (default 32G)")
    sm.add_argument(
        "--gpus", default=None, help="GPUs per task: a count, or TYPE:count as SLURM writes it (a100:2) (default 0)"
    )
    sm.add_argument("--partition", help="SLURM partition")
    sm.add_argument("--account", help="SLURM account")
    sm.add_argument("--qos", help="SLURM quality of service")
    sm.add_argument("--max-parallel", type=int, help="at most this many tasks at once")
    sm.add_argument(
        "--signal-seconds",
        type=int,
        default=None,
        help="warn (USR1) this long before the time limit, to checkpoint and requeue (default 120)",
    )
    sm.add_argument("--job-name", help="the job's name in squeue (default: the sweep directory's name)")
    sm.add_argument("--dependency", help="start after other jobs, as sbatch --dependency (e.g. afterok:1234)")
    sm.add_argument(
        "--setup",
        help="shell lines run in each task before training, e.g. 'module load cuda/12.4; source ~/venv/bin/activate'",
    )
    sm.add_argument(
        "--sbatch",
        action="append",
        default=None,
        metavar="OPTION",
        help="one more #SBATCH option, e.g. --sbatch=--constraint=a100 (repeatable)",
    )
    sm.add_argument("--sweep-dir", help="where to write the sweep (default sweeps/<config>-<time>/)")
    sm.add_argument("--dry-run", action="store_true", help="print the script and tasks; write and submit nothing")

    ex = command(
        "export",
        help="a model-only copy of a checkpoint, small enough to commit (float16 weights); evaluate and record read it",
        description="Copy a checkpoint's or snapshot's online network (and a noisy network's acting noise) to "
        "OUT_DIR with a state.json naming its source: no replay, no optimiser. The weights are stored in "
        "float16 (the network still computes in float32), half the size of a snapshot. OUT_DIR is written "
        "whole or not at all, and only an earlier export is ever replaced.",
    )
    ex.add_argument(
        "target",
        metavar="RUN_DIR|CHECKPOINT",
        help="a run directory (its newest checkpoint), a checkpoint or a snapshot",
    )
    ex.add_argument("out", metavar="OUT_DIR", help="where the model goes, e.g. results/pong/model")
    ex.add_argument("--float32", action="store_true", help="keep the weights in float32 (twice the size)")

    st = command("status", help="one line per task of a sweep: SLURM state, frames, last returns, restarts")
    st.add_argument("sweep_dir", metavar="SWEEP_DIR")

    pl = command(
        "plot",
        help="learning curves per game: mean over seeds with a 95%% bootstrap band",
        description="Learning curves from runs' metrics.csv, one panel per game; runs of another game or "
        "other settings are drawn as separate groups, never averaged together.",
    )
    pl.add_argument("paths", nargs="+", metavar="RUN_DIR|SWEEP_DIR")
    pl.add_argument("--out", default="curves.png", help="figure file (default curves.png)")
    pl.add_argument("--metric", choices=["eval", "train"], default="eval", help="evaluation scores or training games")
    pl.add_argument("--x", choices=["frames", "hours"], default="frames", help="x axis (default: emulator frames)")
    pl.add_argument(
        "--reference",
        action="append",
        choices=["dopamine-dqn", "dopamine-dqn-adam-mse", "dopamine-rainbow", "cleanrl-dqn"],
        default=[],
        help="overlay a published learning curve (training return): Dopamine's baselines data (sticky actions) "
        "or CleanRL's dqn_atari.py (its figure's mean line); repeatable",
    )

    su = command(
        "summarize",
        help="final scores per game (mean and 95%% CI over seeds), human-normalised; median and IQM across games",
    )
    su.add_argument("paths", nargs="+", metavar="RUN_DIR|SWEEP_DIR")
    su.add_argument(
        "--out",
        default=None,
        help="also write OUT.md (the table and every number's source), OUT.csv (one row per game and "
        "config) and OUT.json (everything, per seed)",
    )

    b = command(
        "benchmark",
        help="measure speed and memory; prints a table and writes JSON",
        description="Benchmarks: env (pixel pipeline), replay (memory and sampling, frames in host memory and on "
        "the device), learner (update time vs plain PyTorch; fp32, channels-last and bf16; the machine's "
        "matrix-product rate; Rainbow, "
        "QR-DQN and IQN beside DQN), denormal (a learning step with Adam's moments partly denormal, IEEE "
        "arithmetic vs denormals flushed to zero), update_gpu (the update's device profile, eager vs CUDA graph; on a "
        "CPU only its eager and acting times), loop (training loop vs learner bound), loop_grid (the "
        "loop at 1, 4 and 8 envs, both env backends, and on a GPU with frames in host memory, on the "
        "GPU, and with the CUDA graph), population (K = 1, 2, 3, 4, 8 seeds in one process vs the same seeds "
        "one after another), evaluate (30 games one at a time vs side by side), checkpoint (full vs incremental "
        "write of a 1M replay), video (evaluation with vs "
        "without recording).",
    )
    b.add_argument(
        "which",
        choices=[
            "env",
            "replay",
            "learner",
            "denormal",
            "update_gpu",
            "loop",
            "loop_grid",
            "population",
            "evaluate",
            "video",
            "checkpoint",
            "all",
        ],
    )
    b.add_argument("--json", metavar="PATH", help="write the figures to this JSON file")
    b.add_argument("--seconds", type=float, default=None, help="time budget per measurement")
    b.add_argument(
        "--replay-capacity", type=int, default=1_000_000, help="capacity for the replay and checkpoint benchmarks"
    )
    return p


class _ClosableStream:
    """stdout or stderr that survives its reader: once the pipe is gone (`| head`, a pager
    quit, a `tee` that died) writes are dropped instead of raising, so training goes on and
    checkpoints; a path holding bytes that are not UTF-8 prints escaped instead of raising."""

    def __init__(self, stream):
        self.stream, self.closed_by_reader = stream, False

    def write(self, text: str) -> int:
        if not self.closed_by_reader:
            try:
                self.stream.write(
                    text.encode(self.stream.encoding or "utf-8", "backslashreplace").decode(
                        self.stream.encoding or "utf-8", "replace"
                    )
                )
            except (BrokenPipeError, ValueError, OSError):
                self._reader_gone()
        return len(text)

    def flush(self) -> None:
        if not self.closed_by_reader:
            try:
                self.stream.flush()
            except (BrokenPipeError, ValueError, OSError):
                self._reader_gone()

    def _reader_gone(self) -> None:
        self.closed_by_reader = True
        # Python flushes the real stream once more at exit: point it at nothing.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), self.stream.fileno())

    def __getattr__(self, name):  # isatty, fileno, encoding... of the real stream
        return getattr(self.stream, name)


def main(argv: list[str] | None = None) -> int:
    # Training records stop signals from its first line of Python on: one that arrives while the
    # parser, the config or the replay load is still recorded, and ends in a checkpoint.
    words = sys.argv[1:] if argv is None else argv
    stops = _StopSignals() if words[:1] == ["train"] else None
    if not isinstance(sys.stdout, _ClosableStream):
        sys.stdout, sys.stderr = _ClosableStream(sys.stdout), _ClosableStream(sys.stderr)
    parser = _parser()
    # key=value overrides may come after options too (argparse alone stops at the first option).
    args, extra = parser.parse_known_args(argv)
    stray = [e for e in extra if e.startswith("-") or "=" not in e or not hasattr(args, "overrides")]
    if stray:
        hint = _as_override(stray)
        if hint:
            print(
                f"dqn-atari: error: unrecognized option {stray[0]}; config values are key=value: {hint}",
                file=sys.stderr,
            )
            return EXIT_BAD_INPUT
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = list(args.overrides) + extra
    args.stops = stops
    from dqn_atari.config import ConfigError
    from dqn_atari.replay import ReplayError

    try:
        return _COMMANDS[args.command](args)
    except (ConfigError, ReplayError, UserError) as err:
        print(f"dqn-atari: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("dqn-atari: interrupted", file=sys.stderr)
        return 130


def _as_override(stray: list[str]) -> str | None:
    """`--seed 3` or `--replay.capacity=1000`: a config key written as an option; the override
    it means (`seed=3`), or None."""
    from dqn_atari.config import CLEANRL_NAMES, all_keys

    if not stray[0].startswith("--"):
        return None
    name, _, value = stray[0][2:].partition("=")
    cleanrl = CLEANRL_NAMES.get(name.replace("-", "_"))
    if cleanrl is not None:  # --env-id, --total-timesteps: CleanRL's options
        return f"{cleanrl} ({stray[0]} is CleanRL's option)"
    keys = all_keys()
    key = name if name in keys else next((k for k in keys if k.rsplit(".", 1)[-1] == name.replace("-", "_")), None)
    if key is None:
        return None
    if not value and len(stray) > 1 and not stray[1].startswith("-"):
        value = stray[1]
    return f"{key}={value or '...'}"


def _cmd_games(args) -> int:
    from dqn_atari.envs import available_games

    for name in available_games():
        print(name)
    return 0


def _cmd_train(args) -> int:
    stops = args.stops or _StopSignals()  # recorded from main's first line (or from here)
    from dqn_atari.config import Config, all_keys, get, key_choices, key_descriptions, load_config, save_config

    if args.help_config:
        # With a config file: what it (and any overrides) resolves to; without: the defaults.
        shown = load_config(args.config, args.overrides) if args.config else Config()
        descriptions = key_descriptions()
        print(f"# values of {args.config}" if args.config else "# default values (give a config to see its values)")
        for key in all_keys():
            print(f"{key} = {get(shown, key)!r}  ({key_choices(key)})")
            print(f"    {descriptions.get(key) or '-'}")
        return 0
    configs, run_dirs, group_dir = _training_plan(args)
    cfg = configs[0]
    if args.print_config:
        import yaml

        from dqn_atari.config import to_dict

        for c in configs:
            print(yaml.safe_dump(to_dict(c), sort_keys=False), end="---\n" if len(configs) > 1 else "")
        return 0
    from dqn_atari.checkpoint import CheckpointError, CheckpointWriteError
    from dqn_atari.run_lock import RunLock, RunLocked
    from dqn_atari.trainer import Preempted, Trainer, TrainingDiverged, check_memory, resolve_device

    resolve_device(cfg.train.device)  # refuse an absent GPU before creating anything
    check_memory(configs)
    _warn_if_replay_dwarfs_run(cfg)
    for run_dir in run_dirs:
        _make_writable_dir(run_dir, "run_dir")
    warn = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    locks: list = []
    try:
        for run_dir in run_dirs:
            lock = RunLock(run_dir, warn=warn)
            try:
                lock.acquire()
            except RunLocked as err:
                raise UserError(str(err)) from None
            locks.append(lock)
        if group_dir is not None:
            _write_group(group_dir, configs, run_dirs)
            members = ", ".join(f"seed {c.seed}: {d}" for c, d in zip(configs, run_dirs, strict=True))
            print(f"run directory: {group_dir} ({members})", flush=True)
        else:
            print(f"run directory: {run_dirs[0]}", flush=True)
        trainer = Trainer(configs, run_dirs)
        stops.forward_to(trainer)
        import torch

        print(f"device {trainer.device}, torch threads {torch.get_num_threads()}", flush=True)
        try:
            try:
                resumed = trainer.resume()
            except CheckpointError as err:
                raise UserError(str(err)) from None
            if resumed:
                for path in resumed:
                    seed = next(s for s in trainer.seeds if path.parent.parent == s.run_dir)
                    print(f"{seed.label}resumed from {path} at frame {seed.frames:,}", flush=True)
            elif args.resume:
                raise UserError(f"--resume {args.resume}: no checkpoint there to resume from")
            else:
                for aside in trainer.set_aside_logs_without_checkpoint():
                    print(
                        f"dqn-atari: warning: {aside.parent} has logs but no checkpoint: starting from frame 0, "
                        f"the earlier logs moved to {aside}",
                        file=sys.stderr,
                        flush=True,
                    )
            for seed in trainer.seeds:  # only once the checkpoint has accepted the config
                save_config(seed.cfg, seed.run_dir / "config.yaml")
            trainer.train()
        except TrainingDiverged as err:
            print(f"dqn-atari: error: {err}", file=sys.stderr)
            return EXIT_DIVERGED
        except CheckpointWriteError as err:
            print(f"dqn-atari: error: {err}", file=sys.stderr)
            return 1
        except Preempted:
            where = group_dir or run_dirs[0]
            print(
                f"stopped by signal {trainer.stop_signal} at frame {trainer.frames:,}; checkpoint written, "
                f"resume with: dqn-atari train --resume {where}",
                flush=True,
            )
            return EXIT_PREEMPTED
        finally:
            stops.ignore_from_now()
            trainer.close()
    finally:
        for lock in locks:
            lock.release()
    for seed in trainer.seeds:
        print(
            f"{seed.label}done: {seed.frames:,} frames, {trainer.agent.updates:,} updates, {seed.games} games",
            flush=True,
        )
    return 0


GROUP_FILE = "group.json"  # in a population's directory: its seeds and their run directories


def _training_plan(args):
    """(configs, run directories, group directory or None) of what `train` was asked to do: one
    run, or several seeds of one config in one process (--seeds, or a directory holding a
    group.json). Every mistake is refused here, before anything is written."""
    from dqn_atari.config import load_config, parse_seeds

    seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    if seeds is not None:
        for override in ([args.config] if args.resume and args.config else []) + args.overrides:
            key = override.split("=", 1)[0].strip()
            if key == "seed":
                raise UserError(f"--seeds and the override {override!r} both give seeds; give them with --seeds only")
    if args.resume:
        where = Path(args.resume)
        overrides = ([args.config] if args.config else []) + args.overrides  # all are key=value here
        if (where / GROUP_FILE).is_file():
            members = _read_group(where, seeds)
            configs = []
            for seed, run_dir in members:
                if not (run_dir / "config.yaml").is_file():
                    raise UserError(f"--resume {where}: seed {seed}'s run directory {run_dir} has no config.yaml")
                configs.append(load_config(run_dir / "config.yaml", overrides + [f"run_dir={run_dir}"]))
            return configs, [d for _, d in members], where
        if seeds:
            raise UserError(f"--resume {where} with --seeds: {where} holds one run, not a population")
        if not (where / "config.yaml").is_file():
            from dqn_atari.errors import closest_sibling

            hint = closest_sibling(where) or "; is it a run directory?"
            raise UserError(f"--resume {where}: no config.yaml there{hint}")
        return [load_config(where / "config.yaml", overrides + [f"run_dir={where}"])], [where], None
    if args.config is None:
        raise UserError("train needs a config file, e.g. `dqn-atari train configs/pong.yaml`")
    base = load_config(args.config, args.overrides)
    given = Path(base.run_dir) if base.run_dir else None
    if given is not None and (given / GROUP_FILE).is_file():  # e.g. a requeued SLURM task
        members = _read_group(given, seeds)
    elif seeds is None:
        return [base], [given or _new_run_dir(base)], None
    else:
        if given is not None and (given / "config.yaml").is_file():
            held = load_config(given / "config.yaml")
            raise UserError(
                f"run_dir {given} holds a single run (seed {held.seed}); give --seeds a new run_dir, "
                f"or resume that run with --resume {given}"
            )
        group = given or _new_run_dir(base, seeds)
        members = [(seed, group / f"s{seed}") for seed in seeds]
    group = given or members[0][1].parent
    configs = [load_config(args.config, [*args.overrides, f"seed={s}", f"run_dir={d}"]) for s, d in members]
    for cfg in configs:
        cfg.config_name = base.config_name
    return configs, [d for _, d in members], group


def _read_group(group: Path, seeds: list[int] | None) -> list[tuple[int, Path]]:
    """(seed, run directory) of each member a group.json lists."""
    import json

    try:
        listed = json.loads((group / GROUP_FILE).read_text())
        members = [(int(m["seed"]), group / str(m["run_dir"])) for m in listed["members"]]
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(
            f"{group / GROUP_FILE} is damaged: it must list the members' seeds and run directories"
        ) from None
    if seeds is not None and seeds != [s for s, _ in members]:
        have = ",".join(str(s) for s, _ in members)
        raise UserError(f"{group} is a population of seeds {have}; --seeds {','.join(map(str, seeds))} does not match")
    return members


def _write_group(group: Path, configs, run_dirs: list[Path]) -> None:
    import json

    members = [{"seed": c.seed, "run_dir": d.name} for c, d in zip(configs, run_dirs, strict=True)]
    partial = group / f".{GROUP_FILE}.tmp"
    partial.write_text(json.dumps({"members": members}, indent=2) + "\n")
    partial.replace(group / GROUP_FILE)


class _StopSignals:
    """The stop signals (TERM, INT, USR1, HUP) from construction on: each is recorded; once a
    trainer exists it is passed on, and the loop finishes its step, checkpoints and exits 75."""

    def __init__(self):
        import signal

        self.received: int | None = None
        self.trainer = None
        for name in STOP_SIGNALS:
            signal.signal(getattr(signal, name), self._handle)

    def _handle(self, signum, frame) -> None:
        self.received = signum
        if self.trainer is not None:
            self.trainer.stop_signal = signum

    def forward_to(self, trainer) -> None:
        self.trainer = trainer
        if self.received is not None:  # it came during start-up: stop after the first step
            trainer.stop_signal = self.received

    @staticmethod
    def ignore_from_now() -> None:
        """The checkpoint is written: a repeated stop (the job script repeats one until the
        trainer exits) changes nothing. Ignored, not handled: Python restores the default
        action of its handled signals while it shuts down, and a stop arriving then would end
        the process with 128 + signal instead of its exit status."""
        import signal

        for name in STOP_SIGNALS:
            signal.signal(getattr(signal, name), signal.SIG_IGN)


def _warn_if_replay_dwarfs_run(cfg) -> None:
    """A replay far larger than the run fills (e.g. Nature's 1M for a test run) costs memory for
    nothing: say so, with the setting that fixes it."""
    transitions = cfg.train.total_frames // cfg.env.frame_skip
    replay_bytes = cfg.replay.capacity * cfg.env.frame_size**2
    if cfg.replay.capacity > 10 * transitions and replay_bytes > 1 << 30:
        print(
            f"dqn-atari: warning: replay.capacity={cfg.replay.capacity:,} but this run stores at most "
            f"{transitions:,} transitions (train.total_frames / env.frame_skip); set replay.capacity lower "
            f"unless the run will be extended",
            file=sys.stderr,
            flush=True,
        )


def _make_writable_dir(path: Path, what: str) -> None:
    """Create `path` (and parents) and check a file can be written there; one line otherwise."""
    probe = path / f".write-test-{os.getpid()}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise UserError(f"{what} {path} is not a writable directory ({err.strerror or err}); choose another") from None


def _check_writable_file(path: str, option: str) -> None:
    """Refuse an output file that cannot be written, before any work is done for it: its
    directory is created if missing, and a probe file is created there and removed (permission
    bits alone say nothing for root, /proc or a read-only mount)."""
    target = Path(path)
    if target.is_dir():
        raise UserError(f"{option} {path} is a directory; give a file name")
    probe = target.parent / f".{target.name}.write-test-{os.getpid()}"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise UserError(f"{option} {path}: cannot write there ({err.strerror or err})") from None


def _new_run_dir(cfg, seeds: list[int] | None = None) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if seeds is None:
        return Path(cfg.runs_root) / f"{cfg.env.game}-{cfg.config_name}-s{cfg.seed}-{stamp}"
    contiguous = seeds == list(range(seeds[0], seeds[0] + len(seeds)))
    named = f"{seeds[0]}-{seeds[-1]}" if contiguous and len(seeds) > 1 else "+".join(map(str, seeds))
    return Path(cfg.runs_root) / f"{cfg.env.game}-{cfg.config_name}-s{named}-{stamp}"


def _cmd_evaluate(args) -> int:
    from dqn_atari.evaluation import EvaluationError, evaluate_checkpoint, format_report

    recording = args.command == "record"
    epsilons = [args.epsilon] if recording else args.epsilon
    if args.episodes < 1:
        raise UserError(f"--episodes must be at least 1, got {args.episodes}")
    for epsilon in epsilons:
        if not 0 <= epsilon <= 1:
            raise UserError(f"--epsilon must be in [0, 1], got {epsilon}")
    if len(set(epsilons)) != len(epsilons):
        raise UserError(f"--epsilon lists a value twice: {' '.join(map(str, epsilons))}")
    if args.scale < 1:
        raise UserError(f"--scale must be a positive integer, got {args.scale}")
    if not 0 <= args.seed < 2**31:
        raise UserError(f"--seed must be an integer in [0, 2**31), got {args.seed}")
    if not (args.device in ("cpu", "cuda") or (args.device.startswith("cuda:") and args.device[5:].isdigit())):
        raise UserError(f"--device must be cpu, cuda or cuda:N, got {args.device!r}")
    if args.max_episode_frames is not None and args.max_episode_frames < 1:
        raise UserError(f"--max-episode-frames must be at least 1, got {args.max_episode_frames}")
    if args.games_at_once is not None and args.games_at_once < 1:
        raise UserError(f"--games-at-once must be at least 1, got {args.games_at_once}")
    if args.processes is not None and args.processes < 1:
        raise UserError(f"--processes must be at least 1, got {args.processes}")
    cores = os.cpu_count() or 1
    processes = args.processes or (1 if cores <= 2 else min(cores - 1, args.episodes))
    for epsilon in epsilons:
        out = args.out
        if out is not None and len(epsilons) > 1:
            out = str(Path(out) / f"eps{epsilon:g}")
        try:
            report = evaluate_checkpoint(
                args.target,
                episodes=args.episodes,
                epsilon=epsilon,
                protocol=args.protocol,
                game=args.game,
                seed=args.seed,
                max_episode_frames=args.max_episode_frames,
                out=out,
                video=getattr(args, "video", True),
                video_scale=args.scale,
                panel=args.panel,
                gif_seconds=args.gif_seconds,
                keep_videos=args.keep,
                device=args.device,
                kind="record" if recording else "evaluate",
                noise=args.noise,
                games_at_once=args.games_at_once,
                processes=processes,
            )
        except EvaluationError as err:
            raise UserError(str(err)) from None
        print(format_report(report))
    return 0


def _cmd_export(args) -> int:
    import torch

    from dqn_atari.evaluation import EvaluationError, export_model, find_checkpoint

    try:
        source = find_checkpoint(args.target)
        out = Path(args.out)
        state = export_model(source, out, torch.float32 if args.float32 else torch.float16)
    except EvaluationError as err:
        raise UserError(str(err)) from None
    except OSError as err:
        raise UserError(f"cannot write {args.out}: {err.strerror or err}") from None
    size_mb = (out / "model.pt").stat().st_size / 1e6
    print(f"wrote {out}: {size_mb:.1f} MB, {state['weights_dtype']} weights of {source} ({state['frames']:,} frames)")
    print(f"watch it: dqn-atari evaluate {out} --episodes 1 --video")
    return 0


def _cmd_submit(args) -> int:
    from dqn_atari.slurm import SlurmError, submit

    try:
        resources = _resources(args)
        # `--games Pong env.game=Breakout`: argparse hands the override to --games
        games = [g for g in args.games or [] if "=" not in g] or None
        overrides = list(args.overrides) + [g for g in args.games or [] if "=" in g]
        result = submit(
            args.config,
            games=games,
            seeds_text=args.seeds,
            overrides=overrides,
            resources=resources,
            sweep_dir=args.sweep_dir,
            dry_run=args.dry_run,
            seeds_per_task=args.seeds_per_task,
        )
    except SlurmError as err:
        raise UserError(str(err)) from None
    if args.dry_run:  # what a user checks first: what each task asks for, and the tasks
        asked = {k: v for k, v in resources.__dict__.items() if v not in (None, "", ()) and k != "setup"}
        print("# resources per task: " + ", ".join(f"{k}={v}" for k, v in asked.items()))
        for t in result["tasks"]:
            seeds = ",".join(map(str, t["seeds"]))
            plural = "s" if len(t["seeds"]) > 1 else ""
            print(f"# task {t['index']}: {t['game']} seed{plural} {seeds} -> {t['run_dir']}")
        print("# the job script:")
        print(result["script"])
        print("# dry run: nothing written, nothing submitted")
        return 0
    print(f"submitted job array {result['job_id']} ({len(result['tasks'])} tasks); sweep: {result['sweep_dir']}")
    print(f"follow it with: dqn-atari status {result['sweep_dir']}   (logs in {result['sweep_dir']}/logs/)")
    return 0


def _resources(args):
    """Resources: the defaults, then the profile's values, then what the command line gives."""
    from dqn_atari.slurm import Resources, load_profile

    values = load_profile(args.profile) if args.profile else {}
    given = {
        "time": args.time,
        "cpus": args.cpus,
        "mem": args.mem,
        "gpus": args.gpus,
        "partition": args.partition,
        "account": args.account,
        "qos": args.qos,
        "max_parallel": args.max_parallel,
        "signal_seconds": args.signal_seconds,
        "job_name": args.job_name,
        "dependency": args.dependency,
        "setup": args.setup,
        "sbatch_extra": tuple(args.sbatch) if args.sbatch else None,
    }
    values.update({k: v for k, v in given.items() if v is not None})
    return Resources(**values)


def _cmd_status(args) -> int:
    from dqn_atari.slurm import ControllerUnreachable, SlurmError, format_status, status

    try:
        rows, sources = status(args.sweep_dir)
    except ControllerUnreachable as err:
        print(f"dqn-atari: error: {err}", file=sys.stderr)
        return 1
    except SlurmError as err:
        raise UserError(str(err)) from None
    print(format_status(rows, sources))
    return 0


def _cmd_plot(args) -> int:
    from dqn_atari.results import ResultsError, plot

    _check_writable_file(args.out, "--out")
    try:
        out, groups = plot(args.paths, args.out, args.metric, args.x, tuple(args.reference))
    except ResultsError as err:
        raise UserError(str(err)) from None
    for g in groups:
        print(f"{g.game}: {g.name} ({len(g.runs)} run{'s' if len(g.runs) != 1 else ''})")
    print(f"wrote {out}")
    return 0


def _cmd_summarize(args) -> int:
    import json as _json

    from dqn_atari.results import ResultsError, summarize, summary_markdown, write_summary_csv

    if args.out:
        for suffix in (".md", ".csv", ".json"):
            _check_writable_file(args.out + suffix, "--out")
    try:
        summary = summarize(args.paths)
    except ResultsError as err:
        raise UserError(str(err)) from None
    text = summary_markdown(summary)
    print(text)
    if args.out:
        Path(args.out + ".md").write_text(text + "\n")
        write_summary_csv(summary, args.out + ".csv")
        Path(args.out + ".json").write_text(_json.dumps(summary, indent=2) + "\n")
        print(f"wrote {args.out}.md, {args.out}.csv, {args.out}.json")
    return 0


def _cmd_benchmark(args) -> int:
    from dqn_atari import benchmarks

    if args.json:  # checked first: minutes of measurements must not be lost to a bad path
        _check_writable_file(args.json, "--json")
    return benchmarks.run(args.which, json_path=args.json, seconds=args.seconds, replay_capacity=args.replay_capacity)


_COMMANDS = {
    "games": _cmd_games,
    "train": _cmd_train,
    "evaluate": _cmd_evaluate,
    "record": _cmd_evaluate,
    "export": _cmd_export,
    "submit": _cmd_submit,
    "status": _cmd_status,
    "plot": _cmd_plot,
    "summarize": _cmd_summarize,
    "benchmark": _cmd_benchmark,
}


if __name__ == "__main__":
    sys.exit(main())
