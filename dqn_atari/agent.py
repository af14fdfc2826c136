"""The DQN agent: epsilon-greedy acting and the TD update with a target network."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from dqn_atari.networks import QNetwork
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
        frame_stack: int = 4,
        frame_size: int = 84,
        hidden_size: int = 512,
        dueling: bool = False,
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
    ):
        self.num_actions = num_actions
        self.device = torch.device(device)
        self.loss_name, self.double_dqn = loss, double_dqn
        self.target_update_period_updates, self.tau, self.max_grad_norm = target_update_period_updates, tau, max_grad_norm
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

        network_shape = (num_actions, frame_stack, frame_size, hidden_size, dueling)
        self.online = QNetwork(*network_shape).to(self.device, memory_format=self.memory_format)
        self.target = QNetwork(*network_shape).to(self.device, memory_format=self.memory_format)
        self.target.load_state_dict(self.online.state_dict())
        self.target.requires_grad_(False)
        self.optimizer = make_optimizer(self.online.parameters(), optimizer, lr, eps, rmsprop_alpha, rmsprop_centered)
        self.updates = 0
        # Exploration draws come from the agent's own stream, so evaluation or logging code that
        # uses numpy's global RNG cannot change a run's actions.
        self.rng = np.random.Generator(np.random.PCG64(seed))

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def greedy_actions(self, obs: np.ndarray) -> np.ndarray:
        return self.q_values(obs).argmax(dim=1).cpu().numpy()

    @torch.no_grad()
    def q_values(self, obs: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(obs)).to(self.device, non_blocking=True)
        return self.online(x.contiguous(memory_format=self.memory_format))

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
    def td_target(self, rewards: torch.Tensor, discounts: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """r + gamma^k max_a Q_target(s', a); Double DQN picks a with the online network
        (van Hasselt et al. 2016). `discounts` is 0 at learning terminals."""
        with torch.no_grad():
            next_q = self.target(next_obs)
            if self.double_dqn:
                best = self.online(next_obs).argmax(dim=1, keepdim=True)
                next_value = next_q.gather(1, best).squeeze(1)
            else:
                next_value = next_q.max(dim=1).values
            return rewards + discounts * next_value

    def update(self, obs, actions, rewards, discounts, next_obs) -> dict[str, torch.Tensor]:
        """One gradient step on a batch of device tensors. Returns detached device tensors (no
        host sync here; the caller reads them at its logging interval)."""
        obs = obs.contiguous(memory_format=self.memory_format)
        next_obs = next_obs.contiguous(memory_format=self.memory_format)
        target = self.td_target(rewards, discounts, next_obs)
        q_taken = self.online(obs).gather(1, actions.unsqueeze(1)).squeeze(1)
        if self.loss_name == "huber":
            # Nature: "clip the error term from the update to be between -1 and 1".
            loss = F.smooth_l1_loss(q_taken, target, beta=1.0)
        else:
            loss = F.mse_loss(q_taken, target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.online.parameters(), self.max_grad_norm)
        self.optimizer.step()
        self.updates += 1
        if self.tau < 1.0:
            self.soft_update()
        elif self.updates % self.target_update_period_updates == 0:
            self.sync_target()
        return {"loss": loss.detach(), "q_mean": q_taken.detach().mean()}

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
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates = int(state["updates"])


def agent_from_config(cfg, num_actions: int, device: torch.device, seed: int | np.random.SeedSequence) -> DQNAgent:
    """`seed` seeds the exploration stream (the trainer gives it its own SeedSequence child)."""
    return DQNAgent(
        num_actions,
        frame_stack=cfg.env.frame_stack,
        frame_size=cfg.env.frame_size,
        hidden_size=cfg.network.hidden_size,
        dueling=cfg.network.dueling,
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
    )
