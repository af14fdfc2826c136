"""The network, one of it in plain PyTorch: shapes and dtypes, the Nature torso, the dueling and
noisy heads, IQN's embedding, initialisation from a seed's own generator, the memory layout,
and weights of every layout this project has saved."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from dqn_atari.networks import (
    NoisyLinear,
    QNetwork,
    channels_last,
    initialize,
    plain_state,
    scaled_noise,
)
from dqn_atari.value_heads import Categorical, ImplicitQuantile, ScalarTD
from tests.helpers import ROOT


def seeded(network: QNetwork, seed: int = 0) -> QNetwork:
    initialize(network, torch.Generator().manual_seed(seed))
    return network


def test_network_takes_uint8_and_outputs_one_value_per_action():
    net = seeded(QNetwork(6, ScalarTD()))
    obs = torch.randint(0, 256, (5, 4, 84, 84), dtype=torch.uint8)
    assert net(obs).shape == (5, 6, 1)
    q = net.q_values(obs)
    assert q.shape == (5, 6) and q.dtype == torch.float32
    convs = [m for m in net.features if isinstance(m, nn.Conv2d)]
    assert [(c.weight.shape, c.stride) for c in convs] == [
        ((32, 4, 8, 8), (4, 4)),
        ((64, 32, 4, 4), (2, 2)),
        ((64, 64, 3, 3), (1, 1)),
    ]
    assert net.feature_size == 3136 and net.head.layers[0].weight.shape == (512, 3136)


def test_the_flattened_size_comes_from_the_torso():
    """36x36 frames: 8x8 after the first convolution, 3x3, then 1x1 of 64 channels."""
    net = seeded(QNetwork(6, ScalarTD(), frame_size=36, frame_stack=2))
    assert net.feature_size == 64 and net.head.layers[0].weight.shape == (512, 64)
    assert net(torch.zeros(3, 2, 36, 36, dtype=torch.uint8)).shape == (3, 6, 1)


def test_initial_weights_follow_the_torch_defaults_and_the_seeds_generator():
    a, b, other = (
        seeded(QNetwork(6, ScalarTD()), 0),
        seeded(QNetwork(6, ScalarTD()), 0),
        seeded(QNetwork(6, ScalarTD()), 1),
    )
    for name, tensor in a.state_dict().items():
        assert torch.equal(tensor, b.state_dict()[name]), name  # the same seed, the same network
        assert not torch.equal(tensor, other.state_dict()[name]), name
    fan_in = 4 * 8 * 8
    weights = a.state_dict()["features.0.weight"]
    assert weights.abs().max() <= 1 / fan_in**0.5 and weights.std() > 0.8 / (3 * fan_in) ** 0.5
    bias = a.state_dict()["head.layers.2.bias"]
    assert bias.abs().max() <= 1 / 512**0.5


def test_building_and_initialising_a_network_leave_torchs_global_stream_alone():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    seeded(QNetwork(6, Categorical(), dueling=True, noisy=True))
    assert torch.equal(torch.rand(3), expected)


def test_a_layer_with_parameters_it_cannot_reset_is_named():
    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.factor = nn.Parameter(torch.ones(1))

    net = QNetwork(6, ScalarTD())
    net.head.extra = Scale()
    with pytest.raises(TypeError, match=r"layer head.extra has parameters but no reset_parameters\(\)"):
        initialize(net, torch.Generator().manual_seed(0))


def test_channels_last_input_gives_the_same_values():
    net = seeded(QNetwork(6, ScalarTD(), dueling=True))
    obs = torch.randint(0, 256, (8, 4, 84, 84), dtype=torch.uint8)
    laid_out = channels_last(obs)
    assert laid_out.shape == obs.shape and laid_out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(laid_out, obs)
    torch.testing.assert_close(net(laid_out), net(obs), rtol=1e-5, atol=1e-6)


def test_dueling_head_is_value_plus_centred_advantage():
    net = seeded(QNetwork(5, ScalarTD(), dueling=True))
    with torch.no_grad():
        net.head.value[-1].weight.zero_()
        net.head.value[-1].bias.fill_(2.0)
        net.head.advantage[-1].weight.zero_()
        net.head.advantage[-1].bias.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]))
    q = net.q_values(torch.zeros(3, 4, 84, 84, dtype=torch.uint8))
    # V = 2, A = 1..5 with mean 3: Q = 2 + A - 3
    assert q.tolist() == [[0.0, 1.0, 2.0, 3.0, 4.0]] * 3
    # With learned weights the mean advantage over actions is V: Q's mean is V's output.
    net = seeded(QNetwork(5, ScalarTD(), dueling=True), 1)
    obs = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    features = net.features(obs.float() / 255)
    torch.testing.assert_close(net.q_values(obs).mean(dim=1), net.head.value(features).squeeze(1))


def test_noisy_layer_is_the_factorised_noisy_linear_layer_and_noise_statistics():
    layer = NoisyLinear(4000, 3, sigma0=0.5)
    with torch.no_grad():
        layer.weight_sigma.uniform_(0, 0.1, generator=torch.Generator().manual_seed(0))  # each weight its own sigma
        layer.bias_sigma.uniform_(0, 0.1, generator=torch.Generator().manual_seed(1))
    # f(x) = sign(x) sqrt(|x|) of a standard normal: mean 0, mean square E|x| = sqrt(2/pi)
    noise = scaled_noise(torch.randn(5, 4003, generator=torch.Generator().manual_seed(1)))
    assert abs(noise.mean().item()) < 0.03
    assert abs(noise.pow(2).mean().item() - (2 / np.pi) ** 0.5) < 0.03
    x = torch.randn(5, 4000)

    def by_definition(eps_in, eps_out, inputs):  # y = (mu_w + sigma_w * eps_out eps_in^T) x + mu_b + sigma_b * eps_out
        weight = layer.weight_mu + layer.weight_sigma * torch.outer(eps_out, eps_in)
        return nn.functional.linear(inputs, weight, layer.bias_mu + layer.bias_sigma * eps_out)

    # one draw for the whole batch
    torch.testing.assert_close(
        layer(x, noise[0]), by_definition(noise[0, :4000], noise[0, 4000:], x), rtol=1e-4, atol=1e-5
    )
    # one draw per sample
    per_sample = layer(x, noise)
    for b in range(5):
        expected = by_definition(noise[b, :4000], noise[b, 4000:], x[b : b + 1])[0]
        torch.testing.assert_close(per_sample[b], expected, rtol=1e-4, atol=1e-5)
    # No noise: the mean layer.
    mean = nn.functional.linear(x, layer.weight_mu, layer.bias_mu)
    torch.testing.assert_close(layer(x, None), mean)
    assert not torch.allclose(per_sample, mean)


def test_noisy_initialisation_follows_fortunato_et_al():
    net = seeded(QNetwork(3, ScalarTD(), noisy=True, noisy_sigma0=0.5))
    layer = net.head.layers[0]
    bound = 1 / 3136**0.5
    assert layer.weight_mu.abs().max() <= bound and layer.weight_mu.std() > 0.8 * bound / 3**0.5
    torch.testing.assert_close(layer.weight_sigma, torch.full_like(layer.weight_sigma, 0.5 * bound))
    torch.testing.assert_close(layer.bias_sigma, torch.full_like(layer.bias_sigma, 0.5 * bound))
    assert net.noise_size == (3136 + 512) + (512 + 3)


def test_c51_network_gives_distributions_and_their_expected_values():
    head = Categorical(51, -10.0, 10.0)
    net = seeded(QNetwork(4, head, dueling=True, noisy=True))
    obs = torch.randint(0, 256, (8, 4, 84, 84), dtype=torch.uint8)
    log_probs = net(obs)
    assert log_probs.shape == (8, 4, 51)
    torch.testing.assert_close(log_probs.exp().sum(dim=2), torch.ones(8, 4))
    torch.testing.assert_close(net.q_values(obs), (log_probs.exp() * torch.linspace(-10, 10, 51)).sum(dim=2))


def test_iqn_network_gives_one_value_per_sampled_fraction():
    net = seeded(QNetwork(4, ImplicitQuantile(), iqn_cosines=64, noisy=True))
    obs = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    taus = torch.rand(3, 7)
    noise = scaled_noise(torch.randn(3, net.noise_size))
    out = net(obs, noise, taus)
    assert out.shape == (3, 4, 7)
    # Each fraction's column is the network evaluated at that fraction alone, with its sample's noise.
    torch.testing.assert_close(net(obs, noise, taus[:, 2:3])[..., 0], out[..., 2], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(net(obs[1:2], noise[1], taus[1:2]), out[1:2], rtol=1e-5, atol=1e-6)
    # phi(tau) uses cos(pi i tau) for i = 0..n-1 (Dabney et al. 2018b, eq. 4).
    assert net.embedding.frequencies.tolist()[:3] == pytest.approx([0.0, np.pi, 2 * np.pi])


# The names and shapes of every tensor in real checkpoints of the two older layouts, written by
# their versions (a dueling noisy network on 36x36 frames with a 16-unit head): the member layout
# (every tensor with a member dimension of 1) and the one before populations (noise buffers).
OLD_LAYOUTS = json.loads((ROOT / "tests" / "data" / "old-checkpoint-layouts.json").read_text())


@pytest.mark.parametrize("layout", sorted(OLD_LAYOUTS))
def test_weights_of_every_saved_layout_load(layout):
    net = seeded(QNetwork(6, ScalarTD(), frame_size=36, hidden_size=16, dueling=True, noisy=True), 3)
    shapes = OLD_LAYOUTS[layout]["online"]
    old = {}
    for name, shape in shapes.items():  # today's weights written in the old layout
        tensor = net.state_dict().get(name, torch.full(shape, 7.0))
        old[name] = tensor.reshape(shape)
    assert {name: list(t.shape) for name, t in old.items()} == shapes
    fresh = seeded(QNetwork(6, ScalarTD(), frame_size=36, hidden_size=16, dueling=True, noisy=True), 4)
    fresh.load_state_dict(plain_state(old, fresh))
    for name, tensor in net.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], tensor), name
