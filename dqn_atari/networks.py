"""The Nature DQN Q-network (Mnih et al. 2015, Methods: "Model architecture")."""

from __future__ import annotations

import torch
from torch import nn


class QNetwork(nn.Module):
    """uint8 (B, stack, 84, 84) in, Q-values (B, num_actions) out.

    Three convolutions (32 8x8 stride 4, 64 4x4 stride 2, 64 3x3 stride 1), a 512-unit hidden
    layer, one linear output per action, ReLU between. Pixels arrive as uint8 and become float
    only here, on the network's device: 4x less memory and host-to-device traffic.
    """

    def __init__(self, num_actions: int, frame_stack: int = 4, frame_size: int = 84, hidden_size: int = 512):
        super().__init__()
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
        self.head = nn.Sequential(nn.Linear(flat, hidden_size), nn.ReLU(), nn.Linear(hidden_size, num_actions))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.float().mul_(1.0 / 255.0)
        return self.head(self.features(x))
