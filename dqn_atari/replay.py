"""Replay memory that stores each 84x84 frame once and rebuilds frame stacks at sample time.

Layout: one ring per parallel env, `frames[env, position]`, so an env's frames are always in
the order it saw them and stacks never mix envs. Entry p of a ring holds the newest frame of
the stack the agent acted on, the action, the clipped learning reward, and flag bits:

  terminal   the transition from p ends learning (life loss or game over): no bootstrap
  truncated  the game was cut by the time limit at p: bootstrap from p+1
  first      p is the first frame of a game: older stack slots are zeros (the acting padding)
  last       p holds only the frame a game ended on (no action taken from it); it exists so
             that the transition before it has a real next state, which truncation needs
  back       (bits 4-7) entries from p back to its game's first frame, capped at stack-1:
             derived from `first` when p is written, so sampling reads one byte instead of
             searching the stack's flags

A "game" here is what the acting frame stack treats as one: a whole game, or one life when a
life loss restarts the stack (env.frame_stack_restart_on_life_loss).

Rebuilding: the stack for p is frames p-3..p; slots before the game's first frame hold zeros or
that first frame repeated (`padding`), exactly as the acting frame stack pads. A sample is valid
only if every entry it reads is still in the ring (never an overwritten frame, never across the
write cursor). These rules run on the host, in numpy, wherever the frames are kept.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

# Frames are saved in chunks of this many entries per env, so a checkpoint rewrites only the
# chunks written since the previous one and hard-links the rest.
CHUNK_ENTRIES = 16_384
TERMINAL, TRUNCATED, FIRST, LAST = 1, 2, 4, 8  # bits of `flags`
BACK_SHIFT = 4  # flags >> BACK_SHIFT: distance to the game's first frame, capped at stack-1
SAVE_FORMAT = 2  # format 1 saves lack the `back` bits; they are rebuilt on load


class ReplayError(RuntimeError):
    """A replay that cannot be built or loaded; the message is one line for the user."""


class DamagedFrames(ReplayError):
    """A save whose only damage is in frame chunks (missing, truncated or altered files): it can
    still be loaded without the transitions that read those frames (`load(leave_out_damaged=True)`)."""


@dataclass
class Batch:
    """uint8 stacks and per-transition arrays. The stacks are numpy arrays, or torch tensors on
    the frames' device where the frames live there; every other field is a numpy array.
    `obs` and `next_obs` may be views of one gather."""

    obs: np.ndarray | torch.Tensor  # (B, stack, H, W) uint8
    actions: np.ndarray | torch.Tensor  # (B,) int64
    rewards: np.ndarray | torch.Tensor  # (B,) float32, n-step discounted sum of learning rewards
    discounts: np.ndarray | torch.Tensor  # (B,) float32, gamma^k, or 0 where a learning terminal came first
    next_obs: np.ndarray | torch.Tensor  # (B, stack, H, W) uint8
    env_index: np.ndarray | torch.Tensor  # (B,) which ring
    position: np.ndarray | torch.Tensor  # (B,) which entry of the ring
    # (B,) float32 importance-sampling weights of prioritized replay; None for uniform sampling
    weights: np.ndarray | None = None


def memory_available_bytes() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


class ReplayBuffer:
    # Per-entry arrays beside the frames, saved whole at each checkpoint.
    small_arrays: tuple[str, ...] = ("actions", "rewards", "flags")

    def __init__(
        self,
        capacity: int,
        num_envs: int = 1,
        *,
        frame_shape: tuple[int, int] = (84, 84),
        stack: int = 4,
        n_step: int = 1,
        gamma: float = 0.99,
        seed: int | np.random.SeedSequence = 0,
        check_memory: bool = True,
        frames_device: str | torch.device | None = None,
        padding: str = "zeros",
    ):
        """`padding`: "zeros" or "first_frame", as the acting FrameStack's.
        `frames_device` (e.g. "cuda") keeps the frame store there as a torch tensor, so the
        big gather never leaves the device. Everything else stays in host memory and sampling
        follows one set of rules wherever the frames are: the host draws and validates a batch's
        entries and sends only their frame indices to the device (`_gather`)."""
        if not 1 <= stack <= 16:
            raise ReplayError(f"frame stack of {stack} is not supported: the replay stores 1 to 16 frames per stack")
        self.ring_size = capacity // num_envs
        if self.ring_size < stack + n_step + 1:
            raise ReplayError(
                f"replay capacity {capacity} is too small for {num_envs} envs: each env's ring needs "
                f"at least stack + n_step + 1 = {stack + n_step + 1} entries"
            )
        self.capacity = self.ring_size * num_envs
        self.num_envs, self.stack, self.n_step, self.gamma = num_envs, stack, n_step, gamma
        if padding not in ("zeros", "first_frame"):
            raise ReplayError(f"replay padding must be zeros or first_frame, got {padding!r}")
        self.pad_with_first_frame = padding == "first_frame"
        self.frame_shape = tuple(frame_shape)

        shape = (num_envs, self.ring_size)
        needed = self.capacity * (int(np.prod(frame_shape)) + 1 + 4 + 1)
        available = memory_available_bytes()
        if check_memory and needed > available:
            raise ReplayError(
                f"replay of capacity {capacity:,} needs {needed:,} bytes but only {available:,} are "
                f"available; lower replay.capacity"
            )
        # numpy in host memory, or a torch tensor on `frames_device`. One all-zero frame follows
        # the rings: zero padding is a gather of it, so no batch is masked after its gather.
        self.frames: Any
        store: Any
        store_shape = (self.capacity + 1, *self.frame_shape)
        if frames_device is None:
            store = np.zeros(store_shape, dtype=np.uint8)
        else:
            import torch

            store = torch.zeros(store_shape, dtype=torch.uint8, device=frames_device)
        self._zero_frame = self.capacity
        self._flat_frames = store
        self.frames = store[: self.capacity].reshape(shape + self.frame_shape)
        self.actions = np.zeros(shape, dtype=np.uint8)  # Atari has at most 18 actions
        self.rewards = np.zeros(shape, dtype=np.float32)
        self.flags = np.zeros(shape, dtype=np.uint8)
        # Flat views of all rings: a sample's frames (and flags) come out of one fancy index.
        self._flat_flags = self.flags.reshape(-1)
        self._flat_rewards = self.rewards.reshape(-1)
        self._flat_actions = self.actions.reshape(-1)
        # The window around a start p: entries p-(stack-1) .. p+n_step.
        self._window_offsets = np.arange(-(stack - 1), n_step + 1)

        self.cursor = np.zeros(num_envs, dtype=np.int64)  # next position to write, per ring
        self.count = np.zeros(num_envs, dtype=np.int64)  # entries held, per ring
        self.game_starts = np.ones(num_envs, dtype=bool)  # the next add begins a game
        self.rng = np.random.Generator(np.random.PCG64(seed))
        # Bumped whenever an entry of a chunk is written; a save reuses chunks whose version it
        # already wrote.
        n_chunks = -(-self.ring_size // CHUNK_ENTRIES)
        self.chunk_version = np.zeros((num_envs, n_chunks), dtype=np.int64)
        self._envs = np.arange(num_envs)

    def __len__(self) -> int:
        return int(self.count.sum())

    @property
    def nbytes(self) -> int:
        frames = self.frames.nbytes if isinstance(self.frames, np.ndarray) else self.frames.numel()
        return frames + sum(getattr(self, name).nbytes for name in self.small_arrays)

    # ------------------------------------------------------------------ writing
    def add(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        terminal: np.ndarray,
        truncated: np.ndarray,
        stack_ends: np.ndarray,
        next_obs: np.ndarray,
    ) -> None:
        """One step of all envs: obs (N, stack, H, W) the stacks acted on, next_obs the stacks
        that followed. `terminal` is the learning terminal; `stack_ends` ends the game as the
        frame stack sees it (game over, truncation, or a life loss that restarts the stack): only
        then is next_obs's newest frame stored, as a `last` entry."""
        self._write(self._envs, obs[:, -1], actions, rewards, terminal, truncated, self.game_starts, False)
        self.game_starts = np.asarray(stack_ends, dtype=bool).copy()
        if self.game_starts.any():
            ended = np.flatnonzero(self.game_starts)
            zeros = np.zeros(len(ended))
            self._write(ended, next_obs[ended, -1], zeros, zeros, False, False, False, True)

    def end_games_abruptly(self) -> None:
        """The games in progress are lost (a resume that could not restore the emulators): their
        newest entry can no longer start a transition, and the next add starts a new game."""
        ongoing = np.flatnonzero((self.count > 0) & ~self.game_starts)
        newest = (self.cursor[ongoing] - 1) % self.ring_size
        self.flags[ongoing, newest] |= LAST
        self.game_starts[:] = True

    def _write(self, envs, frames, actions, rewards, terminal, truncated, first, last) -> None:
        pos = self.cursor[envs]
        if isinstance(self.frames, np.ndarray):
            self.frames[envs, pos] = frames
        else:
            self.frames[envs, pos] = _to_tensor(frames, self.frames.device)
        self.actions[envs, pos] = actions
        self.rewards[envs, pos] = rewards
        # The previous write of a ring is its predecessor in the game (or `first` is set).
        back_before = self.flags[envs, (pos - 1) % self.ring_size] >> BACK_SHIFT
        back = np.where(first, 0, np.minimum(back_before + 1, self.stack - 1))
        self.flags[envs, pos] = (
            np.where(terminal, TERMINAL, 0)
            | np.where(truncated, TRUNCATED, 0)
            | np.where(first, FIRST, 0)
            | np.where(last, LAST, 0)
            | back << BACK_SHIFT
        )
        self.chunk_version[envs, pos // CHUNK_ENTRIES] += 1
        self.cursor[envs] = (pos + 1) % self.ring_size
        self.count[envs] = np.minimum(self.count[envs] + 1, self.ring_size)

    def derive_back_bits(self) -> None:
        """Set every held entry's `back` bits from the `first` flags, walking each ring from its
        oldest entry (for saves of format 1, and for buffers filled by hand). An entry whose
        game began before the oldest held entry gets the cap; `_inspect` rejects it either way."""
        for e in range(self.num_envs):
            held = int(self.count[e])
            oldest = 0 if held < self.ring_size else int(self.cursor[e])
            order = (oldest + np.arange(held)) % self.ring_size
            flags = self.flags[e, order]
            seq = np.arange(held)
            latest_first = np.maximum.accumulate(np.where(flags & FIRST, seq, -self.stack))
            back = np.minimum(seq - latest_first, self.stack - 1)
            self.flags[e, order] = (flags & ((1 << BACK_SHIFT) - 1)) | (back << BACK_SHIFT).astype(np.uint8)

    # ------------------------------------------------------------------ sampling
    def sample(self, batch_size: int, beta: float = 1.0) -> Batch:
        """Uniform over valid transitions, by rejection (invalid ones are a small fraction:
        each game's last entry, the newest n entries, and the oldest few of a full ring).
        `beta` is for prioritized replay's weights; uniform sampling has none."""
        held = int(self.count.sum())
        if held < 2:
            raise ReplayError("replay holds too few transitions to sample from")
        # Draw exactly a batch; redraw only the invalid ones (usually none).
        candidate = self._inspect(*self._locate(self._draw(held, batch_size)))
        for _ in range(1000):
            invalid = np.flatnonzero(~candidate[0])
            if len(invalid) == 0:
                return self._assemble(*candidate[1:])
            redraw = self._inspect(*self._locate(self._draw(held, len(invalid))))
            for column, new in zip(candidate, redraw, strict=True):
                column[invalid] = new
        raise ReplayError("replay found no valid transitions to sample (too few complete steps stored)")

    def _draw(self, held: int, n: int) -> np.ndarray:
        # Uniform floats scaled to an index: a few times cheaper than Generator.integers for
        # small n, and exactly uniform up to 2^-53.
        return (self.rng.random(n) * held).astype(np.int64)

    def _locate(self, draw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Entry number among all held entries -> (env, age in its ring); env in proportion to
        how many entries it holds."""
        if self.num_envs == 1:
            return np.zeros(len(draw), dtype=np.int64), draw
        bounds = np.cumsum(self.count)
        env = np.searchsorted(bounds, draw, side="right")
        return env, draw - (bounds - self.count)[env]

    def _inspect(self, env: np.ndarray, age: np.ndarray):
        """For transitions starting at (env, age): whether every entry they read is still held,
        and (env, pos, flat index of p, steps, return, discount, back) for `_assemble`."""
        oldest = np.where(self.count < self.ring_size, 0, self.cursor)[env]
        pos = (oldest + age) % self.ring_size
        start = pos if self.num_envs == 1 else env * self.ring_size + pos  # index into the flat arrays
        flags = np.take(self._flat_flags, start)
        back = flags >> BACK_SHIFT
        steps, ret, discount = self._n_step_walk(env, pos, start, flags)
        # Back to the stack's oldest real frame, forward to the bootstrap state: all held.
        valid = (flags & LAST == 0) & (age + steps < self.count[env]) & (back <= age)
        return valid, env, pos, start, steps, ret, discount, back

    def _n_step_walk(self, env, pos, start, flags):
        """Steps k to the bootstrap state (1..n), the discounted sum of learning rewards, and
        gamma^k (0 if a learning terminal came first). `start` is p's flat index, `flags` its
        flags. Entries beyond the newest may be read; `_inspect` rejects any start that needed them."""
        gamma = np.float32(self.gamma)
        if self.n_step == 1:
            terminal = (flags & TERMINAL) != 0
            return (
                np.ones(len(env), dtype=np.int64),
                np.take(self._flat_rewards, start),
                np.where(terminal, np.float32(0), gamma),
            )
        walk = (env * self.ring_size)[:, None] + (pos[:, None] + np.arange(self.n_step)) % self.ring_size
        rewards = np.take(self._flat_rewards, walk)
        walk_flags = np.take(self._flat_flags, walk)
        steps = np.zeros(len(env), dtype=np.int64)
        ret = np.zeros(len(env), dtype=np.float32)
        discount = np.ones(len(env), dtype=np.float32)
        running = np.ones(len(env), dtype=bool)
        for j in range(self.n_step):
            # A `last` entry took no action: bootstrap from it. (A game's last entry normally
            # follows a terminal or truncation; after an abrupt end it follows nothing.)
            running &= (walk_flags[:, j] & LAST) == 0
            ret += np.where(running, discount * rewards[:, j], np.float32(0))
            steps += running
            ended = (walk_flags[:, j] & TERMINAL) != 0
            discount = np.where(running, np.where(ended, np.float32(0), discount * gamma), discount)
            running &= (walk_flags[:, j] & (TERMINAL | TRUNCATED)) == 0
        return steps, ret, discount

    def _assemble(self, env, pos, start, steps, ret, discount, back) -> Batch:
        # The window around p: entries p-(stack-1) .. p+n_step. Slots before the game's first
        # frame are padding: the first frame itself, or the zero frame after the rings.
        offsets = self._window_offsets
        if self.pad_with_first_frame:
            offsets = np.maximum(offsets, -back[:, None].astype(np.int64))
        index = (pos[:, None] + offsets) % self.ring_size
        if self.num_envs > 1:
            index += (env * self.ring_size)[:, None]
        if not self.pad_with_first_frame:  # back is uint8: add, never negate
            index[self._window_offsets + back[:, None] < 0] = self._zero_frame
        if self.n_step > 1:  # the stack and then the bootstrap state's stack, steps later
            next_slots = steps[:, None] + np.arange(self.stack)
            index = np.concatenate([index[:, : self.stack], index[np.arange(len(env))[:, None], next_slots]], axis=1)
        # else one window of stack + 1 entries holds both stacks, one entry apart
        window = self._gather(index)
        next_obs = window[:, 1:] if self.n_step == 1 else window[:, self.stack :]
        return Batch(
            obs=window[:, : self.stack],
            actions=np.take(self._flat_actions, start).astype(np.int64),
            rewards=ret,
            discounts=discount,
            next_obs=next_obs,
            env_index=env,
            position=pos,
        )

    def _gather(self, index: np.ndarray):
        """(B, slots, H, W) frames at the flat `index` (B, slots), where the frames are. The host
        has decided every slot; on a device only the indices travel (one small copy, from pinned
        memory and without blocking on a GPU), so no sampling rule is ever restated there."""
        frames = self._flat_frames
        if isinstance(frames, np.ndarray):
            return np.take(frames, index, axis=0)
        import torch

        flat_index = torch.from_numpy(index.reshape(-1))
        if frames.device.type == "cuda":
            flat_index = flat_index.pin_memory().to(frames.device, non_blocking=True)
        # index_select: a few times faster than advanced indexing for this gather on a CPU
        return frames.index_select(0, flat_index).view(*index.shape, *self.frame_shape)

    def update_priorities(self, envs, positions, losses) -> None:
        """Prioritized replay's hook after each update; uniform replay keeps no priorities (and
        so never reads the losses back from the device)."""

    # ------------------------------------------------------------------ saving
    def state_dict(self) -> dict:
        return {
            "cursor": self.cursor.tolist(),
            "count": self.count.tolist(),
            "game_starts": self.game_starts.tolist(),
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict) -> None:
        self.cursor[:] = state["cursor"]
        self.count[:] = state["count"]
        self.game_starts[:] = state["game_starts"]
        # Saves made while a second sampler drew on the frames' device also hold its stream
        # ("device_rng"); sampling now draws from `rng` alone, so that stream is not needed.
        self.rng.bit_generator.state = state["rng"]

    def save(self, directory: str | Path, reuse_from: str | Path | None = None) -> None:
        """Plain .npy files (no pickle) and a manifest with shapes, counters and CRC32s.

        Frame chunks whose contents did not change since the save in `reuse_from` are
        hard-linked from there instead of rewritten, so a checkpoint costs what changed; a chunk
        is linked only after its checksum is verified (a damaged file is written afresh from
        memory, never passed on). Chunks never written to are not saved at all."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        reuse_dir = Path(reuse_from) if reuse_from else None
        previous = None
        if reuse_dir:
            try:
                previous = _read_manifest(reuse_dir)
            except ReplayError:  # nothing to reuse from a damaged save: write every chunk
                previous = None
        files = {}
        for name in self.small_arrays:
            files[f"{name}.npy"] = _save_npy(directory / f"{name}.npy", getattr(self, name))
        chunks = {}
        for e in range(self.num_envs):
            for c in range(self.chunk_version.shape[1]):
                fname = f"frames_{e}_{c}.npy"
                version = int(self.chunk_version[e, c])
                if version == 0:  # all zeros, as a new buffer's memory is
                    continue
                old = previous and previous["chunks"].get(fname)
                if (
                    old
                    and reuse_dir
                    and old["version"] == version
                    and _intact(reuse_dir / fname, old["crc32"])
                    and _try_link(reuse_dir / fname, directory / fname)
                ):
                    files[fname] = old["crc32"]
                else:
                    part = _to_numpy(self.frames[e, c * CHUNK_ENTRIES : (c + 1) * CHUNK_ENTRIES])
                    files[fname] = _save_npy(directory / fname, part)
                chunks[fname] = {"version": version, "crc32": files[fname]}
        manifest = {
            "format": SAVE_FORMAT,
            "capacity": self.capacity,
            "num_envs": self.num_envs,
            "ring_size": self.ring_size,
            "frame_shape": list(self.frame_shape),
            "stack": self.stack,
            "n_step": self.n_step,
            "gamma": self.gamma,
            "chunk_entries": CHUNK_ENTRIES,
            "state": self.state_dict(),
            "files": {k: v for k, v in files.items() if not k.startswith("frames_")},
            "chunks": chunks,
        }
        _write_json(directory / "manifest.json", manifest)

    def load(self, directory: str | Path, leave_out_damaged: bool = False) -> int:
        """Restore contents saved by `save`; any missing, truncated or altered file is refused
        (DamagedFrames where only frame chunks are). With `leave_out_damaged`, damaged frame
        chunks load as zeros and every transition that would read one of their frames is left out
        of sampling (`leave_out_chunk`). Returns how many entries were left out."""
        directory = Path(directory)
        manifest = _read_manifest(directory)
        if manifest.get("format") not in (1, SAVE_FORMAT):
            raise ReplayError(
                f"replay in {directory} has format {manifest.get('format')}; this version reads 1 and {SAVE_FORMAT}"
            )
        expected = {
            "num_envs": self.num_envs,
            "ring_size": self.ring_size,
            "frame_shape": list(self.frame_shape),
            "stack": self.stack,
        }
        for key, value in expected.items():
            if manifest.get(key) != value:
                raise ReplayError(f"replay in {directory} has {key}={manifest.get(key)}, this run needs {value}")
        for name in self.small_arrays:
            if f"{name}.npy" not in manifest["files"]:
                raise ReplayError(f"replay in {directory} has no {name}.npy (saved by another kind of replay)")
            array = _load_npy(directory / f"{name}.npy", manifest["files"][f"{name}.npy"])
            getattr(self, name)[...] = array
        # Chunks the save left out were never written: zeros. Only chunks this buffer has
        # written are cleared, so loading into a new buffer touches no page it does not fill.
        for e, c in zip(*np.nonzero(self.chunk_version), strict=True):
            if f"frames_{e}_{c}.npy" not in manifest["chunks"]:
                self.frames[e, c * CHUNK_ENTRIES : (c + 1) * CHUNK_ENTRIES] = 0
                self.chunk_version[e, c] = 0
        damaged: list[tuple[int, int, str]] = []
        for fname, info in manifest["chunks"].items():
            e, c = (int(x) for x in fname[len("frames_") : -len(".npy")].split("_"))
            self.chunk_version[e, c] = info["version"]
            try:
                part = _load_npy(directory / fname, info["crc32"])
            except ReplayError as err:
                damaged.append((e, c, str(err)))
                self.frames[e, c * CHUNK_ENTRIES : (c + 1) * CHUNK_ENTRIES] = 0
                continue
            if not isinstance(self.frames, np.ndarray):
                part = _to_tensor(part, self.frames.device)
            self.frames[e, c * CHUNK_ENTRIES : (c + 1) * CHUNK_ENTRIES] = part
        if damaged and not leave_out_damaged:
            more = f" (and {len(damaged) - 1} more damaged frame chunks)" if len(damaged) > 1 else ""
            raise DamagedFrames(damaged[0][2] + more)
        self.load_state_dict(manifest["state"])
        if manifest["format"] == 1:
            self.derive_back_bits()
        return sum(self.leave_out_chunk(e, c) for e, c, _ in damaged)

    def leave_out_chunk(self, env: int, chunk: int) -> int:
        """Make every transition that reads a frame of this chunk unsampleable; returns how many
        held entries that marks. The entries from one before the chunk to stack-1 after it get
        the `last` bit: none of them starts a transition any more (the one before the chunk stays
        a state to bootstrap from, so n-step walks running into the chunk stop there, with the
        discount of the steps they took), and stacks after them reach back no further than the
        chunk's end. New writes clear the marks as the ring passes."""
        first = chunk * CHUNK_ENTRIES
        end = min(first + CHUNK_ENTRIES, self.ring_size)
        positions = np.arange(first - 1, end + self.stack - 1) % self.ring_size
        oldest = 0 if self.count[env] < self.ring_size else int(self.cursor[env])
        positions = positions[(positions - oldest) % self.ring_size < self.count[env]]  # held ones
        self.flags[env, positions] |= LAST
        return len(positions)


def _to_tensor(array: np.ndarray, device):
    import torch

    return torch.from_numpy(np.ascontiguousarray(array)).to(device)


def _to_numpy(frames) -> np.ndarray:
    return frames if isinstance(frames, np.ndarray) else frames.cpu().numpy()


def write_synced(path: Path, write) -> int:
    """Write a new file with `write(f)`, fsync it, and return its CRC32. An existing name is
    unlinked first, never written through: it may be a hard link shared with an older save."""
    path.unlink(missing_ok=True)
    with open(path, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    return crc_of_file(path)


def _save_npy(path: Path, array: np.ndarray) -> int:
    array = np.ascontiguousarray(array)
    return write_synced(path, lambda f: np.lib.format.write_array(f, array, allow_pickle=False))


def crc_of_file(path: Path) -> int:
    """CRC32 of a file, read in 16 MB blocks: detects truncated or altered files."""
    crc = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            crc = zlib.crc32(block, crc)
    return crc


def _load_npy(path: Path, crc: int) -> np.ndarray:
    if not path.is_file():
        raise ReplayError(f"replay file {path} is missing")
    if crc_of_file(path) != crc:
        raise ReplayError(f"replay file {path} is corrupt (checksum mismatch): truncated or altered")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as err:
        raise ReplayError(f"replay file {path} is unreadable: {err}") from None


def _intact(path: Path, crc: int) -> bool:
    try:
        return crc_of_file(path) == crc
    except OSError:
        return False


def _try_link(src: Path, dst: Path) -> bool:
    try:
        os.link(src, dst)
        return True
    except OSError:  # another filesystem, or the source is gone: write it instead
        return False


def _write_json(path: Path, data: dict) -> None:
    write_synced(path, lambda f: f.write(json.dumps(data).encode()))


def _read_manifest(directory: Path) -> dict:
    path = directory / "manifest.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ReplayError(f"replay manifest {path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ReplayError(f"replay manifest {path} is corrupt") from None
