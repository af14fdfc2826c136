"""The Nature DQN network (Mnih et al. 2015, Methods: "Model architecture") and the Rainbow
heads: dueling (Wang et al. 2016), noisy linear layers (Fortunato et al. 2018) and a
distribution over returns (C51, Bellemare et al. 2017). Each is a switch; the torso is shared.

A network says what it outputs: `forward` gives Q-values (B, A), or for a distributional
network log-probabilities (B, A, atoms) over `support`; `q_values` always gives (B, A).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class NoisyLinear(nn.Module):
    """y = (mu_w + sigma_w * eps_w) x + mu_b + sigma_b * eps_b with factorised Gaussian noise:
    eps_w = f(eps_out) f(eps_in)^T, eps_b = f(eps_out), f(x) = sign(x) sqrt(|x|); mu drawn from
    U(-1/sqrt(p), 1/sqrt(p)), sigma set to sigma0/sqrt(p) for p inputs (Fortunato et al. 2018,
    section 3.2). The noise is drawn from torch's RNG by `reset_noise()` and held until the next
    call, so a checkpoint of torch's RNG state restores it."""

    noise_in: torch.Tensor
    noise_out: torch.Tensor

    def __init__(self, in_features: int, out_features: int, sigma0: float = 0.5):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bound = 1 / math.sqrt(in_features)
        self.weight_mu = nn.Parameter(torch.empty(out_features, in_features).uniform_(-bound, bound))
        self.weight_sigma = nn.Parameter(torch.full((out_features, in_features), sigma0 * bound))
        self.bias_mu = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))
        self.bias_sigma = nn.Parameter(torch.full((out_features,), sigma0 * bound))
        self.register_buffer("noise_in", torch.zeros(in_features))
        self.register_buffer("noise_out", torch.zeros(out_features))
        self.reset_noise()

    @staticmethod
    def _scaled_noise(n: int, device: torch.device) -> torch.Tensor:
        x = torch.randn(n, device=device)
        return x.sign() * x.abs().sqrt()

    @torch.no_grad()
    def reset_noise(self) -> None:
        self.noise_in.copy_(self._scaled_noise(self.in_features, self.noise_in.device))
        self.noise_out.copy_(self._scaled_noise(self.out_features, self.noise_out.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x (mu_w + sigma_w * eps_out eps_in^T)^T = x mu_w^T + eps_out * ((x * eps_in) sigma_w^T):
        # the same layer without building the noisy weight matrix (512 x 3136 in the Nature
        # head) at every forward pass and its gradient at every backward pass.
        bias = self.bias_mu + self.bias_sigma * self.noise_out
        return F.linear(x, self.weight_mu, bias) + F.linear(x * self.noise_in, self.weight_sigma) * self.noise_out


def _mlp(in_features: int, hidden_size: int, outputs: int, noisy: bool, sigma0: float) -> nn.Sequential:
    """The Nature head's shape: one hidden layer, ReLU, one output layer."""
    if noisy:
        return nn.Sequential(
            NoisyLinear(in_features, hidden_size, sigma0), nn.ReLU(), NoisyLinear(hidden_size, outputs, sigma0)
        )
    return nn.Sequential(nn.Linear(in_features, hidden_size), nn.ReLU(), nn.Linear(hidden_size, outputs))


class DuelingHead(nn.Module):
    """Q(s, a) = V(s) + A(s, a) - mean_a' A(s, a') (Wang et al. 2016, eq. 9), per atom for a
    distributional head. Two streams of the Nature head's size; subtracting the mean advantage
    makes V and A identifiable without changing the greedy action."""

    def __init__(self, in_features: int, hidden_size: int, num_actions: int, atoms: int, noisy: bool, sigma0: float):
        super().__init__()
        self.num_actions, self.atoms = num_actions, atoms
        self.value = _mlp(in_features, hidden_size, atoms, noisy, sigma0)
        self.advantage = _mlp(in_features, hidden_size, num_actions * atoms, noisy, sigma0)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        value = self.value(features).view(-1, 1, self.atoms)
        advantage = self.advantage(features).view(-1, self.num_actions, self.atoms)
        return value + advantage - advantage.mean(dim=1, keepdim=True)


class PlainHead(nn.Module):
    def __init__(self, in_features: int, hidden_size: int, num_actions: int, atoms: int, noisy: bool, sigma0: float):
        super().__init__()
        self.num_actions, self.atoms = num_actions, atoms
        self.layers = _mlp(in_features, hidden_size, num_actions * atoms, noisy, sigma0)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features).view(-1, self.num_actions, self.atoms)


class QNetwork(nn.Module):
    """uint8 (B, stack, 84, 84) in; Q-values (B, num_actions) out, or log-probabilities
    (B, num_actions, atoms) when `atoms` > 1.

    Three convolutions (32 8x8 stride 4, 64 4x4 stride 2, 64 3x3 stride 1), a 512-unit hidden
    layer, one output per action (and atom), ReLU between. Pixels arrive as uint8 and become
    float only here, on the network's device: 4x less memory and host-to-device traffic.
    """

    support: torch.Tensor

    def __init__(
        self,
        num_actions: int,
        frame_stack: int = 4,
        frame_size: int = 84,
        hidden_size: int = 512,
        dueling: bool = False,
        noisy: bool = False,
        noisy_sigma0: float = 0.5,
        atoms: int = 1,
        v_min: float = -10.0,
        v_max: float = 10.0,
    ):
        super().__init__()
        self.num_actions = num_actions
        self.distributional = atoms > 1
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
        head = DuelingHead if dueling else PlainHead
        self.head = head(flat, hidden_size, num_actions, atoms, noisy, noisy_sigma0)
        # The returns each atom stands for (C51: 51 atoms evenly on [v_min, v_max]).
        # Derived from the config, so not saved with the weights.
        support = torch.linspace(v_min, v_max, atoms) if self.distributional else torch.zeros(1)
        self.register_buffer("support", support, persistent=False)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.float().mul_(1.0 / 255.0)
        out = self.head(self.features(x))
        if self.distributional:
            return F.log_softmax(out, dim=2)
        return out.squeeze(2)

    def q_values(self, obs: torch.Tensor) -> torch.Tensor:
        """(B, A): the output itself, or the distribution's expected value (Bellemare et al. 2017)."""
        return self.q_from_output(self(obs))

    def q_from_output(self, out: torch.Tensor) -> torch.Tensor:
        """Q-values from a forward pass's output, so a caller that needs both does one pass."""
        if self.distributional:
            return (out.exp() * self.support).sum(dim=2)
        return out

    def reset_noise(self) -> None:
        for module in self.modules():
            if isinstance(module, NoisyLinear):
                module.reset_noise()


def network_settings(config: dict) -> dict:
    """QNetwork's keyword arguments from a run's resolved config (as a dict, e.g. a checkpoint's
    state.json); keys that older runs lack take their defaults."""
    env, network, agent = config["env"], config["network"], config.get("agent", {})
    distributional = agent.get("distributional", False)
    return {
        "frame_stack": env["frame_stack"],
        "frame_size": env["frame_size"],
        "hidden_size": network["hidden_size"],
        "dueling": network.get("dueling", False),
        "noisy": network.get("noisy", False),
        "noisy_sigma0": network.get("noisy_sigma0", 0.5),
        "atoms": agent.get("atoms", 51) if distributional else 1,
        "v_min": agent.get("v_min", -10.0),
        "v_max": agent.get("v_max", 10.0),
    }
