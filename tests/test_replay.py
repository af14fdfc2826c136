"""Replay: every sampled transition equals, byte for byte, a brute-force reference built from the
same stream of acting stacks, across game starts, life losses, truncations, wrap-around,
interleaved envs, both stack paddings, stacks restarted at life loss, and games ended abruptly
(a resume that could not restore the emulators)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import FRAME, STACK, STORAGES, Stream, on_host

from dqn_atari.replay import ReplayBuffer, ReplayError


@pytest.mark.parametrize("frames_device", STORAGES)
@pytest.mark.parametrize(
    "num_envs,capacity,n_step,padding,restart,abrupt_every",
    [
        (1, 40, 1, "zeros", False, 0),
        (3, 60, 1, "zeros", False, 0),
        (4, 200, 3, "zeros", False, 0),
        (2, 26, 2, "zeros", False, 0),
        (3, 90, 3, "zeros", False, 37),  # abrupt ends (an ale_vector resume) with n-step walks
        (1, 40, 1, "first_frame", True, 0),  # Baselines/CleanRL stacks
        (3, 120, 3, "first_frame", True, 41),
        # The smallest rings n = 3 allows (stack + n_step + 1 = 8 entries) and a few more: every
        # entry is overwritten about 75 times, so stacks and n-step windows meet the write cursor,
        # game starts and abrupt ends in every combination.
        (3, 24, 3, "zeros", False, 0),
        (3, 24, 3, "zeros", False, 29),
        (3, 30, 3, "first_frame", True, 23),
        (3, 36, 3, "zeros", True, 31),
        (3, 60, 3, "zeros", False, 17),
    ],
)
def test_samples_match_brute_force_reference_after_every_add(
    num_envs, capacity, n_step, padding, restart, abrupt_every, frames_device
):
    rng = np.random.default_rng(num_envs * 100 + capacity)
    gamma = 0.9
    buf = ReplayBuffer(
        capacity,
        num_envs,
        frame_shape=FRAME,
        stack=STACK,
        n_step=n_step,
        gamma=gamma,
        seed=1,
        frames_device=frames_device,
        padding=padding,
    )
    stream = Stream(num_envs, rng, gamma, n_step, padding, restart)
    ring = buf.ring_size
    sampled_positions = set()
    for step in range(600):
        if abrupt_every and step % abrupt_every == abrupt_every - 1:
            stream.end_abruptly(buf)
        stream.step(buf)
        try:  # from the first add on: a nearly empty replay is where rejection is tested hardest
            b = buf.sample(16)
        except ReplayError:
            assert not stream.valid_transitions(ring), f"sampling refused while transitions were valid (step {step})"
            continue
        for i in range(16):
            e, p = int(b.env_index[i]), int(b.position[i])
            ref = stream.reference(e, p, ring)
            assert ref is not None, f"sampled an entry with no transition (env {e}, pos {p}, step {step})"
            assert ref["held"], f"sampled a stack whose frames were overwritten (env {e}, pos {p})"
            np.testing.assert_array_equal(on_host(b.obs[i]), ref["obs"])
            np.testing.assert_array_equal(on_host(b.next_obs[i]), ref["next_obs"])
            assert b.actions[i] == ref["action"]
            assert b.rewards[i] == pytest.approx(ref["ret"], abs=1e-6)
            assert b.discounts[i] == pytest.approx(ref["discount"], abs=1e-6)
            sampled_positions.add((e, p))
    # Over the whole stream, sampling reached every env and many positions (not a stuck corner).
    assert {e for e, _ in sampled_positions} == set(range(num_envs))
    assert len(sampled_positions) > 0.5 * ring * num_envs


@pytest.mark.parametrize("frames_device", STORAGES[1:])
@pytest.mark.parametrize("padding", ["zeros", "first_frame"])
def test_frames_on_a_device_sample_exactly_what_host_frames_sample(frames_device, padding):
    """The same stream and seed: the same transitions, whatever holds the frames."""
    rng_host, rng_device = np.random.default_rng(5), np.random.default_rng(5)
    kwargs = dict(frame_shape=FRAME, stack=STACK, n_step=3, gamma=0.9, seed=11, padding=padding)
    host = ReplayBuffer(36, 3, **kwargs)
    device = ReplayBuffer(36, 3, frames_device=frames_device, **kwargs)
    streams = Stream(3, rng_host, 0.9, 3, padding), Stream(3, rng_device, 0.9, 3, padding)
    for step in range(300):
        streams[0].step(host)
        streams[1].step(device)
        if step < 10:
            continue
        a, b = host.sample(32), device.sample(32)
        for field in ("obs", "next_obs", "actions", "rewards", "discounts", "env_index", "position"):
            np.testing.assert_array_equal(on_host(getattr(a, field)), on_host(getattr(b, field)), err_msg=field)


@pytest.mark.parametrize("frames_device", STORAGES)
def test_every_valid_transition_can_be_sampled_and_no_invalid_one_is(frames_device):
    rng = np.random.default_rng(7)
    buf = ReplayBuffer(30, 2, frame_shape=FRAME, stack=STACK, n_step=2, gamma=0.5, seed=3, frames_device=frames_device)
    stream = Stream(2, rng, 0.5, 2)
    for _ in range(77):  # wrapped twice and a bit
        stream.step(buf)
    expected = stream.valid_transitions(buf.ring_size)
    seen = set()
    for _ in range(300):
        b = buf.sample(32)
        seen.update(zip(b.env_index.tolist(), b.position.tolist(), strict=True))
    assert seen == expected


def test_n_step_return_hand_computed():
    """Rewards 1, 2, 4 then a life loss: from the first entry with n=3, gamma=0.5:
    1 + 0.5*2 + 0.25*4 = 3 and the terminal zeroes the bootstrap."""
    buf = ReplayBuffer(16, 1, frame_shape=FRAME, stack=STACK, n_step=3, gamma=0.5, seed=0)
    frames = [np.full((1, STACK, *FRAME), i, np.uint8) for i in range(8)]
    rewards = [1.0, 2.0, 4.0, 8.0, 0.0]
    terminal = [False, False, True, False, False]
    for t in range(5):
        buf.add(
            frames[t],
            np.array([t % 3]),
            np.array([rewards[t]]),
            np.array([terminal[t]]),
            np.array([False]),
            np.array([False]),
            frames[t + 1],
        )
    env, pos = np.array([0, 0, 0]), np.array([0, 1, 3])
    valid, _, _, _, steps, ret, discount, _ = buf._inspect(env, pos)
    assert valid.tolist() == [True, True, False]  # entry 3 needs entries 4..6, unwritten
    assert ret[0] == pytest.approx(1 + 0.5 * 2 + 0.25 * 4)
    assert discount[0] == 0.0  # the life loss at entry 2 cut the return
    assert steps[0] == 3
    assert ret[1] == pytest.approx(2 + 0.5 * 4)
    assert steps[1] == 2


def test_n_step_walk_stops_at_a_game_ended_abruptly():
    """The case found by an independent check: n=3, gamma=0.5, rewards 1 on entries 1-4, the game
    lost at a resume (ale_vector), then a new game with reward 10. The transition from entry 3
    earns 1 and bootstraps from entry 4's stack [1, 2, 3, 4], not 4.0 and [3, 4, 101, 102]."""
    buf = ReplayBuffer(32, 1, frame_shape=FRAME, stack=STACK, n_step=3, gamma=0.5, seed=0)
    stack = np.zeros((1, STACK, *FRAME), np.uint8)

    def push(frame_value, reward):
        nonlocal stack
        nxt = np.concatenate([stack[:, 1:], np.full((1, 1, *FRAME), frame_value + 1, np.uint8)], axis=1)
        buf.add(stack, np.array([0]), np.array([reward]), np.array([False]), np.array([False]), np.array([False]), nxt)
        stack = nxt

    stack[0, -1] = 1
    for frame_value in (1, 2, 3):
        push(frame_value, 1.0)
    # entry 3 (frame 4) is written by the next add; then the game is lost
    buf.add(stack, np.array([0]), np.array([1.0]), np.array([False]), np.array([False]), np.array([False]), stack)
    buf.end_games_abruptly()
    stack = np.zeros((1, STACK, *FRAME), np.uint8)
    stack[0, -1] = 101
    for frame_value in (101, 102, 103, 104):
        push(frame_value, 10.0)
    valid, env, pos, start, steps, ret, discount, back = buf._inspect(np.array([0]), np.array([2]))
    assert valid[0] and steps[0] == 1 and ret[0] == 1.0 and discount[0] == 0.5
    batch = buf._assemble(env, pos, start, steps, ret, discount, back)
    assert batch.next_obs[0][:, 0, 0].tolist() == [1, 2, 3, 4]


