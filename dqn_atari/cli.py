"""`dqn-atari`: the command line. User mistakes print one line and exit non-zero, no traceback.

Exit status: 0 done; 2 bad input (config key, value, game, path, checkpoint); 3 training
diverged (non-finite loss or Q-value); 75 stopped by a signal (TERM, INT, USR1, HUP) after
writing a checkpoint: resume me; 1 any other failure.
"""

from __future__ import annotations

import argparse
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
        description="Nature DQN from Atari pixels: train, benchmark, list games.",
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
    t.add_argument("--help-config", action="store_true", help="list every config key with its default, then exit")

    sub.add_parser("games", help="list the Atari games available (ROMs ship inside ale-py)")

    b = sub.add_parser(
        "benchmark",
        help="measure speed and memory; prints a table and writes JSON",
        description="Benchmarks: env (pixel pipeline), replay (memory and sampling), learner (update "
        "time vs plain PyTorch), loop (training loop vs learner bound).",
    )
    b.add_argument("which", choices=["env", "replay", "learner", "loop", "all"])
    b.add_argument("--json", metavar="PATH", help="write the figures to this JSON file")
    b.add_argument("--seconds", type=float, default=None, help="time budget per measurement")
    b.add_argument("--replay-capacity", type=int, default=1_000_000, help="capacity for the replay benchmark")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
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
    from dqn_atari.config import all_keys, get, load_config, save_config, Config

    if args.help_config:
        defaults = Config()
        for key in all_keys():
            print(f"{key} = {get(defaults, key)!r}")
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
    from dqn_atari.checkpoint import CheckpointError
    from dqn_atari.trainer import Preempted, Trainer, TrainingDiverged, resolve_device

    resolve_device(cfg.train.device)  # refuse an absent GPU before creating anything
    run_dir = Path(cfg.run_dir) if cfg.run_dir else _new_run_dir(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    print(f"run directory: {run_dir}", flush=True)
    trainer = Trainer(cfg, run_dir)
    try:
        try:
            resumed = trainer.resume()
        except CheckpointError as err:
            raise UserError(str(err)) from None
        if resumed:
            print(f"resumed from {resumed} at frame {trainer.frames:,}", flush=True)
        elif args.resume:
            raise UserError(f"--resume {run_dir}: no checkpoint there to resume from")
        save_config(cfg, run_dir / "config.yaml")
        _install_stop_handlers(trainer)
        trainer.train()
    except TrainingDiverged as err:
        print(f"dqn-atari: error: {err}", file=sys.stderr)
        return EXIT_DIVERGED
    except Preempted:
        print(
            f"stopped by signal {trainer.stop_signal} at frame {trainer.frames:,}; checkpoint written, "
            f"resume with: dqn-atari train --resume {run_dir}",
            flush=True,
        )
        return EXIT_PREEMPTED
    finally:
        trainer.close()
    print(f"done: {trainer.frames:,} frames, {trainer.agent.updates:,} updates, {trainer.games} games", flush=True)
    return 0


def _install_stop_handlers(trainer) -> None:
    """The first stop signal asks the loop to finish its step, checkpoint and exit 75."""
    import signal

    def handler(signum, frame):
        trainer.stop_signal = signum

    for name in STOP_SIGNALS:
        signal.signal(getattr(signal, name), handler)


def _new_run_dir(cfg) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(cfg.runs_root) / f"{cfg.env.game}-{cfg.config_name}-s{cfg.seed}-{stamp}"


def _cmd_benchmark(args) -> int:
    from dqn_atari import benchmarks

    return benchmarks.run(args.which, json_path=args.json, seconds=args.seconds, replay_capacity=args.replay_capacity)


_COMMANDS = {"games": _cmd_games, "train": _cmd_train, "benchmark": _cmd_benchmark}


if __name__ == "__main__":
    sys.exit(main())
