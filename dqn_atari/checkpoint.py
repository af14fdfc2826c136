"""Atomic, resumable checkpoints of a whole training run.

A checkpoint is a directory `checkpoints/ckpt-<frames>/` holding
    model.pt       online and target networks, optimiser, torch RNG states (torch.load with
                   weights_only=True: nothing is unpickled)
    state.json     counters, Python/numpy/agent RNG states, logger position, resolved config,
                   the CRC32 of every other file
    envs.npz       emulator states (ale-py cloneState with its RNG), wrapper state, the current
                   frame stacks (plain arrays, loaded with allow_pickle=False)
    replay/        the replay's own save; frame chunks unchanged since the previous checkpoint
                   are hard links to it, so a checkpoint costs what changed
It is written into `.tmp-ckpt-<frames>/`, fsynced, then renamed into place: a crash at any
moment leaves every earlier checkpoint intact, and a half-written one never has the final name.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dqn_atari.config import Config, to_dict, upgraded
from dqn_atari.errors import first_line
from dqn_atari.replay import DamagedFrames, ReplayBuffer, ReplayError, crc_of_file, write_synced

# Settings that fix the shapes of what a checkpoint holds; a run resumed with any of them
# changed cannot continue the same run.
STRUCTURAL_KEYS = (
    "env.game",
    "env.num_envs",
    "env.backend",
    "env.frame_stack",
    "env.frame_size",
    "env.frame_stack_padding",
    "env.frame_stack_restart_on_life_loss",
    "network.hidden_size",
    "network.dueling",
    "network.noisy",
    "network.iqn_cosines",
    "agent.value_head",
    "agent.atoms",
    "agent.quantiles",
    "replay.capacity",
    "replay.n_step",
    "replay.prioritized",
    # another optimizer's state cannot be loaded into this one
    "optimizer.name",
)

# For tests of atomicity: DQN_ATARI_CRASH_AT=<stage> kills the process (as SIGKILL would) the
# first time a checkpoint write reaches that point, <stage>:<n> the n-th time (a population
# writes one checkpoint per member). Stages: model, replay, before_rename, before_prune.
_CRASH_ENV = "DQN_ATARI_CRASH_AT"
_stages_reached: dict[str, int] = {}


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message is one line for the user."""


class DamagedReplayFrames(CheckpointError):
    """A checkpoint whose only damage is in replay frame chunks: usable without the transitions
    that read them, when no intact checkpoint is left."""


class ConfigMismatch(CheckpointError):
    """A checkpoint of a run with other shapes (game, network, replay): never tried as a fallback."""


