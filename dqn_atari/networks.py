"""The Nature DQN network (Mnih et al. 2015, Methods: "Model architecture") and its heads:
dueling (Wang et al. 2016), noisy linear layers (Fortunato et al. 2018) and IQN's quantile
embedding (Dabney et al. 2018b). What the network outputs per action is its value head's
choice (`dqn_atari/value_heads.py`).

Everything here is one network in plain PyTorch: stock layers and one short layer of our own
(`NoisyLinear`). The seeds of a population are K such networks, mapped over by the agent
(`dqn_atari/agent.py`, `Agent._map`); nothing here knows about members.

Shapes: observations (B, stack, H, W) uint8 in; (B, A, k) out, k values per action as the value
head says (1 for DQN, the atoms' log-probabilities for C51, quantiles for QR-DQN and IQN).
Nothing here draws random numbers: noisy layers take their noise and IQN its quantile fractions
as inputs, drawn by the agent from each member's own generator.

A new torso is a module from float stacks (B, stack, H, W) to features (B, F), built from
`(frame_stack, frame_size)`, and one entry in TORSOS; `network.torso` in a config chooses it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dqn_atari.config import Config, EnvConfig, NetworkConfig
from dqn_atari.value_heads import ValueHead


class NatureTorso(nn.Sequential):
    """Three convolutions, 32 8x8 stride 4, 64 4x4 stride 2, 64 3x3 stride 1, ReLU after each,
    flattened in (C, H, W) order."""

    def __init__(self, frame_stack: int, frame_size: int):
        super().__init__(
            nn.Conv2d(frame_stack, 32, kernel_size=8, stride=4),
            nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=4, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, stride=1),
            nn.ReLU(),
            nn.Flatten(),
        )


TORSOS: dict[str, type[nn.Module]] = {"nature": NatureTorso}


class NoisyLinear(nn.Module):
    """y = (mu_w + sigma_w * eps_w) x + mu_b + sigma_b * eps_b with factorised Gaussian noise:
    eps_w = f(eps_out) f(eps_in)^T, eps_b = f(eps_out), f(x) = sign(x) sqrt(|x|) (Fortunato et
    al. 2018, section 3.2). `noise` holds f(eps_in) then f(eps_out): one draw (in + out,) for
    the whole batch, or one per sample (B, in + out) (evaluation games side by side, each with
    its own noise); None computes the mean layer (the noise off). mu starts in
    U(-1/sqrt(p), 1/sqrt(p)), sigma at sigma0/sqrt(p) for p inputs."""

    def __init__(self, in_features: int, out_features: int, sigma0: float = NetworkConfig.noisy_sigma0):
        super().__init__()
        self.in_features, self.out_features, self.sigma0 = in_features, out_features, sigma0
        self.weight_mu = nn.Parameter(torch.empty(out_features, in_features))
        self.weight_sigma = nn.Parameter(torch.empty(out_features, in_features))
        self.bias_mu = nn.Parameter(torch.empty(out_features))
        self.bias_sigma = nn.Parameter(torch.empty(out_features))
        self.noise_size = in_features + out_features
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(self.in_features)
        with torch.no_grad():
            self.weight_mu.uniform_(-bound, bound)
            self.bias_mu.uniform_(-bound, bound)
            self.weight_sigma.fill_(self.sigma0 * bound)
            self.bias_sigma.fill_(self.sigma0 * bound)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        mean = F.linear(x, self.weight_mu, self.bias_mu)
        if noise is None:
            return mean
        noise_in, noise_out = noise[..., : self.in_features], noise[..., self.in_features :]
        # x (mu_w + sigma_w * eps_out eps_in^T)^T = x mu_w^T + eps_out * ((x * eps_in) sigma_w^T):
        # the same layer without building the noisy weight matrix (512 x 3136 in the Nature
        # head) at every forward pass and its gradient at every backward pass.
        noisy = F.linear(x * noise_in, self.weight_sigma)
        return mean + (noisy + self.bias_sigma) * noise_out


def scaled_noise(x: torch.Tensor) -> torch.Tensor:
    """f(x) = sign(x) sqrt(|x|) of standard normal draws: factorised noise (Fortunato et al. 2018, eq. 11)."""
    return x.sign() * x.abs().sqrt()


class MLP(nn.Sequential):
    """The Nature head's shape: one hidden layer, ReLU, one output layer; plain or noisy."""

    def __init__(self, in_features: int, hidden: int, outputs: int, noisy: bool, sigma0: float):
        if noisy:
            super().__init__(NoisyLinear(in_features, hidden, sigma0), nn.ReLU(), NoisyLinear(hidden, outputs, sigma0))
        else:
            super().__init__(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, outputs))
        self.noisy = noisy
        self.first_noise = in_features + hidden if noisy else 0
        self.noise_size = self.first_noise + (hidden + outputs if noisy else 0)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if self.noisy:
            split = self.first_noise
            hidden = self[1](self[0](x, None if noise is None else noise[..., :split]))
            last_noise = None if noise is None else noise[..., split:].float()
        else:
            hidden, last_noise = self[1](self[0](x)), None
        # The output layer, and so everything made of its outputs (dueling's sum, C51's
        # log-softmax, the argmax that picks an action), stays fp32 under bf16 autocast: bf16
        # keeps 8 significant bits, so Q-values of a few units apart by less than 1/256 of
        # their size would tie exactly and argmax would return the first action.
        with torch.autocast(hidden.device.type, enabled=False):
            return self[2](hidden.float(), last_noise) if self.noisy else self[2](hidden.float())


