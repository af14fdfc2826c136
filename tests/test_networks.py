"""The networks: shapes and dtypes, the Nature torso, the dueling and noisy heads, members that
are independent networks, initialisation from each member's own generator."""

import numpy as np
import pytest
import torch

from dqn_atari.networks import NoisyLinear, QNetwork, initialize, member_state, scaled_noise
from dqn_atari.value_heads import Categorical, ImplicitQuantile, ScalarTD


def seeded(network: QNetwork, *seeds: int) -> QNetwork:
    initialize(network, [torch.Generator().manual_seed(s) for s in seeds or range(network.members)])
    return network


def test_network_takes_uint8_and_outputs_one_value_per_action():
    net = seeded(QNetwork(6, ScalarTD()))
    obs = torch.randint(0, 256, (1, 5, 4, 84, 84), dtype=torch.uint8)
    assert net(obs).shape == (1, 5, 6, 1)
    q = net.q_values(obs)
    assert q.shape == (1, 5, 6) and q.dtype == torch.float32
    convs = [m for m in net.features if hasattr(m, "stride")]
    assert [(c.weight.shape[1:], c.stride) for c in convs] == [
        ((32, 4, 8, 8), 4),
        ((64, 32, 4, 4), 2),
        ((64, 64, 3, 3), 1),
    ]
    assert net.feature_size == 3136 and net.head.layers[0].weight.shape == (1, 512, 3136)


@pytest.mark.parametrize("channels_last", [False, True])
def test_members_are_independent_networks_computed_as_one(channels_last):
    """Member k of a 3-member network computes what a 1-member network with member k's weights
    computes, on its own inputs, whatever the memory format."""
    torch.manual_seed(0)
    population = seeded(QNetwork(4, ScalarTD(), members=3, dueling=True, channels_last=channels_last), 5, 6, 7)
    obs = torch.randint(0, 256, (3, 8, 4, 84, 84), dtype=torch.uint8)
    together = population(obs)
    for k, seed in enumerate((5, 6, 7)):
        alone = seeded(QNetwork(4, ScalarTD(), dueling=True), seed)
        torch.testing.assert_close(
            alone.state_dict()["head.value.0.weight"], member_state(population.state_dict(), k)["head.value.0.weight"]
        )
        torch.testing.assert_close(together[k : k + 1], alone(obs[k : k + 1]), rtol=1e-5, atol=1e-6)


def test_initial_weights_follow_the_torch_defaults_and_each_members_generator():
    net = seeded(QNetwork(6, ScalarTD(), members=2), 0, 0)
    state = net.state_dict()
    for name in ("features.0.weight", "head.layers.0.weight", "head.layers.2.bias"):
        torch.testing.assert_close(state[name][0], state[name][1])  # the same seed, the same member
    fan_in = 4 * 8 * 8
    weights = state["features.0.weight"]
    assert weights.abs().max() <= 1 / fan_in**0.5 and weights.std() > 0.8 / (3 * fan_in) ** 0.5
    other = seeded(QNetwork(6, ScalarTD()), 1)
    assert not torch.equal(other.state_dict()["features.0.weight"][0], weights[0])


def test_dueling_head_is_value_plus_centred_advantage():
    net = seeded(QNetwork(5, ScalarTD(), dueling=True))
    with torch.no_grad():
        net.head.value[-1].weight.zero_()
        net.head.value[-1].bias.fill_(2.0)
        net.head.advantage[-1].weight.zero_()
        net.head.advantage[-1].bias.copy_(torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]]))
    q = net.q_values(torch.zeros(1, 3, 4, 84, 84, dtype=torch.uint8))
    # V = 2, A = 1..5 with mean 3: Q = 2 + A - 3
    assert q[0].tolist() == [[0.0, 1.0, 2.0, 3.0, 4.0]] * 3
    # With learned weights the mean advantage over actions is V: Q's mean is V's output.
    net = seeded(QNetwork(5, ScalarTD(), dueling=True), 1)
    obs = torch.randint(0, 256, (1, 2, 4, 84, 84), dtype=torch.uint8)
    features = net.features(obs[0].float() / 255).reshape(1, 2, -1)
    torch.testing.assert_close(net.q_values(obs).mean(dim=2), net.head.value(features).squeeze(2))