def test_truncation_bootstraps_from_the_real_final_frame():
    buf = ReplayBuffer(16, 1, frame_shape=FRAME, stack=STACK, n_step=1, gamma=0.9, seed=0)
    obs = np.zeros((1, STACK, *FRAME), np.uint8)
    obs[0, -1] = 5
    final = np.zeros_like(obs)
    final[0, -2] = 5
    final[0, -1] = 6
    buf.add(obs, np.array([1]), np.array([1.0]), np.array([False]), np.array([True]), np.array([True]), final)
    b = buf.sample(4)
    np.testing.assert_array_equal(b.next_obs[0], final[0])
    assert b.discounts[0] == pytest.approx(0.9)  # truncation: bootstrap, not zero


@pytest.mark.parametrize("frames_device", STORAGES)
def test_save_load_gives_identical_samples(tmp_path, frames_device):
    rng = np.random.default_rng(0)
    buf = ReplayBuffer(50, 2, frame_shape=FRAME, stack=STACK, n_step=2, gamma=0.9, seed=5, frames_device=frames_device)
    stream = Stream(2, rng, 0.9, 2)
    for _ in range(70):
        stream.step(buf)
    buf.save(tmp_path / "r")
    # another seed: the sampling streams come back with the save
    copy = ReplayBuffer(
        50, 2, frame_shape=FRAME, stack=STACK, n_step=2, gamma=0.9, seed=999, frames_device=frames_device
    )
    copy.load(tmp_path / "r")
    for _ in range(5):
        a, b = buf.sample(32), copy.sample(32)
        for field in ("obs", "next_obs", "actions", "rewards", "discounts", "position"):
            np.testing.assert_array_equal(on_host(getattr(a, field)), on_host(getattr(b, field)))