class PlainHead(nn.Module):
    def __init__(self, in_features: int, hidden: int, num_actions: int, k: int, noisy: bool, sigma0: float):
        super().__init__()
        self.num_actions, self.k = num_actions, k
        self.layers = MLP(in_features, hidden, num_actions * k, noisy, sigma0)
        self.noise_size: int = self.layers.noise_size

    def forward(self, features: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        return self.layers(features, noise).unflatten(-1, (self.num_actions, self.k))


class DuelingHead(nn.Module):
    """Q(s, a) = V(s) + A(s, a) - mean_a' A(s, a') (Wang et al. 2016, eq. 9), per value of a
    distributional head. Two streams of the Nature head's size; subtracting the mean advantage
    makes V and A identifiable without changing the greedy action."""

    def __init__(self, in_features: int, hidden: int, num_actions: int, k: int, noisy: bool, sigma0: float):
        super().__init__()
        self.num_actions, self.k = num_actions, k
        self.value = MLP(in_features, hidden, k, noisy, sigma0)
        self.advantage = MLP(in_features, hidden, num_actions * k, noisy, sigma0)
        self.noise_size: int = self.value.noise_size + self.advantage.noise_size

    def forward(self, features: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        split = self.value.noise_size
        value = self.value(features, None if noise is None else noise[..., :split]).unflatten(-1, (1, self.k))
        advantage = self.advantage(features, None if noise is None else noise[..., split:])
        advantage = advantage.unflatten(-1, (self.num_actions, self.k))
        return value + advantage - advantage.mean(dim=-2, keepdim=True)


class QuantileEmbedding(nn.Module):
    """IQN's phi(tau)_j = ReLU(sum_{i=0}^{n-1} cos(pi i tau) w_ij + b_j) (Dabney et al. 2018b,
    eq. 4), one vector per sampled fraction, of the torso's width so that it multiplies the
    state's features elementwise."""

    def __init__(self, cosines: int, features: int):
        super().__init__()
        self.register_buffer("frequencies", math.pi * torch.arange(cosines, dtype=torch.float32), persistent=False)
        self.linear = nn.Linear(cosines, features)

    frequencies: torch.Tensor

    def forward(self, taus: torch.Tensor) -> torch.Tensor:
        """taus (B, n) -> (B, n, features)."""
        return F.relu(self.linear(torch.cos(taus.unsqueeze(-1) * self.frequencies)))


class QNetwork(nn.Module):
    """One DQN network: a torso (the Nature one by default), a `hidden_size`-unit hidden layer,
    `value_head.outputs_per_action` outputs per action, ReLU between. Pixels arrive as uint8 and
    become float only here, on the network's device: 4x less memory and host-to-device traffic."""

    def __init__(
        self,
        num_actions: int,
        value_head: ValueHead,
        *,
        torso: str = NetworkConfig.torso,
        frame_stack: int = EnvConfig.frame_stack,
        frame_size: int = EnvConfig.frame_size,
        hidden_size: int = NetworkConfig.hidden_size,
        dueling: bool = NetworkConfig.dueling,
        noisy: bool = NetworkConfig.noisy,
        noisy_sigma0: float = NetworkConfig.noisy_sigma0,
        iqn_cosines: int = NetworkConfig.iqn_cosines,
    ):
        super().__init__()
        self.num_actions, self.value_head = num_actions, value_head
        # Torch's layers draw their first weights from its global stream as they are built;
        # `initialize` gives each seed its own, and building a network leaves the stream as it was.
        with torch.random.fork_rng(devices=[]):
            self.features = TORSOS[torso](frame_stack, frame_size)
            with torch.no_grad():  # the torso says how many features it gives
                self.feature_size = self.features(torch.zeros(1, frame_stack, frame_size, frame_size)).shape[1]
            # IQN: the head reads the state's features times each sampled fraction's embedding,
            # one value per fraction (Dabney et al. 2018b, eq. 4 and Appendix).
            self.embedding = QuantileEmbedding(iqn_cosines, self.feature_size) if value_head.samples_taus else None
            head = DuelingHead if dueling else PlainHead
            per_action = 1 if value_head.samples_taus else value_head.outputs_per_action
            self.head = head(self.feature_size, hidden_size, num_actions, per_action, noisy, noisy_sigma0)
        self.noisy = noisy
        self.noise_size: int = self.head.noise_size

    def forward(
        self, obs: torch.Tensor, noise: torch.Tensor | None = None, taus: torch.Tensor | None = None
    ) -> torch.Tensor:
        """obs (B, stack, H, W) uint8; `noise` (noise_size,) or (B, noise_size) for noisy layers
        (None: the noise off); `taus` (B, n) IQN's fractions. Returns the value head's (B, A, k)."""
        features = self.features(obs.float().mul_(1.0 / 255.0))
        if self.embedding is None:
            return self.value_head.output(self.head(features, noise))
        assert taus is not None, "an IQN network needs its quantile fractions"
        embedded = features.unsqueeze(1) * self.embedding(taus)  # (B, n, F)
        if noise is not None and noise.dim() == 2:  # each sample's noise, for each of its fractions
            noise = noise.unsqueeze(1)
        raw = self.head(embedded, noise)  # (B, n, A, 1)
        return self.value_head.output(raw.squeeze(-1).transpose(-1, -2))  # (B, A, n)

    def q_values(
        self, obs: torch.Tensor, noise: torch.Tensor | None = None, taus: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, A): the value head's Q-values from one forward pass."""
        return self.value_head.q_values(self(obs, noise, taus))


def initialize(network: nn.Module, generator: torch.Generator) -> None:
    """Fresh weights from `generator` only, layer by layer in module order: every layer that
    owns parameters starts as its `reset_parameters` says (torch's defaults: weights and biases
    of Conv2d and Linear in U(-1/sqrt(fan_in), 1/sqrt(fan_in)); LayerNorm's ones and zeros;
    noisy layers as Fortunato et al. 2018) with torch's CPU random stream seeded from
    `generator` for that layer. A seed's network is then the same on every device and whatever
    else the process draws. `generator` lives on the CPU."""
    with torch.no_grad():
        for name, module in network.named_modules():
            if next(module.parameters(recurse=False), None) is None:
                continue
            reset = getattr(module, "reset_parameters", None)
            if reset is None:
                raise TypeError(f"layer {name or type(module).__name__} has parameters but no reset_parameters()")
            seed = int(torch.randint(0, 2**62, (1,), generator=generator))
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(seed)
                reset()


def channels_last(obs: torch.Tensor) -> torch.Tensor:
    """Stacks (..., stack, H, W) laid out channels-last (NHWC) in memory, the shape unchanged:
    convolutions then run in that layout. Done while still uint8: a quarter of the bytes."""
    return obs.movedim(-3, -1).contiguous().movedim(-1, -3)


def network_from_config(num_actions: int, value_head: ValueHead, cfg: Config) -> QNetwork:
    """A run's network as its config's `network` and `env` sections say; `initialize` then
    draws a seed's first weights."""
    net = cfg.network
    return QNetwork(
        num_actions,
        value_head,
        torso=net.torso,
        frame_stack=cfg.env.frame_stack,
        frame_size=cfg.env.frame_size,
        hidden_size=net.hidden_size,
        dueling=net.dueling,
        noisy=net.noisy,
        noisy_sigma0=net.noisy_sigma0,
        iqn_cosines=net.iqn_cosines,
    )


def plain_state(state: dict[str, torch.Tensor], network: nn.Module) -> dict[str, torch.Tensor]:
    """Weights saved by any version, as `network` holds them: the member layout's tensors lose
    their member dimension (`without_member_dimension`), and the noise buffers of the oldest
    noisy layers (`noise_in`, `noise_out`, redrawn before use) are dropped."""
    expected = network.state_dict()
    return {
        name: without_member_dimension(tensor, expected[name].shape)
        for name, tensor in state.items()
        if name in expected
    }


def without_member_dimension(tensor: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """A tensor the member layout saved as (1, *shape), as `shape`; any other tensor as it is."""
    return tensor[0] if tensor.shape == (1, *shape) else tensor
