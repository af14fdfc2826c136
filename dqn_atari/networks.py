"""The Nature DQN network (Mnih et al. 2015, Methods: "Model architecture") and its heads:
dueling (Wang et al. 2016), noisy linear layers (Fortunato et al. 2018) and IQN's quantile
embedding (Dabney et al. 2018b). What the network outputs per action is its value head's
choice (`dqn_atari/value_heads.py`).

Every layer carries a leading *member* dimension: K independent networks (the seeds of a
population, `dqn_atari/trainer.py`) are computed as one, the convolutions grouped by member and
the linear layers as batched matrix products. A single network is K = 1, the same computation.

Shapes: observations (K, B, stack, H, W) uint8 in; (K, B, A, k) out, k values per action as the
value head says (1 for DQN, the atoms' log-probabilities for C51, quantiles for QR-DQN and IQN).
Nothing here draws random numbers: noisy layers take their noise and IQN its quantile fractions
as inputs, drawn by the agent from each member's own generator.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dqn_atari.value_heads import ValueHead


class MemberConv2d(nn.Module):
    """K convolutions, one per member, applied as one grouped convolution. Input and output are
    (B, K * channels, H, W): member k's channels are the k-th block."""

    def __init__(self, members: int, in_channels: int, out_channels: int, kernel_size: int, stride: int):
        super().__init__()
        self.members, self.stride = members, stride
        self.weight = nn.Parameter(torch.empty(members, out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(members, out_channels))
        self.fan_in = in_channels * kernel_size * kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight.flatten(0, 1), self.bias.flatten(), stride=self.stride, groups=self.members)


class MemberLinear(nn.Module):
    """K linear layers, one per member: (K, B, in) -> (K, B, out) as one batched product."""

    def __init__(self, members: int, in_features: int, out_features: int):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(members, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(members, out_features))
        self.fan_in = in_features

    noise_size = 0

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))


class NoisyLinear(nn.Module):
    """y = (mu_w + sigma_w * eps_w) x + mu_b + sigma_b * eps_b with factorised Gaussian noise:
    eps_w = f(eps_out) f(eps_in)^T, eps_b = f(eps_out), f(x) = sign(x) sqrt(|x|) (Fortunato et
    al. 2018, section 3.2). `noise` holds f(eps_in) then f(eps_out) per member, (K, in + out),
    or per member and sample, (K, B, in + out) (side-by-side evaluation games, each with its
    own noise); None computes the mean layer (the noise off). mu starts in U(-1/sqrt(p), 1/sqrt(p)), sigma
    at sigma0/sqrt(p) for p inputs (`initialize`)."""

    def __init__(self, members: int, in_features: int, out_features: int, sigma0: float = 0.5):
        super().__init__()
        self.in_features, self.out_features, self.sigma0 = in_features, out_features, sigma0
        self.weight_mu = nn.Parameter(torch.empty(members, out_features, in_features))
        self.weight_sigma = nn.Parameter(torch.empty(members, out_features, in_features))
        self.bias_mu = nn.Parameter(torch.empty(members, out_features))
        self.bias_sigma = nn.Parameter(torch.empty(members, out_features))
        self.fan_in = in_features
        self.noise_size = in_features + out_features

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        mean = torch.baddbmm(self.bias_mu.unsqueeze(1), x, self.weight_mu.transpose(1, 2))
        if noise is None:
            return mean
        if noise.dim() == 2:  # one draw per member, for all its samples
            noise = noise.unsqueeze(1)
        noise_in, noise_out = noise[..., : self.in_features], noise[..., self.in_features :]
        # x (mu_w + sigma_w * eps_out eps_in^T)^T = x mu_w^T + eps_out * ((x * eps_in) sigma_w^T):
        # the same layer without building the noisy weight matrix (512 x 3136 in the Nature
        # head) at every forward pass and its gradient at every backward pass.
        noisy = torch.bmm(x * noise_in, self.weight_sigma.transpose(1, 2))
        return mean + (noisy + self.bias_sigma.unsqueeze(1)) * noise_out


def scaled_noise(x: torch.Tensor) -> torch.Tensor:
    """f(x) = sign(x) sqrt(|x|) of standard normal draws: factorised noise (Fortunato et al. 2018, eq. 11)."""
    return x.sign() * x.abs().sqrt()


class MLP(nn.Sequential):
    """The Nature head's shape: one hidden layer, ReLU, one output layer; plain or noisy."""

    def __init__(self, members: int, in_features: int, hidden: int, outputs: int, noisy: bool, sigma0: float):
        first: MemberLinear | NoisyLinear
        last: MemberLinear | NoisyLinear
        if noisy:
            first, last = (
                NoisyLinear(members, in_features, hidden, sigma0),
                NoisyLinear(members, hidden, outputs, sigma0),
            )
        else:
            first, last = MemberLinear(members, in_features, hidden), MemberLinear(members, hidden, outputs)
        super().__init__(first, nn.ReLU(), last)
        self.first_noise = first.noise_size
        self.noise_size = first.noise_size + last.noise_size

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        split = self.first_noise
        hidden = self[1](self[0](x, None if noise is None else noise[..., :split]))
        # The output layer, and so everything made of its outputs (dueling's sum, C51's
        # log-softmax, the argmax that picks an action), stays fp32 under bf16 autocast: bf16
        # keeps 8 significant bits, so Q-values of a few units apart by less than 1/256 of
        # their size would tie exactly and argmax would return the first action.
        with torch.autocast(hidden.device.type, enabled=False):
            return self[2](hidden.float(), None if noise is None else noise[..., split:].float())