def test_format_1_save_without_back_bits_loads_to_identical_samples(tmp_path):
    """Saves made before the `back` bits existed (format 1, e.g. a run being resumed) get them
    rebuilt from the `first` flags on load, including in a ring that has wrapped."""
    import json

    from dqn_atari.replay import BACK_SHIFT, crc_of_file

    buf = ReplayBuffer(40, 2, frame_shape=FRAME, stack=STACK, n_step=2, gamma=0.9, seed=5)
    stream = Stream(2, np.random.default_rng(3), 0.9, 2)
    for _ in range(130):  # wrapped several times
        stream.step(buf)
    buf.save(tmp_path / "r")
    flags_file = tmp_path / "r" / "flags.npy"
    np.save(flags_file, np.load(flags_file) & ((1 << BACK_SHIFT) - 1))
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    manifest["format"] = 1
    manifest["files"]["flags.npy"] = crc_of_file(flags_file)
    (tmp_path / "r" / "manifest.json").write_text(json.dumps(manifest))

    copy = ReplayBuffer(40, 2, frame_shape=FRAME, stack=STACK, n_step=2, gamma=0.9, seed=999)
    copy.load(tmp_path / "r")
    for _ in range(5):
        a, b = buf.sample(32), copy.sample(32)
        for field in ("obs", "next_obs", "actions", "rewards", "discounts", "position"):
            np.testing.assert_array_equal(on_host(getattr(a, field)), getattr(b, field))


