"""The pixel pipeline on real ALE games (Pong, Breakout, SpaceInvaders); no emulator mocks."""

import hashlib

import cv2
import numpy as np
import pytest
from ale_py.env import AtariEnv
from gymnasium.utils.env_checker import check_env

from dqn_atari.envs import make_env, make_vector_env


def test_observations_are_uint8_stacks_newest_last_zero_padded():
    env = make_env("Pong")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert not obs[:3].any() and obs[3].any()  # zeros before the game's first frame
    obs2, *_ = env.step(0)
    np.testing.assert_array_equal(obs2[2], obs[3])  # the old newest moved one slot older
    assert not obs2[:2].any()


def test_gymnasium_check_env_passes():
    check_env(make_env("Breakout"), skip_render_check=True)


def test_max_pooling_of_last_two_frames_matches_frames_taken_from_the_emulator():
    env = make_env("Breakout", noop_max=0, fire_reset=False)
    raw = AtariEnv(game="breakout", obs_type="grayscale", frameskip=1, repeat_action_probability=0.0)
    env.reset(seed=3)
    raw.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(60):
        a = int(rng.integers(0, 4))
        obs, *_ = env.step(a)
        frames = [raw.step(a)[0] for _ in range(4)]
        expected = cv2.resize(np.maximum(frames[2], frames[3]), (84, 84), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(obs[-1], expected)


def test_processed_frame_is_pinned():
    """A silent change in preprocessing (resize method, pooling, palette) changes this hash."""
    env = make_env("Pong", noop_max=0)
    env.reset(seed=0)
    for a in [2, 3, 2, 2, 3, 0, 1, 2] * 10:
        obs, *_ = env.step(a)
    digest = hashlib.sha256(obs.tobytes()).hexdigest()[:16]
    assert digest == PINNED_PONG_STACK


PINNED_PONG_STACK = "818083bd01a6a7a4"


@pytest.mark.e2e
def test_noop_starts_are_random_within_range_and_seeded():
    env = make_env("Pong", noop_max=30, fire_reset=False)
    counts = []
    for seed in range(40):
        _, info = env.reset(seed=seed)
        counts.append(info["noops"])
        assert info["episode_frame_number"] == info["noops"]
    assert min(counts) >= 1 and max(counts) <= 30 and len(set(counts)) > 10
    assert env.reset(seed=5)[1]["noops"] == env.reset(seed=5)[1]["noops"]


def test_fire_reset_presses_fire_for_one_frame_in_games_that_need_it():
    with_fire = make_env("Breakout", noop_max=0)
    without = make_env("Breakout", noop_max=0, fire_reset=False)
    assert with_fire.reset(seed=0)[1]["episode_frame_number"] == 1
    assert without.reset(seed=0)[1]["episode_frame_number"] == 0


@pytest.mark.parametrize("backend", ["gymnasium", "ale_vector"])
def test_life_loss_is_a_learning_terminal_while_the_game_and_raw_score_continue(backend):
    envs = make_vector_env("Breakout", 1, backend=backend, noop_max=0)
    envs.reset(seed=0)
    rng = np.random.default_rng(1)
    life_losses, raw_total = 0, 0.0
    while True:
        step = envs.step(rng.integers(0, 4, 1))
        raw_total += step.reward[0]
        if step.life_loss[0]:
            life_losses += 1
            assert step.learning_terminal[0] and not step.terminated[0]
        if step.finished_games:
            break
    assert life_losses == 4  # five lives: four losses mid-game, the fifth is game over
    assert step.terminated[0] and step.learning_terminal[0]
    assert step.finished_games[0].score == raw_total  # the whole game, not the last life


def test_life_loss_terminal_can_be_switched_off():
    envs = make_vector_env("Breakout", 1, noop_max=0, terminal_on_life_loss=False)
    envs.reset(seed=0)
    rng = np.random.default_rng(1)
    while True:
        step = envs.step(rng.integers(0, 4, 1))
        if step.life_loss[0]:
            assert not step.learning_terminal[0]
            break


def test_reward_is_sign_clipped_for_learning_only():
    envs = make_vector_env("SpaceInvaders", 2, noop_max=0)
    envs.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(3000):
        step = envs.step(rng.integers(0, 6, 2))
        np.testing.assert_array_equal(step.learning_reward, np.sign(step.reward))
        if (step.reward > 1).any():
            break
    assert (step.reward > 1).any(), "SpaceInvaders gives 5+ points per invader"
    assert step.learning_reward.max() == 1.0


def test_both_backends_give_identical_observation_streams():
    """Same protocol, same start (no random no-ops), same actions: byte-identical stacks,
    rewards and ends, on both of ale-py's code paths."""
    streams = {}
    for backend in ("gymnasium", "ale_vector"):
        envs = make_vector_env("Pong", 2, backend=backend, noop_max=0)
        obs = [envs.reset(seed=0)]
        rng = np.random.default_rng(0)
        rewards = []
        for a in rng.integers(0, 6, size=(400, 2)):
            step = envs.step(a)
            obs.append(step.obs)
            rewards.append(step.reward)
        streams[backend] = (np.stack(obs), np.stack(rewards))
    np.testing.assert_array_equal(streams["gymnasium"][0], streams["ale_vector"][0])
    np.testing.assert_array_equal(streams["gymnasium"][1], streams["ale_vector"][1])


@pytest.mark.parametrize("backend", ["gymnasium", "ale_vector"])
def test_time_limit_truncates_bootstrappably_and_gives_the_final_stack(backend):
    envs = make_vector_env("Pong", 1, backend=backend, noop_max=0, max_episode_frames=400)
    obs = envs.reset(seed=0)
    for t in range(100):
        step = envs.step(np.array([0]))
        if t < 99:
            assert not (step.truncated[0] or step.terminated[0])
            obs = step.obs
    assert step.truncated[0] and not step.terminated[0] and not step.learning_terminal[0]
    np.testing.assert_array_equal(step.next_obs[0, :3], obs[0, 1:])  # the ended game's last stack
    assert not step.obs[0, :3].any()  # while obs is already the new game's first stack
    assert step.finished_games[0].length_steps == 100


CLEANRL_STACKS = dict(frame_stack_padding="first_frame", frame_stack_restart_on_life_loss=True)


@pytest.mark.parametrize("fire_on_life_loss", [True, False])
def test_fire_on_life_loss_serves_the_ball_without_the_agent_pressing_fire(fire_on_life_loss):
    """Breakout waits for FIRE after each lost life. The agent here only ever plays NOOP: with
    the setting on the ball keeps being served and all five lives go; without it, one."""
    envs = make_vector_env("Breakout", 1, noop_max=0, fire_on_life_loss=fire_on_life_loss, **CLEANRL_STACKS)
    envs.reset(seed=0)
    life_losses = 0
    for _ in range(3000):
        step = envs.step(np.array([0]))
        life_losses += int(step.life_loss[0])
        if step.finished_games:
            break
    if fire_on_life_loss:
        assert step.finished_games and life_losses == 4
    else:
        assert not step.finished_games and life_losses == 1


@pytest.mark.parametrize("padding", ["zeros", "first_frame"])
def test_new_stacks_are_padded_as_configured(padding):
    obs, _ = make_env("Breakout", frame_stack_padding=padding).reset(seed=0)
    expected_pad = obs[3] if padding == "first_frame" else np.zeros_like(obs[3])
    for slot in range(3):
        np.testing.assert_array_equal(obs[slot], expected_pad)


def test_life_loss_restarts_the_stack_and_hands_over_the_stack_that_ended():
    envs = make_vector_env("Breakout", 1, noop_max=0, fire_on_life_loss=True, **CLEANRL_STACKS)
    obs = envs.reset(seed=0)
    while True:
        step = envs.step(np.array([0]))
        if step.life_loss[0]:
            break
        obs = step.obs
    assert step.stack_ends[0] and step.learning_terminal[0] and not step.terminated[0]
    np.testing.assert_array_equal(step.next_obs[0, :3], obs[0, 1:])  # the old stack, one frame on
    new = step.obs[0]
    for slot in range(3):  # a fresh stack: the first frame repeated
        np.testing.assert_array_equal(new[slot], new[3])
    assert not np.array_equal(new[3], step.next_obs[0, 3])  # NOOP, FIRE, 2 were played in between


@pytest.mark.parametrize(
    "conventions",
    [dict(), dict(fire_on_life_loss=True, **CLEANRL_STACKS)],
    ids=["deepmind", "cleanrl"],
)
def test_replay_rebuilds_the_stacks_the_agent_acted_on_in_breakout(conventions):
    """Real Breakout with life losses and game overs: every sampled obs and next_obs equals the
    stacks the env gave, under each convention."""
    from dqn_atari.replay import ReplayBuffer

    envs = make_vector_env("Breakout", 1, noop_max=0, **conventions)
    buf = ReplayBuffer(5000, 1, stack=4, seed=0, padding=conventions.get("frame_stack_padding", "zeros"))
    rng = np.random.default_rng(0)
    obs = envs.reset(seed=0)
    acted_on, next_states, restarts = [], [], 0
    for _ in range(1500):
        step = envs.step(rng.integers(0, 4, 1))
        buf.add(
            obs,
            np.zeros(1, np.int64),
            step.learning_reward,
            step.learning_terminal,
            step.truncated,
            step.stack_ends,
            step.next_obs,
        )
        acted_on.append(obs[0])
        next_states.append(step.next_obs[0])
        if step.stack_ends[0]:
            restarts += 1
            acted_on.append(None)  # the `last` entry
            next_states.append(None)
        obs = step.obs
    assert restarts >= 5
    for _ in range(20):
        batch = buf.sample(64)
        for i, p in enumerate(batch.position):
            np.testing.assert_array_equal(batch.obs[i], acted_on[p])
            np.testing.assert_array_equal(batch.next_obs[i], next_states[p])