class PlainHead(nn.Module):
    def __init__(
        self, members: int, in_features: int, hidden: int, num_actions: int, k: int, noisy: bool, sigma0: float
    ):
        super().__init__()
        self.num_actions, self.k = num_actions, k
        self.layers = MLP(members, in_features, hidden, num_actions * k, noisy, sigma0)
        self.noise_size: int = self.layers.noise_size

    def forward(self, features: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        out = self.layers(features, noise)
        return out.view(*out.shape[:2], self.num_actions, self.k)


class DuelingHead(nn.Module):
    """Q(s, a) = V(s) + A(s, a) - mean_a' A(s, a') (Wang et al. 2016, eq. 9), per value of a
    distributional head. Two streams of the Nature head's size; subtracting the mean advantage
    makes V and A identifiable without changing the greedy action."""

    def __init__(
        self, members: int, in_features: int, hidden: int, num_actions: int, k: int, noisy: bool, sigma0: float
    ):
        super().__init__()
        self.num_actions, self.k = num_actions, k
        self.value = MLP(members, in_features, hidden, k, noisy, sigma0)
        self.advantage = MLP(members, in_features, hidden, num_actions * k, noisy, sigma0)
        self.noise_size: int = self.value.noise_size + self.advantage.noise_size

    def forward(self, features: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        split = self.value.noise_size
        value = self.value(features, None if noise is None else noise[..., :split])
        advantage = self.advantage(features, None if noise is None else noise[..., split:])
        value = value.view(*value.shape[:2], 1, self.k)
        advantage = advantage.view(*advantage.shape[:2], self.num_actions, self.k)
        return value + advantage - advantage.mean(dim=2, keepdim=True)


class QuantileEmbedding(nn.Module):
    """IQN's phi(tau)_j = ReLU(sum_{i=0}^{n-1} cos(pi i tau) w_ij + b_j) (Dabney et al. 2018b,
    eq. 4), one vector per sampled fraction, of the torso's width so that it multiplies the
    state's features elementwise."""

    def __init__(self, members: int, cosines: int, features: int):
        super().__init__()
        self.register_buffer("frequencies", math.pi * torch.arange(cosines, dtype=torch.float32), persistent=False)
        self.linear = MemberLinear(members, cosines, features)

    frequencies: torch.Tensor

    def forward(self, taus: torch.Tensor) -> torch.Tensor:
        """taus (K, B, n) -> (K, B * n, features)."""
        cosines = torch.cos(taus.flatten(1).unsqueeze(2) * self.frequencies)
        return F.relu(self.linear(cosines))


class QNetwork(nn.Module):
    """K Nature DQN networks. Three convolutions (32 8x8 stride 4, 64 4x4 stride 2, 64 3x3
    stride 1), a 512-unit hidden layer, `value_head.outputs_per_action` outputs per action, ReLU
    between. Pixels arrive as uint8 and become float only here, on the network's device: 4x less
    memory and host-to-device traffic."""

    def __init__(
        self,
        num_actions: int,
        value_head: ValueHead,
        *,
        members: int = 1,
        frame_stack: int = 4,
        frame_size: int = 84,
        hidden_size: int = 512,
        dueling: bool = False,
        noisy: bool = False,
        noisy_sigma0: float = 0.5,
        iqn_cosines: int = 64,
        channels_last: bool = False,
    ):
        super().__init__()
        self.num_actions, self.members, self.value_head = num_actions, members, value_head
        self.frame_stack, self.channels_last = frame_stack, channels_last
        self.features = nn.Sequential(
            MemberConv2d(members, frame_stack, 32, kernel_size=8, stride=4),
            nn.ReLU(),
            MemberConv2d(members, 32, 64, kernel_size=4, stride=2),
            nn.ReLU(),
            MemberConv2d(members, 64, 64, kernel_size=3, stride=1),
            nn.ReLU(),
        )
        side = frame_size
        for kernel, stride in ((8, 4), (4, 2), (3, 1)):
            side = (side - kernel) // stride + 1
        self.feature_size = 64 * side * side
        # IQN: the head reads the state's features times each sampled fraction's embedding,
        # one value per fraction (Dabney et al. 2018b, eq. 4 and Appendix).
        self.embedding = QuantileEmbedding(members, iqn_cosines, self.feature_size) if value_head.samples_taus else None
        head = DuelingHead if dueling else PlainHead
        per_action = 1 if value_head.samples_taus else value_head.outputs_per_action
        self.head = head(members, self.feature_size, hidden_size, num_actions, per_action, noisy, noisy_sigma0)
        self.noisy = noisy
        self.noise_size: int = self.head.noise_size

    def forward(
        self, obs: torch.Tensor, noise: torch.Tensor | None = None, taus: torch.Tensor | None = None
    ) -> torch.Tensor:
        """obs (K, B, stack, H, W) uint8; `noise` (K, noise_size) or (K, B, noise_size) for noisy
        layers (None: the noise off); `taus` (K, B, n) IQN's fractions. Returns the value
        head's (K, B, A, k)."""
        members, batch = obs.shape[:2]
        x = obs.transpose(0, 1).reshape(batch, members * self.frame_stack, *obs.shape[3:])
        if self.channels_last:  # converted while still uint8: a quarter of the bytes to move
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.features(x.float().mul_(1.0 / 255.0))
        features = x.reshape(batch, members, self.feature_size).transpose(0, 1)  # (K, B, F), (C, H, W) order
        if self.embedding is None:
            raw = self.head(features, noise)
        else:
            assert taus is not None, "an IQN network needs its quantile fractions"
            samples = taus.shape[2]
            embedded = features.unsqueeze(2) * self.embedding(taus).view(members, batch, samples, -1)
            if noise is not None and noise.dim() == 3:  # each sample's noise, for each of its fractions
                noise = noise.repeat_interleave(samples, dim=1)
            raw = self.head(embedded.flatten(1, 2), noise)  # (K, B * n, A, 1)
            raw = raw.view(members, batch, samples, self.num_actions).transpose(2, 3)
        return self.value_head.output(raw)

    def q_values(
        self, obs: torch.Tensor, noise: torch.Tensor | None = None, taus: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(K, B, A): the value head's Q-values from one forward pass."""
        return self.value_head.q_values(self(obs, noise, taus))


def initialize(network: QNetwork, generators: list[torch.Generator]) -> None:
    """Fresh weights, member k's from generators[k] only, in a fixed order: a member's initial
    network does not depend on how many members there are. Weights and biases of plain layers
    are U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (torch's default for Conv2d and Linear); noisy layers
    as Fortunato et al. 2018, section 3.2. Generators live on the CPU, so that a seed starts
    from the same network on every device."""
    if len(generators) != network.members:
        raise ValueError(f"initialize needs one generator per member ({network.members}), got {len(generators)}")
    layers = [m for m in network.modules() if isinstance(m, (MemberConv2d, MemberLinear, NoisyLinear))]
    with torch.no_grad():
        for k, generator in enumerate(generators):
            for layer in layers:
                bound = 1 / math.sqrt(layer.fan_in)
                if isinstance(layer, NoisyLinear):
                    _uniform(layer.weight_mu[k], bound, generator)
                    _uniform(layer.bias_mu[k], bound, generator)
                    layer.weight_sigma[k].fill_(layer.sigma0 * bound)
                    layer.bias_sigma[k].fill_(layer.sigma0 * bound)
                else:
                    _uniform(layer.weight[k], bound, generator)
                    _uniform(layer.bias[k], bound, generator)


def _uniform(tensor: torch.Tensor, bound: float, generator: torch.Generator) -> None:
    drawn = torch.empty(tensor.shape, dtype=tensor.dtype).uniform_(-bound, bound, generator=generator)
    tensor.copy_(drawn)


def network_settings(config: dict) -> dict:
    """QNetwork's keyword arguments (but the value head and members) from a run's resolved
    config as a dict (e.g. a checkpoint's state.json); keys that older runs lack take their
    defaults."""
    env, network = config["env"], config["network"]
    return {
        "frame_stack": env["frame_stack"],
        "frame_size": env["frame_size"],
        "hidden_size": network["hidden_size"],
        "dueling": network.get("dueling", False),
        "noisy": network.get("noisy", False),
        "noisy_sigma0": network.get("noisy_sigma0", 0.5),
        "iqn_cosines": network.get("iqn_cosines", 64),
        "channels_last": network.get("channels_last", False),
    }


def member_state(state: dict[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    """Member k of a population's state dict, as a network of one member (every tensor keeps a
    member dimension of 1): what a single run of that seed would hold."""
    return {name: tensor[k : k + 1].clone() for name, tensor in state.items()}


def stacked_state(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The state dict of a population whose member k is states[k] (each of one member)."""
    return {name: torch.cat([s[name] for s in states]) for name in states[0]}


def with_member_dimension(state: dict[str, torch.Tensor], network: QNetwork) -> dict[str, torch.Tensor]:
    """Weights saved by a version whose networks had no member dimension (and kept their noise
    in buffers) in today's form: a leading dimension of 1, noise buffers dropped."""
    expected = network.state_dict()
    out = {}
    for name, tensor in state.items():
        if name not in expected:
            continue  # noise_in / noise_out of the old noisy layers
        if tensor.dim() == expected[name].dim() - 1:
            tensor = tensor.unsqueeze(0)
        out[name] = tensor
    return out