@pytest.mark.parametrize("frames_device", STORAGES)
def test_a_save_holding_a_device_sampling_stream_loads_and_samples_as_before(tmp_path, frames_device):
    """Saves from when the frames' device had a sampler of its own also hold its generator's
    state ("device_rng"): they load, and sampling continues from the host stream saved beside it."""
    import json

    buf = ReplayBuffer(40, 2, frame_shape=FRAME, stack=STACK, n_step=3, gamma=0.9, seed=5, frames_device=frames_device)
    stream = Stream(2, np.random.default_rng(8), 0.9, 3)
    for _ in range(90):
        stream.step(buf)
    buf.save(tmp_path / "r")
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    manifest["state"]["device_rng"] = list(range(16))
    (tmp_path / "r" / "manifest.json").write_text(json.dumps(manifest))
    copy = ReplayBuffer(40, 2, frame_shape=FRAME, stack=STACK, n_step=3, gamma=0.9, seed=9, frames_device=frames_device)
    copy.load(tmp_path / "r")
    for _ in range(3):
        a, b = buf.sample(32), copy.sample(32)
        for field in ("obs", "next_obs", "actions", "rewards", "discounts", "position"):
            np.testing.assert_array_equal(on_host(getattr(a, field)), on_host(getattr(b, field)))


@pytest.fixture
def small_chunks(monkeypatch):
    """Frame chunks of 8 entries, so that the 64-entry rings of `filled` save as 8 chunks."""
    import dqn_atari.replay as replay

    monkeypatch.setattr(replay, "CHUNK_ENTRIES", 8)


def filled(steps: int, seed: int = 1) -> tuple[ReplayBuffer, Stream]:
    """A 64-entry, 1-env buffer after `steps` steps of a random stream."""
    buf = ReplayBuffer(64, 1, frame_shape=FRAME, stack=STACK, seed=0)
    stream = Stream(1, np.random.default_rng(seed), 0.9, 1)
    for _ in range(steps):
        stream.step(buf)
    return buf, stream


def test_incremental_save_links_unchanged_chunks(tmp_path, small_chunks):
    buf, stream = filled(30)
    buf.save(tmp_path / "a")
    for _ in range(3):
        stream.step(buf)
    buf.save(tmp_path / "b", reuse_from=tmp_path / "a")
    linked = [f.name for f in (tmp_path / "b").glob("frames_*.npy") if f.stat().st_nlink == 2]
    assert "frames_0_0.npy" in linked and "frames_0_1.npy" in linked  # untouched since save a
    copy = ReplayBuffer(64, 1, frame_shape=FRAME, stack=STACK, seed=0)
    copy.load(tmp_path / "b")
    np.testing.assert_array_equal(copy.frames, buf.frames)


@pytest.mark.parametrize("damage", ["truncate", "alter", "remove"])
def test_corrupt_save_is_refused(tmp_path, damage):
    buf = ReplayBuffer(40, 1, frame_shape=FRAME, stack=STACK, seed=0)
    stream = Stream(1, np.random.default_rng(2), 0.9, 1)
    for _ in range(20):
        stream.step(buf)
    buf.save(tmp_path / "r")
    target = tmp_path / "r" / "frames_0_0.npy"
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:-10])
    elif damage == "alter":
        data = bytearray(target.read_bytes())
        data[-1] ^= 0xFF
        target.write_bytes(bytes(data))
    else:
        target.unlink()
    with pytest.raises(ReplayError, match="frames_0_0.npy"):
        ReplayBuffer(40, 1, frame_shape=FRAME, stack=STACK).load(tmp_path / "r")


def test_refuses_capacity_beyond_available_memory():
    with pytest.raises(ReplayError, match=r"needs [\d,]+ bytes but only [\d,]+ are available"):
        ReplayBuffer(10**12)


