"""`dqn-atari`: the command line. User mistakes print one line and exit non-zero, no traceback.

Exit status: 0 done; 2 bad input (config key, value, game, path, checkpoint); 3 training
diverged (non-finite loss or Q-value); 75 stopped by a signal (TERM, INT, USR1, HUP) after
writing a checkpoint: resume me; 1 any other failure.
"""

from __future__ import annotations

import argparse
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


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dqn-atari",
        description="Nature DQN from Atari pixels: train, evaluate and film agents, run sweeps on SLURM, "
        "plot and summarise results.",
        epilog="Config overrides are dotted key=value pairs, e.g. replay.capacity=100000 env.game=Breakout.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser(
        "train",
        help="train an agent from a YAML config",
        description="Train DQN. Writes runs/<game>-<config>-s<seed>-<time>/ (or run_dir=...) with the "
        "resolved config.yaml, metrics.csv, TensorBoard events under tb/ and checkpoints/. A run_dir "
        "that already holds a checkpoint is resumed. SIGTERM/SIGINT/SIGUSR1/SIGHUP: checkpoint, "
        "then exit 75.",
    )
    t.add_argument("config", nargs="?", help="YAML config, e.g. configs/pong.yaml")
    t.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    t.add_argument(
        "--help-config",
        action="store_true",
        help="list every config key with its default, allowed values and meaning, then exit",
    )

    sub.add_parser("games", help="list the Atari games available (ROMs ship inside ale-py)")

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

    e = sub.add_parser(
        "evaluate",
        help="score a checkpoint under a published protocol (and record videos)",
        description="Play full games (all lives) under the Nature or Machado protocol and write report.json: "
        "per-game raw scores, lengths and caps, mean/median/std/min/max, a 95% bootstrap interval of the "
        "mean and the human-normalised score.",
    )
    evaluation_options(e, episodes=30, video_default=False)
    r = sub.add_parser(
        "record", help="a video of one game of a checkpoint (shorthand for evaluate --episodes 1 --video)"
    )
    evaluation_options(r, episodes=1, video_default=True)

    sm = sub.add_parser(
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
        "--profile",
        metavar="NAME|FILE",
        help="a cluster profile: a YAML file of any of the options below (time, cpus, mem, gpus, partition, "
        "account, qos, max_parallel, signal_seconds, job_name, dependency, setup, sbatch), or NAME for "
        "slurm/profiles/NAME.yaml; options given on the command line win",
    )
    sm.add_argument("--time", default=None, help="time limit per task: HH:MM:SS, D-HH:MM:SS, MM ... (default 24:00:00)")
    sm.add_argument("--cpus", type=int, default=None, help="CPUs per task (default 4)")
    sm.add_argument("--mem", default=None, help="memory per task, e.g. 32G (default 32G)")
    sm.add_argument("--gpus", type=int, default=None, help="GPUs per task (default 0)")
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

    st = sub.add_parser("status", help="one line per task of a sweep: SLURM state, frames, last returns, restarts")
    st.add_argument("sweep_dir", metavar="SWEEP_DIR")

    pl = sub.add_parser(
        "plot",
        help="learning curves per game: mean over seeds with a 95%% bootstrap band",
        description="Learning curves from runs' metrics.csv, one panel per game; runs of another game or "
        "other settings are drawn as separate groups, never averaged together.",
    )
    pl.add_argument("paths", nargs="+", metavar="RUN_DIR|SWEEP_DIR")
    pl.add_argument("--out", default="curves.png", help="figure file (default curves.png)")
    pl.add_argument("--metric", choices=["eval", "train"], default="eval", help="evaluation scores or training games")
    pl.add_argument("--x", choices=["frames", "hours"], default="frames", help="x axis (default: emulator frames)")

    su = sub.add_parser(
        "summarize",
        help="final scores per game (mean and 95%% CI over seeds), human-normalised; median and IQM across games",
    )
    su.add_argument("paths", nargs="+", metavar="RUN_DIR|SWEEP_DIR")
    su.add_argument("--out", default=None, help="also write OUT.md and OUT.csv")

    b = sub.add_parser(
        "benchmark",
        help="measure speed and memory; prints a table and writes JSON",
        description="Benchmarks: env (pixel pipeline), replay (memory and sampling), learner (update "
        "time vs plain PyTorch), update_gpu (the update's device profile, eager vs CUDA graph; on a "
        "CPU only its eager and acting times), loop (training loop vs learner bound), loop_grid (the "
        "loop at 1, 4 and 8 envs, both env backends, and on a GPU with frames in host memory, on the "
        "GPU, and with the CUDA graph), "
        "checkpoint (full vs incremental write of a 1M replay), video (evaluation with vs without "
        "recording).",
    )
    b.add_argument(
        "which", choices=["env", "replay", "learner", "update_gpu", "loop", "loop_grid", "checkpoint", "video", "all"]
    )
    b.add_argument("--json", metavar="PATH", help="write the figures to this JSON file")
    b.add_argument("--seconds", type=float, default=None, help="time budget per measurement")
    b.add_argument(
        "--replay-capacity", type=int, default=1_000_000, help="capacity for the replay and checkpoint benchmarks"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    # key=value overrides may come after options too (argparse alone stops at the first option).
    args, extra = parser.parse_known_args(argv)
    stray = [e for e in extra if e.startswith("-") or "=" not in e or not hasattr(args, "overrides")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = list(args.overrides) + extra
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


def _cmd_games(args) -> int:
    from dqn_atari.envs import available_games

    for name in available_games():
        print(name)
    return 0


def _cmd_train(args) -> int:
    # From the first line on, a stop signal is recorded, not fatal: one that arrives while the
    # config loads or the replay is read still ends in a checkpoint (or a clear line).
    stops = _StopSignals()
    from dqn_atari.config import Config, all_keys, get, key_choices, key_descriptions, load_config, save_config

    if args.help_config:
        defaults, descriptions = Config(), key_descriptions()
        for key in all_keys():
            print(f"{key} = {get(defaults, key)!r}  ({key_choices(key)})")
            print(f"    {descriptions.get(key) or '-'}")
        return 0
    if args.resume:
        run_dir = Path(args.resume)
        overrides = ([args.config] if args.config else []) + args.overrides  # all are key=value here
        if not (run_dir / "config.yaml").is_file():
            raise UserError(f"--resume {run_dir}: no config.yaml there; is it a run directory?")
        cfg = load_config(run_dir / "config.yaml", overrides + [f"run_dir={run_dir}"])
    elif args.config is None:
        raise UserError("train needs a config file, e.g. `dqn-atari train configs/pong.yaml`")
    else:
        cfg = load_config(args.config, args.overrides)
    from dqn_atari.checkpoint import CheckpointError, CheckpointWriteError
    from dqn_atari.run_lock import RunLock, RunLocked
    from dqn_atari.trainer import Preempted, Trainer, TrainingDiverged, resolve_device

    resolve_device(cfg.train.device)  # refuse an absent GPU before creating anything
    _warn_if_replay_dwarfs_run(cfg)
    run_dir = Path(cfg.run_dir) if cfg.run_dir else _new_run_dir(cfg)
    _make_writable_dir(run_dir, "run_dir")
    lock = RunLock(run_dir, warn=lambda line: print(line, file=sys.stderr, flush=True))
    try:
        lock.acquire()
    except RunLocked as err:
        raise UserError(str(err)) from None
    try:
        print(f"run directory: {run_dir}", flush=True)
        trainer = Trainer(cfg, run_dir)
        stops.forward_to(trainer)
        import torch

        print(f"device {trainer.device}, torch threads {torch.get_num_threads()}", flush=True)
        try:
            try:
                resumed = trainer.resume()
            except CheckpointError as err:
                raise UserError(str(err)) from None
            if resumed:
                print(f"resumed from {resumed} at frame {trainer.frames:,}", flush=True)
            elif args.resume:
                raise UserError(f"--resume {run_dir}: no checkpoint there to resume from")
            else:
                aside = trainer.set_aside_logs_without_checkpoint()
                if aside is not None:
                    print(
                        f"dqn-atari: warning: {run_dir} has logs but no checkpoint: starting from frame 0, "
                        f"the earlier logs moved to {aside}",
                        file=sys.stderr,
                        flush=True,
                    )
            save_config(cfg, run_dir / "config.yaml")  # only once the checkpoint has accepted cfg
            trainer.train()
        except TrainingDiverged as err:
            print(f"dqn-atari: error: {err}", file=sys.stderr)
            return EXIT_DIVERGED
        except CheckpointWriteError as err:
            print(f"dqn-atari: error: {err}", file=sys.stderr)
            return 1
        except Preempted:
            print(
                f"stopped by signal {trainer.stop_signal} at frame {trainer.frames:,}; checkpoint written, "
                f"resume with: dqn-atari train --resume {run_dir}",
                flush=True,
            )
            return EXIT_PREEMPTED
        finally:
            trainer.close()
    finally:
        lock.release()
    print(f"done: {trainer.frames:,} frames, {trainer.agent.updates:,} updates, {trainer.games} games", flush=True)
    return 0


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


def _new_run_dir(cfg) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(cfg.runs_root) / f"{cfg.env.game}-{cfg.config_name}-s{cfg.seed}-{stamp}"


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
            )
        except EvaluationError as err:
            raise UserError(str(err)) from None
        print(format_report(report))
    return 0


def _cmd_submit(args) -> int:
    from dqn_atari.slurm import SlurmError, submit

    try:
        resources = _resources(args)
        result = submit(
            args.config,
            games=args.games,
            seeds_text=args.seeds,
            overrides=args.overrides,
            resources=resources,
            sweep_dir=args.sweep_dir,
            dry_run=args.dry_run,
        )
    except SlurmError as err:
        raise UserError(str(err)) from None
    if args.dry_run:
        print(result["script"])
        for t in result["tasks"]:
            print(f"# task {t['index']}: {t['game']} seed {t['seed']} -> {t['run_dir']}")
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
        out, groups = plot(args.paths, args.out, args.metric, args.x)
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
    "submit": _cmd_submit,
    "status": _cmd_status,
    "plot": _cmd_plot,
    "summarize": _cmd_summarize,
    "benchmark": _cmd_benchmark,
}


if __name__ == "__main__":
    sys.exit(main())
