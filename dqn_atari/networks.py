"""The Nature DQN Q-network (Mnih et al. 2015, Methods: "Model architecture"), with the dueling
head of Wang et al. 2016 as an option."""

from __future__ import annotations

import torch
from torch import nn


class DuelingHead(nn.Module):
    """Q(s, a) = V(s) + A(s, a) - mean_a' A(s, a') (Wang et al. 2016, eq. 9).

    Two streams of the Nature head's size (a hidden layer each, as in the paper's Atari network);
    subtracting the mean advantage makes V and A identifiable without changing the greedy action.
    """

    def __init__(self, in_features: int, hidden_size: int, num_actions: int):
        super().__init__()
        self.value = nn.Sequential(nn.Linear(in_features, hidden_size), nn.ReLU(), nn.Linear(hidden_size, 1))
        self.advantage = nn.Sequential(
            nn.Linear(in_features, hidden_size), nn.ReLU(), nn.Linear(hidden_size, num_actions)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        advantage = self.advantage(features)
        return self.value(features) + advantage - advantage.mean(dim=1, keepdim=True)


class QNetwork(nn.Module):
    """uint8 (B, stack, 84, 84) in, Q-values (B, num_actions) out.

    Three convolutions (32 8x8 stride 4, 64 4x4 stride 2, 64 3x3 stride 1), a 512-unit hidden
    layer, one linear output per action, ReLU between. Pixels arrive as uint8 and become float
    only here, on the network's device: 4x less memory and host-to-device traffic.
    """

    def __init__(
        self,
        num_actions: int,
        frame_stack: int = 4,
        frame_size: int = 84,
        hidden_size: int = 512,
        dueling: bool = False,
    ):
        super().__init__()
        self.num_actions = num_actions
        self.features = nn.Sequential(
            nn.Conv2d(frame_stack, 32, kernel_size=8, stride=4),
            nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=4, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, stride=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            flat = self.features(torch.zeros(1, frame_stack, frame_size, frame_size)).shape[1]
        if dueling:
            self.head: nn.Module = DuelingHead(flat, hidden_size, num_actions)
        else:
            self.head = nn.Sequential(nn.Linear(flat, hidden_size), nn.ReLU(), nn.Linear(hidden_size, num_actions))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.float().mul_(1.0 / 255.0)
        return self.head(self.features(x))
