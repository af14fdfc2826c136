"""Prioritized replay: the sum tree, sampling in proportion to priority^alpha, importance
weights, new transitions at the largest priority, zero probability for entries that cannot start
a transition (across wrap-around, game ends and abrupt ends), and exact samples."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import FRAME, STACK, STORAGES, Stream, on_host

from dqn_atari.prioritized_replay import PRIORITY_EPSILON, PrioritizedReplayBuffer, SumTree


def test_sum_tree_finds_the_leaf_whose_prefix_interval_holds_each_target():
    rng = np.random.default_rng(0)
    tree = SumTree(37)
    values = rng.random(37) * (rng.random(37) > 0.3)
    tree.set(np.arange(37), values)
    tree.set(np.array([5, 5, 9]), np.array([0.0, 2.5, 0.0]))  # repeated index: the last value wins
    values[5], values[9] = 2.5, 0.0
    assert tree.total == pytest.approx(values.sum())
    targets = rng.random(5000) * values.sum()
    expected = np.searchsorted(np.cumsum(values), targets, side="right")
    np.testing.assert_array_equal(tree.find(targets), expected)
    rebuilt = SumTree(37)
    rebuilt.set_all(values)
    np.testing.assert_allclose(rebuilt.nodes, tree.nodes)


def filled(capacity=64, num_envs=2, n_step=3, steps=50, seed=0, alpha=0.5):
    buf = PrioritizedReplayBuffer(
        capacity, num_envs, frame_shape=FRAME, stack=STACK, n_step=n_step, gamma=0.9, seed=seed, alpha=alpha
    )
    stream = Stream(num_envs, np.random.default_rng(seed), 0.9, n_step)
    for _ in range(steps):
        stream.step(buf)
    return buf, stream


def drawable(buf):
    return [tuple(x) for x in np.argwhere(buf.priorities > 0)]


def test_sampling_frequencies_are_proportional_to_priority_to_the_alpha():
    buf, _ = filled(capacity=200, steps=60, alpha=0.6)
    entries = np.argwhere(buf.priorities > 0)
    losses = np.random.default_rng(1).random(len(entries)) * 3
    buf.update_priorities(entries[:, 0], entries[:, 1], losses)
    expected = (losses + PRIORITY_EPSILON) ** 0.6
    expected /= expected.sum()
    index = {tuple(e): i for i, e in enumerate(entries)}
    counts = np.zeros(len(entries))
    draws = 0
    for _ in range(1500):
        batch = buf.sample(32)
        for e, p in zip(batch.env_index, batch.position, strict=True):
            counts[index[(int(e), int(p))]] += 1
        draws += 32
    chi_square = ((counts - draws * expected) ** 2 / (draws * expected)).sum()
    dof = len(entries) - 1
    assert chi_square < dof + 5 * np.sqrt(2 * dof), (chi_square, dof)  # ~5 sigma above the mean


def test_importance_weights_follow_the_formula():
    buf, _ = filled()
    entries = np.argwhere(buf.priorities > 0)
    buf.update_priorities(entries[:, 0], entries[:, 1], np.linspace(0.1, 2.0, len(entries)))
    batch = buf.sample(16, beta=0.4)
    probabilities = buf.priorities[batch.env_index, batch.position] / buf.priorities.sum()
    weights = (len(buf) * probabilities) ** -0.4
    np.testing.assert_allclose(batch.weights, weights / weights.max(), rtol=1e-6)


def test_new_transitions_come_in_at_the_largest_priority_and_updates_change_the_draws():
    buf, stream = filled()
    entries = np.argwhere(buf.priorities > 0)
    buf.update_priorities(entries[:, 0], entries[:, 1], np.full(len(entries), 0.01))
    favourite = entries[3]
    buf.update_priorities(favourite[None, 0], favourite[None, 1], np.array([100.0]))
    drawn = []
    for _ in range(20):
        batch = buf.sample(32)
        drawn += list(zip(batch.env_index.tolist(), batch.position.tolist(), strict=True))
    share = sum(d == tuple(favourite) for d in drawn) / len(drawn)
    expected = buf.priorities[tuple(favourite)] / buf.priorities.sum()  # 10 against 0.1 for each other
    assert expected > 0.5 and abs(share - expected) < 0.06
    before = set(drawable(buf))
    for _ in range(4):
        stream.step(buf)
    new = set(drawable(buf)) - before
    assert new and all(buf.priorities[e, p] == pytest.approx((100 + PRIORITY_EPSILON) ** 0.5) for e, p in new)


@pytest.mark.parametrize("frames_device", STORAGES)
@pytest.mark.parametrize(
    "num_envs,capacity,n_step,abrupt_every", [(1, 40, 1, 0), (3, 60, 3, 0), (2, 50, 2, 23), (3, 24, 3, 17)]
)
def test_only_entries_that_start_a_valid_transition_are_drawable_across_wraparound(
    num_envs, capacity, n_step, abrupt_every, frames_device
):
    shape = dict(frame_shape=FRAME, stack=STACK, n_step=n_step, gamma=0.9)
    buf = PrioritizedReplayBuffer(capacity, num_envs, **shape, seed=2, frames_device=frames_device)
    stream = Stream(num_envs, np.random.default_rng(capacity), 0.9, n_step)
    for step in range(400):  # many wraps
        if abrupt_every and step % abrupt_every == abrupt_every - 1:
            stream.end_abruptly(buf)
        stream.step(buf)
        for e in range(num_envs):
            for p in range(buf.ring_size):
                if p >= buf.count[e]:  # never written
                    assert buf.priorities[e, p] == 0
                    continue
                ref = stream.reference(e, p, buf.ring_size)
                valid = ref is not None and ref["held"]
                if buf.priorities[e, p] > 0:
                    assert valid, f"drawable but invalid: env {e} pos {p} at step {step}"
                # valid and with n newer entries in its ring: drawable
                newer = (buf.cursor[e] - 1 - p) % buf.ring_size
                if valid and newer >= n_step and buf.count[e] > n_step:
                    assert buf.priorities[e, p] > 0, f"valid but never drawn: env {e} pos {p} at step {step}"
        np.testing.assert_allclose(buf.tree.total, buf.priorities.sum())
        if buf.tree.total > 0:
            batch = buf.sample(16)
            for i in range(16):
                ref = stream.reference(int(batch.env_index[i]), int(batch.position[i]), buf.ring_size)
                np.testing.assert_array_equal(on_host(batch.obs[i]), ref["obs"])
                np.testing.assert_array_equal(on_host(batch.next_obs[i]), ref["next_obs"])
                assert batch.rewards[i] == pytest.approx(ref["ret"], abs=1e-6)
                assert batch.discounts[i] == pytest.approx(ref["discount"], abs=1e-6)


def test_save_and_load_keep_priorities_and_give_identical_samples(tmp_path):
    buf, _ = filled(steps=90)
    entries = np.argwhere(buf.priorities > 0)
    buf.update_priorities(entries[:, 0], entries[:, 1], np.random.default_rng(4).random(len(entries)) * 5)
    buf.save(tmp_path / "r")
    copy = PrioritizedReplayBuffer(64, 2, frame_shape=FRAME, stack=STACK, n_step=3, gamma=0.9, seed=99)
    copy.load(tmp_path / "r")
    assert copy.max_priority == buf.max_priority
    np.testing.assert_array_equal(copy.tree.nodes, buf.tree.nodes)
    for _ in range(3):
        a, b = buf.sample(32, beta=0.7), copy.sample(32, beta=0.7)
        for field in ("position", "env_index", "weights", "rewards"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