def test_noisy_layer_is_the_factorised_noisy_linear_layer_and_noise_statistics():
    layer = NoisyLinear(2, 4000, 3, sigma0=0.5)
    net_generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        bound = 1 / 4000**0.5
        layer.weight_mu.uniform_(-bound, bound, generator=net_generator)
        layer.bias_mu.uniform_(-bound, bound, generator=net_generator)
        layer.weight_sigma.uniform_(0, 0.1, generator=net_generator)  # each weight its own sigma
        layer.bias_sigma.uniform_(0, 0.1, generator=net_generator)
    # f(x) = sign(x) sqrt(|x|) of a standard normal: mean 0, mean square E|x| = sqrt(2/pi)
    noise = scaled_noise(torch.randn(2, 4003, generator=torch.Generator().manual_seed(1)))
    assert abs(noise.mean().item()) < 0.03
    assert abs(noise.pow(2).mean().item() - (2 / np.pi) ** 0.5) < 0.03
    x = torch.randn(2, 5, 4000)
    out = layer(x, noise)
    for k in range(2):  # y = (mu_w + sigma_w * eps_out eps_in^T) x + mu_b + sigma_b * eps_out
        eps_in, eps_out = noise[k, :4000], noise[k, 4000:]
        weight = layer.weight_mu[k] + layer.weight_sigma[k] * torch.outer(eps_out, eps_in)
        bias = layer.bias_mu[k] + layer.bias_sigma[k] * eps_out
        torch.testing.assert_close(out[k], torch.nn.functional.linear(x[k], weight, bias), rtol=1e-4, atol=1e-5)
    # No noise: the mean layer.
    mean = torch.nn.functional.linear(x[1], layer.weight_mu[1], layer.bias_mu[1])
    torch.testing.assert_close(layer(x, None)[1], mean, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(out[1], mean)


def test_noisy_initialisation_follows_fortunato_et_al():
    net = seeded(QNetwork(3, ScalarTD(), noisy=True, noisy_sigma0=0.5))
    layer = net.head.layers[0]
    bound = 1 / 3136**0.5
    assert layer.weight_mu.abs().max() <= bound
    torch.testing.assert_close(layer.weight_sigma, torch.full_like(layer.weight_sigma, 0.5 * bound))
    torch.testing.assert_close(layer.bias_sigma, torch.full_like(layer.bias_sigma, 0.5 * bound))
    assert net.noise_size == (3136 + 512) + (512 + 3)


def test_c51_network_gives_distributions_and_their_expected_values():
    head = Categorical(51, -10.0, 10.0)
    net = seeded(QNetwork(4, head, dueling=True, noisy=True))
    obs = torch.randint(0, 256, (1, 8, 4, 84, 84), dtype=torch.uint8)
    log_probs = net(obs)
    assert log_probs.shape == (1, 8, 4, 51)
    torch.testing.assert_close(log_probs.exp().sum(dim=3), torch.ones(1, 8, 4))
    torch.testing.assert_close(net.q_values(obs), (log_probs.exp() * torch.linspace(-10, 10, 51)).sum(dim=3))


def test_iqn_network_gives_one_value_per_sampled_fraction():
    net = seeded(QNetwork(4, ImplicitQuantile(), iqn_cosines=64))
    obs = torch.randint(0, 256, (1, 3, 4, 84, 84), dtype=torch.uint8)
    taus = torch.rand(1, 3, 7)
    out = net(obs, taus=taus)
    assert out.shape == (1, 3, 4, 7)
    # Each fraction's column is the network evaluated at that fraction alone.
    torch.testing.assert_close(net(obs, taus=taus[:, :, 2:3])[..., 0], out[..., 2], rtol=1e-5, atol=1e-6)
    # phi(tau) uses cos(pi i tau) for i = 0..n-1 (Dabney et al. 2018b, eq. 4).
    assert net.embedding.frequencies.tolist()[:3] == pytest.approx([0.0, np.pi, 2 * np.pi])