def test_a_damaged_chunk_is_written_afresh_not_linked(tmp_path, small_chunks):
    """A chunk whose file went bad since the last save must not be hard-linked into the next
    one: the new save would be born corrupt."""
    buf, stream = filled(30)
    buf.save(tmp_path / "a")
    damaged = tmp_path / "a" / "frames_0_0.npy"
    data = bytearray(damaged.read_bytes())
    data[-1] ^= 0xFF
    damaged.write_bytes(bytes(data))
    stream.step(buf)
    buf.save(tmp_path / "b", reuse_from=tmp_path / "a")
    assert (tmp_path / "b" / "frames_0_0.npy").stat().st_nlink == 1
    assert (tmp_path / "b" / "frames_0_1.npy").stat().st_nlink == 2  # intact chunks still linked
    copy = ReplayBuffer(64, 1, frame_shape=FRAME, stack=STACK, seed=0)
    copy.load(tmp_path / "b")
    np.testing.assert_array_equal(copy.frames, buf.frames)


def test_chunks_never_written_are_not_saved_and_load_as_zeros(tmp_path, small_chunks):
    """A short run with a large replay saves what it wrote, not the whole empty ring."""
    buf, _ = filled(20)  # the first few chunks written, the rest of the ring never
    buf.save(tmp_path / "r")
    written = {f"frames_0_{c}.npy" for c in np.nonzero(buf.chunk_version[0])[0]}
    assert 0 < len(written) < buf.chunk_version.shape[1]
    assert {f.name for f in (tmp_path / "r").glob("frames_*.npy")} == written
    reused, _ = filled(60, seed=9)  # every chunk of this buffer written: the load must clear the extra ones
    reused.load(tmp_path / "r")
    np.testing.assert_array_equal(reused.frames, buf.frames)
    for _ in range(3):
        a, b = buf.sample(16), reused.sample(16)
        np.testing.assert_array_equal(a.obs, b.obs)
        np.testing.assert_array_equal(a.next_obs, b.next_obs)


@pytest.mark.parametrize("prioritized", [False, True], ids=["uniform", "prioritized"])
def test_a_damaged_frame_chunk_is_refused_or_left_out_and_then_never_read(tmp_path, monkeypatch, prioritized):
    """A chunk that fails its checksum: a plain load refuses it; a load that leaves it out
    samples only transitions whose frames are all intact, and still draws from the rest. The
    stacks pad with the first frame and every stored frame has a non-zero byte, so an all-zero
    frame in a sample can only be a damaged one."""
    import dqn_atari.replay as replay
    from dqn_atari.prioritized_replay import PrioritizedReplayBuffer

    monkeypatch.setattr(replay, "CHUNK_ENTRIES", 16)
    kind = PrioritizedReplayBuffer if prioritized else ReplayBuffer

    def make():
        return kind(64, 1, frame_shape=FRAME, stack=STACK, n_step=3, gamma=0.9, seed=0, padding="first_frame")

    buf, stream = make(), Stream(1, np.random.default_rng(4), 0.9, 3, padding="first_frame")
    for _ in range(100):  # the ring of 64 has wrapped
        stream.step(buf)
    buf.save(tmp_path / "r")
    chunk = tmp_path / "r" / "frames_0_1.npy"  # ring positions 16..31
    data = bytearray(chunk.read_bytes())
    data[-1] ^= 0xFF
    chunk.write_bytes(bytes(data))

    with pytest.raises(replay.DamagedFrames, match="frames_0_1.npy"):
        make().load(tmp_path / "r")
    salvaged = make()
    # the chunk, the entry before it, and the STACK-1 entries whose stacks reach back into it
    assert salvaged.load(tmp_path / "r", leave_out_damaged=True) == 16 + 1 + STACK - 1
    drawn = set()
    for _ in range(300):
        b = salvaged.sample(16)
        for i in range(16):
            for stack in (b.obs[i], b.next_obs[i]):
                frames_intact = (stack.reshape(STACK, -1).max(axis=1) > 0).all()
                assert frames_intact, f"read a damaged frame (position {b.position[i]})"
            np.testing.assert_array_equal(b.obs[i], stream.reference(0, int(b.position[i]), 64)["obs"])
            drawn.add(int(b.position[i]))
    assert not drawn & set(range(15, 32 + STACK - 1))
    assert len(drawn) > 30  # most of the 44 other entries still start transitions
