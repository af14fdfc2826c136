"""Optimisers of the published agents, and `make_optimizer` to pick one by its config name.

DeepMind's RMSProp (the Nature DQN's, Graves 2013 eq. 38-40; DQN Zoo `optax.rmsprop(centered=True)`)
differs from `torch.optim.RMSprop(centered=True)` in where epsilon goes:

    DeepMind:  w -= lr * g / sqrt(E[g^2] - E[g]^2 + eps)        eps inside the square root
    torch:     w -= lr * g / (sqrt(E[g^2] - E[g]^2) + eps)      eps outside it

DQN's gradient spread per parameter stays far below 1e-4 on Atari, so with eps = 0.01 torch's
denominator is mostly eps: its steps are about a third of DeepMind's. DeepMind's Lua code used
eps = 0.01 on a loss summed over the 32-sample batch; on our batch-mean loss every gradient is
32x smaller, so the same update needs eps = 0.01 / 32^2 (DQN Zoo's `optimizer_epsilon`).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from dqn_atari.config import OptimizerConfig


class DeepMindRMSprop(torch.optim.Optimizer):
    """Centred RMSProp with epsilon inside the square root, no momentum:

        E[g]   <- alpha E[g]   + (1 - alpha) g
        E[g^2] <- alpha E[g^2] + (1 - alpha) g^2
        w      <- w - lr g / sqrt(E[g^2] - E[g]^2 + eps)

    Both averages start at zero, as in DeepMind's code and optax."""

    def __init__(self, params: Iterable, lr: float = 2.5e-4, alpha: float = 0.95, eps: float = 0.01 / 32**2):
        if lr <= 0 or eps <= 0 or not 0 <= alpha < 1:
            raise ValueError(f"DeepMindRMSprop needs lr > 0, eps > 0 and 0 <= alpha < 1 (got {lr}, {eps}, {alpha})")
        super().__init__(params, {"lr": lr, "alpha": alpha, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            for p in params:
                if not self.state[p]:
                    self.state[p]["grad_avg"] = torch.zeros_like(p)
                    self.state[p]["square_avg"] = torch.zeros_like(p)
            grad_avg = [self.state[p]["grad_avg"] for p in params]
            square_avg = [self.state[p]["square_avg"] for p in params]
            alpha = group["alpha"]
            torch._foreach_lerp_(grad_avg, grads, 1 - alpha)
            torch._foreach_mul_(square_avg, alpha)
            torch._foreach_addcmul_(square_avg, grads, grads, value=1 - alpha)
            denominator = torch._foreach_mul(grad_avg, grad_avg)
            torch._foreach_sub_(denominator, square_avg)
            torch._foreach_neg_(denominator)  # E[g^2] - E[g]^2
            torch._foreach_add_(denominator, group["eps"])
            torch._foreach_sqrt_(denominator)
            torch._foreach_addcdiv_(params, grads, denominator, value=-group["lr"])
        return loss


def make_optimizer(params, settings: OptimizerConfig, capturable: bool = False) -> torch.optim.Optimizer:
    """`settings.name`: adam, torch's Adam; rmsprop, torch's RMSprop (eps outside the square
    root); deepmind_rmsprop, DeepMindRMSprop above (always centred; eps inside the square root).
    `capturable`: torch's optimisers keep their step count on the device, so a CUDA graph can
    hold the step (DeepMindRMSprop has no step count and is capturable as it is)."""
    s = settings
    if s.name == "adam":
        return torch.optim.Adam(params, lr=s.lr, eps=s.eps, capturable=capturable)
    if s.name == "deepmind_rmsprop":
        return DeepMindRMSprop(params, lr=s.lr, alpha=s.rmsprop_alpha, eps=s.eps)
    return torch.optim.RMSprop(
        params, lr=s.lr, alpha=s.rmsprop_alpha, eps=s.eps, centered=s.rmsprop_centered, capturable=capturable
    )