def maybe_crash(stage: str) -> None:
    wanted, _, nth = os.environ.get(_CRASH_ENV, "").partition(":")
    if wanted != stage:
        return
    _stages_reached[stage] = _stages_reached.get(stage, 0) + 1
    if _stages_reached[stage] == int(nth or 1):
        os._exit(137)


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (a file renamed in, a file removed) durable, as fsync does a file's bytes."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_model_only(final: Path, agent: dict, state: dict) -> dict:
    """Write a model-only directory (a run's snapshot, an export) at `final`: model.pt holding
    `agent` and a state.json of `state` with the model file's CRC32 added, both synced. It is
    written beside `final` and renamed into place, an existing `final` moved aside first, so
    `final` is always either the old directory whole or the new one whole. Returns the state
    as written."""
    tmp, old = final.with_name(f".tmp-{final.name}"), final.with_name(f".old-{final.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    tmp.mkdir()
    written = dict(state, files={"model.pt": write_synced(tmp / "model.pt", lambda f: torch.save({"agent": agent}, f))})
    write_synced(tmp / "state.json", lambda f: f.write(json.dumps(written, indent=1).encode()))
    fsync_dir(tmp)
    if final.exists():
        os.rename(final, old)
    os.rename(tmp, final)
    fsync_dir(final.parent)
    shutil.rmtree(old, ignore_errors=True)
    return written


CHECKPOINT_NAME = re.compile(r"ckpt-(\d+)")
# Keys every checkpoint's state.json holds; one without them is refused like a corrupt file.
STATE_KEYS = ("frames", "steps", "games", "config", "files", "python_rng", "numpy_rng", "agent_rng")
# A model-only save (a run's snapshot, an export) holds the weights to play with and no more.
MODEL_ONLY_KEYS = ("frames", "config", "files")


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (disk full, permissions); earlier ones are intact."""


class Checkpointer:
    def __init__(self, run_dir: str | Path, keep_last: int = 2):
        self.root = Path(run_dir) / "checkpoints"
        self.keep_last = keep_last
        # The checkpoint whose replay chunks the next save may hard-link: the last one this run
        # loaded or wrote, never merely the newest name on disk (which may be a damaged one).
        self.reuse_from: Path | None = None

    def list(self) -> list[Path]:
        """Complete checkpoints, newest first; anything else in the directory (a copy, a file
        someone left there) is not a checkpoint and is ignored."""
        if not self.root.is_dir():
            return []
        found = [p for p in self.root.iterdir() if p.is_dir() and CHECKPOINT_NAME.fullmatch(p.name)]
        return sorted(found, key=lambda p: int(p.name.split("-")[1]), reverse=True)

    def save(
        self,
        frames: int,
        model: dict,
        state: dict,
        envs: dict[str, np.ndarray],
        replay: ReplayBuffer,
        prune: bool = True,
    ) -> Path:
        """Write `ckpt-<frames>` atomically; then, unless `prune` is false (a population prunes
        once every member has written), delete all but the newest `keep_last`."""
        final = self.root / f"ckpt-{frames:012d}"
        tmp = self.root / f".tmp-{final.name}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)  # debris of an earlier crash
            tmp.mkdir()
            files = {}
            files["model.pt"] = write_synced(tmp / "model.pt", lambda f: torch.save(model, f))
            maybe_crash("model")
            # numpy's stubs read **arrays as its allow_pickle keyword
            files["envs.npz"] = write_synced(tmp / "envs.npz", lambda f: np.savez(f, **envs))  # type: ignore[arg-type]
            reuse = self.reuse_from if self.reuse_from is not None and self.reuse_from.is_dir() else None
            replay.save(tmp / "replay", reuse_from=reuse / "replay" if reuse else None)
            maybe_crash("replay")
            state = dict(state, files=files)
            write_synced(tmp / "state.json", lambda f: f.write(json.dumps(state).encode()))
            fsync_dir(tmp)
            maybe_crash("before_rename")
            if final.exists():  # the same frame count saved twice (e.g. a signal right at the end)
                shutil.rmtree(final)
            os.rename(tmp, final)
            fsync_dir(self.root)
        except (OSError, RuntimeError) as err:  # torch.save wraps a failed write in a RuntimeError
            shutil.rmtree(tmp, ignore_errors=True)
            kept = self.list()
            intact = f"the previous checkpoint {kept[0]} is intact" if kept else "no earlier checkpoint exists"
            raise CheckpointWriteError(f"cannot write checkpoint {final} ({_write_failure(err)}); {intact}") from None
        self.reuse_from = final
        if prune:
            self.prune()
        return final

    def prune(self) -> None:
        """Delete all but the newest `keep_last` checkpoints. Each is renamed before it is deleted,
        so a kill in the middle leaves a `.deleting-` directory (removed by the next prune), never
        a half-deleted checkpoint under a checkpoint's name."""
        for old in self.list()[self.keep_last :]:
            going = old.with_name(f".deleting-{old.name}")
            os.rename(old, going)
            maybe_crash("pruning")
        for going in self.root.glob(".deleting-*"):
            shutil.rmtree(going, ignore_errors=True)

    def save_snapshot(self, frames: int, agent: dict, state: dict) -> Path:
        """`snapshots/model-<frames>/`: the online network's weights (`agent["online"]`, and the
        acting noise of a noisy network) and a state.json (config, counters, the evaluation
        taken there), a few MB, never the replay. `dqn-atari evaluate`
        reads it like a checkpoint, so any point of a learning curve can be re-evaluated."""
        root = self.root.parent / "snapshots"
        root.mkdir(parents=True, exist_ok=True)
        final = root / f"model-{frames:012d}"
        write_model_only(final, agent, state)
        return final

    def load(
        self, path: Path, replay: ReplayBuffer, config: dict, leave_out_damaged_frames: bool = False
    ) -> tuple[dict, dict, dict, int]:
        """(model, state, envs, replay entries left out) of one checkpoint, and its replay loaded
        into `replay`. A checkpoint of another config raises ConfigMismatch; a missing, truncated
        or altered file raises CheckpointError (DamagedReplayFrames when only replay frame chunks
        are damaged and `leave_out_damaged_frames` is off)."""
        state = read_state(path)
        differences = structural_differences(state["config"], config)
        if differences:
            raise ConfigMismatch(f"cannot resume {path.parent.parent}: {differences[0]}")
        verify_files(path, state, ("model.pt", "envs.npz"))
        model = load_model(path)
        try:
            with np.load(path / "envs.npz", allow_pickle=False) as data:
                envs = {k: data[k] for k in data.files}
        except (OSError, ValueError) as err:
            raise CheckpointError(f"checkpoint file {path / 'envs.npz'} is unreadable ({err})") from None
        try:
            left_out = replay.load(path / "replay", leave_out_damaged=leave_out_damaged_frames)
        except DamagedFrames as err:
            raise DamagedReplayFrames(str(err)) from None
        except ReplayError as err:
            raise CheckpointError(str(err)) from None
        return model, state, envs, left_out

    def set_aside(self, path: Path, prefix: str, warn) -> None:
        """Move a checkpoint out of the run's way, kept for inspection as `<prefix>-ckpt-<frames>`."""
        aside = path.with_name(f"{prefix}-{path.name}")
        shutil.rmtree(aside, ignore_errors=True)
        os.rename(path, aside)
        warn(f"dqn-atari: warning: moved the {'damaged ' if prefix == 'damaged' else ''}{path.name} aside to {aside}")


@dataclass
class Loaded:
    """One seed's checkpoint as a resume found it; `model` is None for a seed that had reached
    its target return (its last checkpoint stands, nothing of it is loaded)."""

    path: Path
    state: dict
    model: dict | None = None
    envs: dict | None = None


def _frames_of(path: Path) -> int:
    return int(path.name.split("-")[1])


def load_group(
    checkpointers: Sequence[Checkpointer],
    replays: Sequence[ReplayBuffer],
    configs: Sequence[dict],
    stop_at_return: float | None,
    warn=print,
) -> list[Loaded] | None:
    """Each seed's checkpoint at the newest frame count that every seed still training has a
    loadable checkpoint at (one seed: its newest loadable one), its replay loaded. A damaged
    checkpoint is reported, moved aside to `checkpoints/damaged-ckpt-<frames>/` and an older
    frame count tried; when none is intact, the newest whose only damage is in replay frame
    chunks (checkpoints share unchanged chunks as hard links, so they share their damage too)
    is used without the transitions that read those frames. Checkpoints of a seed newer than
    the frame count used (a population killed while writing its checkpoints) are moved aside
    to `ahead-ckpt-<frames>/`. A seed whose newest checkpoint had reached `stop_at_return`
    stays finished. None when no seed has a checkpoint, or when some seeds have none (the
    others' checkpoints are then set aside: the population starts again from frame 0)."""
    listed = [c.list() for c in checkpointers]
    if not any(listed):
        return None
    who = [f"the run in {c.root.parent}" for c in checkpointers]
    if not all(listed):
        # A population killed inside its first checkpoint: some seeds wrote theirs, the others
        # none. There is no common frame count but 0, so the population starts again, the lone
        # checkpoints set aside (a seed never goes on alone from frames its siblings lack).
        for checkpointer, paths in zip(checkpointers, listed, strict=True):
            for path in paths:
                checkpointer.set_aside(path, "ahead", warn)
        warn("dqn-atari: warning: the population's first checkpoint was not completed by every seed: starting again")
        return None
    finished: dict[int, Loaded] = {}
    for i, paths in enumerate(listed):
        try:
            state = read_state(paths[0])
        except CheckpointError:
            continue
        best = state.get("best_evaluation_return")
        if stop_at_return is not None and best is not None and best >= stop_at_return:
            differences = structural_differences(state["config"], configs[i])
            if differences:
                raise ConfigMismatch(f"cannot resume {paths[0].parent.parent}: {differences[0]}")
            finished[i] = Loaded(paths[0], state)
    training = [i for i in range(len(listed)) if i not in finished]
    if not training:
        return [finished[i] for i in range(len(listed))]
    common = set.intersection(*({_frames_of(p) for p in listed[i]} for i in training))
    candidates = sorted(common, reverse=True)
    if not candidates:
        have = "; ".join(f"{who[i]}: {', '.join(str(_frames_of(p)) for p in listed[i])}" for i in training)
        raise CheckpointError(f"the seeds have no checkpoint at a common frame count ({have}); resume each alone")
    failed: set[tuple[int, int]] = set()  # (seed, frames) that did not load
    frames_only_damaged: int | None = None
    errors: list[str] = []
    for leave_out in (False, True):
        for frames in candidates:
            if leave_out and frames != frames_only_damaged:
                continue
            loaded: dict[int, Loaded] = {}
            for i in training:
                path = checkpointers[i].root / f"ckpt-{frames:012d}"
                try:
                    model, state, envs, left_out = checkpointers[i].load(path, replays[i], configs[i], leave_out)
                except ConfigMismatch:
                    raise
                except CheckpointError as err:
                    failed.add((i, frames))
                    errors.append(str(err))
                    if isinstance(err, DamagedReplayFrames) and frames_only_damaged is None:
                        frames_only_damaged = frames
                    if not leave_out:
                        warn(f"dqn-atari: warning: {err}; trying the previous checkpoint")
                    break
                if left_out:
                    warn(
                        f"dqn-atari: warning: no intact checkpoint; resuming from {path.name} with its damaged replay "
                        f"frames left out ({left_out:,} of {len(replays[i]):,} replay entries cannot be sampled until "
                        f"new transitions replace them)"
                    )
                loaded[i] = Loaded(path, state, model, envs)
            else:
                for i in training:
                    for newer in (p for p in listed[i] if _frames_of(p) > frames and p.is_dir()):
                        checkpointers[i].set_aside(
                            newer, "damaged" if (i, _frames_of(newer)) in failed else "ahead", warn
                        )
                    checkpointers[i].reuse_from = loaded[i].path
                return [finished.get(i) or loaded[i] for i in range(len(listed))]
    raise CheckpointError(f"no loadable checkpoint in {checkpointers[training[0]].root}: {errors[-1]}")


def _write_failure(err: BaseException) -> str:
    """The operating system's words for a failed write, wherever in the exception chain."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        seen = seen.__cause__ or seen.__context__
    return first_line(err)


def read_state(path: Path) -> dict:
    """A checkpoint's (or snapshot's) state.json, refused in one line unless it is a JSON object
    with the keys a checkpoint holds."""
    try:
        state = json.loads((path / "state.json").read_text())
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} has no state.json") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"checkpoint {path}/state.json is corrupt") from None
    except OSError as err:
        raise CheckpointError(f"checkpoint {path}/state.json cannot be read ({err.strerror})") from None
    model_only = path.parent.name == "snapshots" or (isinstance(state, dict) and "exported_from" in state)
    needed = MODEL_ONLY_KEYS if model_only else STATE_KEYS
    missing = [k for k in needed if not isinstance(state, dict) or k not in state]
    if missing or not isinstance(state["files"], dict) or not isinstance(state["config"], dict):
        raise CheckpointError(f"checkpoint {path}/state.json lacks {', '.join(missing) or 'valid files/config'}")
    return state


def verify_files(path: Path, state: dict, required: tuple[str, ...]) -> None:
    """Every file the state records is there with its recorded CRC32, and `required` ones are
    recorded at all."""
    for name in required:
        if name not in state["files"]:
            raise CheckpointError(f"checkpoint {path}/state.json records no checksum for {name}")
    for name, crc in state["files"].items():
        if not (path / name).is_file():
            raise CheckpointError(f"checkpoint file {path / name} is missing")
        if crc_of_file(path / name) != crc:
            raise CheckpointError(f"checkpoint file {path / name} is corrupt (checksum mismatch)")


def load_model(path: Path) -> dict:
    """model.pt read without unpickling anything: a file holding anything but tensors and
    plain containers is refused. Its tensors land on the CPU whatever device wrote them:
    load_state_dict copies weights and optimiser state onto the run's device, and torch's RNG
    states (CPU and CUDA alike) are only accepted as CPU tensors."""
    try:
        with warnings.catch_warnings():  # torch's advice about pickle protocols is not for users
            warnings.simplefilter("ignore")
            model = torch.load(path / "model.pt", map_location="cpu", weights_only=True)
    except Exception:  # torch raises UnpicklingError, RuntimeError, EOFError...
        raise CheckpointError(
            f"checkpoint file {path / 'model.pt'} is not a model: not a torch file, or it holds objects "
            f"other than tensors"
        ) from None
    if not isinstance(model, dict) or not isinstance(model.get("agent"), dict) or "online" not in model["agent"]:
        raise CheckpointError(f"checkpoint file {path / 'model.pt'} holds no agent weights")
    return model


def structural_differences(saved: dict, current: dict) -> list[str]:
    """'key: saved -> current' for each structural setting that differs."""
    defaults = to_dict(Config())  # for settings that a checkpoint older than them lacks
    saved, current = upgraded(saved), upgraded(current)
    out = []
    for key in STRUCTURAL_KEYS:
        section, name = key.split(".")
        default = defaults[section][name]
        a, b = saved.get(section, {}).get(name, default), current.get(section, {}).get(name, default)
        if a != b:
            out.append(f"{key} is {a!r} in the checkpoint but {b!r} now")
    return out
