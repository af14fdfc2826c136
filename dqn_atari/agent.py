"""The DQN agent: epsilon-greedy acting and the TD update with a target network.

The loss is one function per family, each returning a per-sample loss (so prioritized replay can
weight it and read priorities from it): `scalar_td_loss` (DQN: Huber or MSE on r + gamma^k
max Q) and `categorical_loss` (C51: cross-entropy to the projected target distribution). Double
DQN is only a choice of which network picks the next action, shared by both.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from dqn_atari.config import to_dict
from dqn_atari.networks import QNetwork, network_settings
from dqn_atari.optimizers import make_optimizer


def linear_epsilon(frames: int, start: float, end: float, decay_frames: int) -> float:
    """Epsilon annealed linearly from `start` to `end` over the first `decay_frames` frames."""
    fraction = min(frames / decay_frames, 1.0)
    return start + fraction * (end - start)


class DQNAgent:
    def __init__(
        self,
        num_actions: int,
        *,
        network: dict | None = None,
        channels_last: bool = False,
        loss: str = "huber",
        double_dqn: bool = False,
        target_update_period_updates: int = 2_500,
        tau: float = 1.0,
        optimizer: str = "deepmind_rmsprop",
        lr: float = 2.5e-4,
        eps: float = 0.01 / 32**2,
        rmsprop_alpha: float = 0.95,
        rmsprop_centered: bool = True,
        max_grad_norm: float | None = None,
        device: str | torch.device = "cpu",
        seed: int | np.random.SeedSequence = 0,
        cuda_graph: bool = False,
    ):
        self.num_actions = num_actions
        self.device = torch.device(device)
        self.loss_name, self.double_dqn = loss, double_dqn
        self.target_update_period_updates, self.tau, self.max_grad_norm = (
            target_update_period_updates,
            tau,
            max_grad_norm,
        )
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

        # `network`: QNetwork's keyword arguments (frame_stack, dueling, noisy, atoms, ...)
        self.online = self._placed(QNetwork(num_actions, **(network or {})))
        self.target = self._placed(QNetwork(num_actions, **(network or {})))
        self.target.load_state_dict(self.online.state_dict())
        self.target.requires_grad_(False)
        # A CUDA graph replays the whole update (noise, loss, backward, optimiser step) as one
        # launch: at batch 32 the GPU otherwise waits on Python launching ~100-500 small kernels.
        # Only on a GPU. There torch's Adam and RMSprop always keep their step count on the
        # device (`capturable`), with or without the graph, so that the graph changes the speed
        # and never the numbers.
        self.cuda_graph = cuda_graph and self.device.type == "cuda"
        self.optimizer = make_optimizer(
            self.online.parameters(),
            optimizer,
            lr,
            eps,
            rmsprop_alpha,
            rmsprop_centered,
            capturable=self.device.type == "cuda",
        )
        self._graph: torch.cuda.CUDAGraph | None = None
        self._graph_signature: tuple | None = None
        self._static_batch: tuple = ()  # the graph's inputs, a batch's tensors (None: no weights)
        self._static_stats: dict[str, torch.Tensor] = {}  # the graph's outputs
        self._warmup_left = self.GRAPH_WARMUP_UPDATES
        self.updates = 0
        # Exploration draws come from the agent's own stream, so evaluation or logging code that
        # uses numpy's global RNG cannot change a run's actions.
        self.rng = np.random.Generator(np.random.PCG64(seed))

    def _placed(self, network: QNetwork) -> QNetwork:
        # Module.to takes memory_format at run time; torch's type stubs do not list it.
        return network.to(self.device, memory_format=self.memory_format)  # type: ignore[call-overload]

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def greedy_actions(self, obs: np.ndarray) -> np.ndarray:
        return self.q_values(obs).argmax(dim=1).cpu().numpy()

    @torch.no_grad()
    def q_values(self, obs: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(obs)).to(self.device, non_blocking=True)
        return self.online.q_values(x.contiguous(memory_format=self.memory_format))

    def act(self, obs: np.ndarray, epsilon: float) -> np.ndarray:
        """Epsilon-greedy for a batch of observations: one forward pass for all envs, and none at
        all when every env explores (most of early training)."""
        n = len(obs)
        explore = self.rng.random(n) < epsilon
        random_actions = self.rng.integers(0, self.num_actions, size=n)
        if explore.all():
            return random_actions
        return np.where(explore, random_actions, self.greedy_actions(obs))

    # ------------------------------------------------------------------ learning
    @torch.no_grad()
    def bootstrap(self, next_obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the target network's output for s', the action a' the target bootstraps on): the
        target network's argmax, or with Double DQN the online network's (van Hasselt et al.
        2016). One target forward pass serves both."""
        target_out = self.target(next_obs)
        if self.double_dqn:
            best = self.online.q_values(next_obs).argmax(dim=1)
        else:
            best = self.target.q_from_output(target_out).argmax(dim=1)
        return target_out, best

    def td_target(self, rewards: torch.Tensor, discounts: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """r + gamma^k Q_target(s', a'); `discounts` is gamma^k, 0 at learning terminals."""
        next_q, best = self.bootstrap(next_obs)
        return rewards + discounts * next_q.gather(1, best.unsqueeze(1)).squeeze(1)

    def scalar_td_loss(self, obs, actions, rewards, discounts, next_obs):
        """(per-sample loss, per-sample |TD error|, Q of the actions taken)."""
        target = self.td_target(rewards, discounts, next_obs)
        q_taken = self.online(obs).gather(1, actions.unsqueeze(1)).squeeze(1)
        if self.loss_name == "huber":
            # Nature: "clip the error term from the update to be between -1 and 1".
            per_sample = F.smooth_l1_loss(q_taken, target, beta=1.0, reduction="none")
        else:
            per_sample = F.mse_loss(q_taken, target, reduction="none")
        return per_sample, (target - q_taken).detach().abs(), q_taken.detach()

    def categorical_loss(self, obs, actions, rewards, discounts, next_obs):
        """(per-sample cross-entropy, the same as priority, expected Q of the actions taken)."""
        support = self.online.support
        with torch.no_grad():
            next_log_probs, best = self.bootstrap(next_obs)
            rows = torch.arange(len(best), device=best.device)
            target = categorical_projection(next_log_probs[rows, best].exp(), rewards, discounts, support)
        log_probs = self.online(obs)[torch.arange(len(actions), device=actions.device), actions]
        per_sample = -(target * log_probs).sum(dim=1)
        q_taken = (log_probs.detach().exp() * support).sum(dim=1)
        return per_sample, per_sample.detach(), q_taken

    def update(self, obs, actions, rewards, discounts, next_obs, weights=None) -> dict[str, torch.Tensor]:
        """One gradient step on a batch of device tensors; `weights` are prioritized replay's
        importance-sampling weights (None: a plain mean). Returns detached device tensors (no
        host sync here; the caller reads them when it needs them)."""
        batch = (obs, actions, rewards, discounts, next_obs, weights)
        stats = self._graph_step(batch) if self.cuda_graph else self._learning_step(*batch)
        self.updates += 1
        if self.tau < 1.0:
            self.soft_update()
        elif self.updates % self.target_update_period_updates == 0:
            self.sync_target()  # in place: a captured update reads the new target weights
        return stats

    def _learning_step(self, obs, actions, rewards, discounts, next_obs, weights) -> dict[str, torch.Tensor]:
        """The update's device work, the same eagerly and inside a CUDA graph."""
        obs = obs.contiguous(memory_format=self.memory_format)
        next_obs = next_obs.contiguous(memory_format=self.memory_format)
        # Noisy nets: fresh noise for each update, independently for the online and the target
        # network (the NoisyNet-DQN loss of Fortunato et al. 2018); acting uses the online noise
        # until the next update.
        self.online.reset_noise()
        self.target.reset_noise()
        loss_of = self.categorical_loss if self.online.distributional else self.scalar_td_loss
        per_sample, priorities, q_taken = loss_of(obs, actions, rewards, discounts, next_obs)
        loss = per_sample.mean() if weights is None else (per_sample * weights).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.online.parameters(), self.max_grad_norm)
        self.optimizer.step()
        return {"loss": loss.detach(), "q_mean": q_taken.mean(), "priorities": priorities}

    # Eager updates before the capture, on a side stream, as torch asks: they create the
    # optimiser's state and cuBLAS's workspace, which a graph cannot allocate. They are real
    # updates, so a run's sequence of updates is the same with and without the graph.
    GRAPH_WARMUP_UPDATES = 3

    def _graph_step(self, batch: tuple) -> dict[str, torch.Tensor]:
        signature = tuple(None if t is None else (t.shape, t.dtype) for t in batch)
        if self._graph is not None and signature != self._graph_signature:
            self._forget_graph()  # another batch size, or weights that come and go
        if self._graph is None and self._warmup_left > 0:
            self._warmup_left -= 1
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                stats = self._learning_step(*batch)
            torch.cuda.current_stream(self.device).wait_stream(side)
            return stats
        graph = self._graph
        if graph is None:
            self._static_batch = tuple(None if t is None else t.clone() for t in batch)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):  # records the kernels; runs nothing
                self._static_stats = self._learning_step(*self._static_batch)
            self._graph, self._graph_signature = graph, signature
        for static, t in zip(self._static_batch, batch, strict=True):
            if static is not None:
                static.copy_(t)
        graph.replay()
        # The graph writes into the same output tensors at every replay: hand out copies.
        return {k: v.clone() for k, v in self._static_stats.items()}

    def _forget_graph(self) -> None:
        """Drop the captured update (its inputs, outputs and gradient buffers); the next update
        warms up again and captures afresh, e.g. after the optimiser state was replaced."""
        self._graph = None
        self._graph_signature = None
        self._static_batch = ()
        self._static_stats = {}
        self._warmup_left = self.GRAPH_WARMUP_UPDATES
        for p in self.online.parameters():
            p.grad = None

    @torch.no_grad()
    def sync_target(self) -> None:
        self.target.load_state_dict(self.online.state_dict())

    @torch.no_grad()
    def soft_update(self) -> None:
        torch._foreach_lerp_(list(self.target.parameters()), list(self.online.parameters()), self.tau)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {
            "online": self.online.state_dict(),
            "target": self.target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict) -> None:
        self.online.load_state_dict(state["online"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])  # new state tensors: a graph would miss them
        self._forget_graph()
        self.updates = int(state["updates"])


