"""Prioritized experience replay (Schaul et al. 2016, proportional variant) on the frame-once
replay: only the priorities are new, one per ring entry, held in a sum tree.

    P(i) = p_i^alpha / sum_k p_k^alpha,   p_i = loss_i + epsilon
    w_i  = (N P(i))^-beta / max_j w_j     (max over the batch, as Dopamine and others do)

with the loss of sample i (|TD error| for DQN, the cross-entropy for C51), new transitions at the
largest priority given so far, and beta annealed by the trainer. An entry has priority zero, so
it is never drawn, until it can start a valid transition: it becomes drawable when the n-th newer
entry of its ring is written (then its n-step return and next state are stored), unless it is a
game's `last` entry; it returns to zero when it is overwritten, or when its stack would read an
overwritten frame. Sampling and priority updates are whole-batch numpy operations.
"""

from __future__ import annotations

import numpy as np

from dqn_atari.replay import BACK_SHIFT, LAST, Batch, ReplayBuffer, ReplayError

# Keeps a sample with zero loss drawable (Schaul et al. 2016's epsilon).
PRIORITY_EPSILON = 1e-6


class SumTree:
    """A binary tree over `size` leaves whose inner nodes hold the sums of their children, in one
    float64 array (node 1 is the root, node k's children are 2k and 2k+1). Updates and draws
    take a whole batch: one vectorised step per tree level."""

    def __init__(self, size: int):
        self.size = size
        self.depth = max(0, (size - 1).bit_length())  # levels above the leaves
        self.first_leaf = 1 << self.depth
        self.nodes = np.zeros(2 * self.first_leaf, dtype=np.float64)

    @property
    def total(self) -> float:
        return float(self.nodes[1])

    def get(self, index: np.ndarray) -> np.ndarray:
        return self.nodes[index + self.first_leaf]

    def set(self, index: np.ndarray, values: np.ndarray) -> None:
        node = np.asarray(index, dtype=np.int64) + self.first_leaf
        self.nodes[node] = values
        for _ in range(self.depth):
            # A parent listed twice is recomputed twice from the same children: no need to dedupe.
            node >>= 1
            self.nodes[node] = self.nodes[2 * node] + self.nodes[2 * node + 1]

    def set_all(self, values: np.ndarray) -> None:
        self.nodes[:] = 0
        self.nodes[self.first_leaf : self.first_leaf + self.size] = values
        start = self.first_leaf  # rebuild level by level, bottom up
        while start > 1:
            parents = np.arange(start // 2, start)
            self.nodes[parents] = self.nodes[2 * parents] + self.nodes[2 * parents + 1]
            start //= 2

    def find(self, targets: np.ndarray) -> np.ndarray:
        """For each target in [0, total): the leaf whose prefix-sum interval holds it."""
        node = np.ones(len(targets), dtype=np.int64)
        targets = targets.copy()
        for _ in range(self.depth):
            left = 2 * node
            left_sum = self.nodes[left]
            go_right = targets >= left_sum
            targets -= np.where(go_right, left_sum, 0.0)
            node = left + go_right
        return node - self.first_leaf


class PrioritizedReplayBuffer(ReplayBuffer):
    small_arrays = ReplayBuffer.small_arrays + ("priorities",)

    def __init__(self, *args, alpha: float = 0.5, **kwargs):
        super().__init__(*args, **kwargs)
        self.alpha = alpha
        # p^alpha per entry (what the tree sums), beside actions/rewards/flags
        self.priorities = np.zeros((self.num_envs, self.ring_size), dtype=np.float64)
        self.tree = SumTree(self.capacity)
        self.max_priority = 1.0  # p^alpha given to new transitions

    # ------------------------------------------------------------------ writing
    def _write(self, envs, frames, actions, rewards, terminal, truncated, first, last) -> None:
        envs = np.asarray(envs)
        pos = self.cursor[envs].copy()
        super()._write(envs, frames, actions, rewards, terminal, truncated, first, last)
        # The entry written cannot start a transition yet (its n-step successors are missing).
        changed_envs, changed_pos, values = [envs], [pos], [np.zeros(len(envs))]
        # The entry n back now has its n successors: drawable, unless a game's last entry.
        ready = (pos - self.n_step) % self.ring_size
        has_it = self.count[envs] > self.n_step
        ready_ok = has_it & ((self.flags[envs, ready] & LAST) == 0)
        changed_envs.append(envs[ready_ok])
        changed_pos.append(ready[ready_ok])
        values.append(np.full(int(ready_ok.sum()), self.max_priority))
        # The oldest entries whose stacks reached back to the overwritten frame.
        full = self.count[envs] == self.ring_size
        for k in range(1, self.stack):
            older = (pos + k) % self.ring_size
            needs_overwritten = full & ((self.flags[envs, older] >> BACK_SHIFT) >= k)
            changed_envs.append(envs[needs_overwritten])
            changed_pos.append(older[needs_overwritten])
            values.append(np.zeros(int(needs_overwritten.sum())))
        self._set_priorities(np.concatenate(changed_envs), np.concatenate(changed_pos), np.concatenate(values))

    def _set_priorities(self, envs: np.ndarray, pos: np.ndarray, values: np.ndarray) -> None:
        if len(envs):
            self.priorities[envs, pos] = values
            self.tree.set(envs * self.ring_size + pos, values)

    def update_priorities(self, envs, positions, losses) -> None:
        """After an update: each sampled transition's priority from its loss (a device tensor
        or an array)."""
        if hasattr(losses, "detach"):
            losses = losses.detach().cpu().numpy()
        values = (np.asarray(losses, dtype=np.float64) + PRIORITY_EPSILON) ** self.alpha
        self._set_priorities(np.asarray(envs), np.asarray(positions), values)
        self.max_priority = max(self.max_priority, float(values.max()))

    # ------------------------------------------------------------------ sampling
    def sample(self, batch_size: int, beta: float = 1.0) -> Batch:
        """Draw in proportion to priority: one stratified draw per equal slice of the total (as
        Schaul et al. 2016 do), with importance-sampling weights for `beta`."""
        total = self.tree.total
        if total <= 0:
            raise ReplayError("replay holds no transition that can be sampled yet")
        slices = (np.arange(batch_size) + self.rng.random(batch_size)) * (total / batch_size)
        flat = self.tree.find(np.minimum(slices, np.nextafter(total, 0)))
        for _ in range(100):  # float rounding can land on a zero-priority neighbour: redraw it
            zero = self.tree.get(flat) <= 0
            if not zero.any():
                break
            flat[zero] = self.tree.find(self.rng.random(int(zero.sum())) * total)
        else:
            raise ReplayError("prioritized replay kept drawing zero-priority entries")
        env, pos = np.divmod(flat, self.ring_size)
        oldest = np.where(self.count < self.ring_size, 0, self.cursor)[env]
        valid, env, pos, start, steps, ret, discount, back = self._inspect(env, (pos - oldest) % self.ring_size)
        if not valid.all():  # the priorities above make this impossible; a bug if it happens
            raise ReplayError("prioritized replay drew an entry that cannot start a transition")
        probabilities = self.tree.get(flat) / total
        weights = (len(self) * probabilities) ** -beta
        batch = self._assemble(env, pos, start, steps, ret, discount, back)
        batch.weights = (weights / weights.max()).astype(np.float32)
        return batch

    def leave_out_chunk(self, env: int, chunk: int) -> int:
        marked = super().leave_out_chunk(env, chunk)
        left_out = np.flatnonzero(self.flags[env] & LAST)
        self._set_priorities(np.full(len(left_out), env), left_out, np.zeros(len(left_out)))
        return marked

    # ------------------------------------------------------------------ saving
    def state_dict(self) -> dict:
        return dict(super().state_dict(), max_priority=self.max_priority)

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.max_priority = float(state["max_priority"])
        self.tree.set_all(self.priorities.reshape(-1))