def categorical_projection(
    next_probs: torch.Tensor, rewards: torch.Tensor, discounts: torch.Tensor, support: torch.Tensor
) -> torch.Tensor:
    """Project r + gamma^k z (each atom z of the next state's distribution, clipped to the
    support's ends) back onto the support, splitting each atom's mass between its two
    neighbours in proportion to closeness (Bellemare et al. 2017, Algorithm 1). `discounts` is
    0 at a terminal: all mass then lands on r. Returns (B, atoms), each row summing to 1."""
    v_min, v_max, atoms = support[0], support[-1], len(support)
    delta = (v_max - v_min) / (atoms - 1)
    shifted = (rewards.unsqueeze(1) + discounts.unsqueeze(1) * support.unsqueeze(0)).clamp(v_min, v_max)
    b = ((shifted - v_min) / delta).clamp(0, atoms - 1)  # rounding must not leave the support
    lower, upper = b.floor().long(), b.ceil().long()
    # b on an atom exactly: lower == upper, and the whole mass goes to it
    lower_share = torch.where(lower == upper, torch.ones_like(b), upper.to(b.dtype) - b)
    upper_share = b - lower.to(b.dtype)
    projected = torch.zeros_like(next_probs)
    projected.scatter_add_(1, lower, next_probs * lower_share)
    projected.scatter_add_(1, upper, next_probs * upper_share)
    return projected


def agent_from_config(cfg, num_actions: int, device: torch.device, seed: int | np.random.SeedSequence) -> DQNAgent:
    """`seed` seeds the exploration stream (the trainer gives it its own SeedSequence child)."""
    return DQNAgent(
        num_actions,
        network=network_settings(to_dict(cfg)),
        channels_last=cfg.network.channels_last,
        loss=cfg.agent.loss,
        double_dqn=cfg.agent.double_dqn,
        # The agent counts updates; the config counts agent steps, as the published code does.
        target_update_period_updates=max(1, cfg.agent.target_update_period_steps // cfg.train.train_frequency_steps),
        tau=cfg.agent.tau,
        optimizer=cfg.optimizer.name,
        lr=cfg.optimizer.lr,
        eps=cfg.optimizer.eps,
        rmsprop_alpha=cfg.optimizer.rmsprop_alpha,
        rmsprop_centered=cfg.optimizer.rmsprop_centered,
        max_grad_norm=cfg.optimizer.max_grad_norm,
        device=device,
        seed=seed,
        cuda_graph=cfg.train.cuda_graph,
    )
