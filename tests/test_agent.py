"""The DQN update against hand-computed numbers."""

import numpy as np
import pytest
import torch
from conftest import CUDA

from dqn_atari.agent import DQNAgent, linear_epsilon
from dqn_atari.networks import QNetwork


def constant_q(net: QNetwork, values) -> None:
    """Make a network output `values` for every input: zero last-layer weights, bias = values."""
    with torch.no_grad():
        last = net.head.layers[-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor(values, dtype=torch.float32))


def make_agent(**kw) -> DQNAgent:
    torch.manual_seed(0)
    return DQNAgent(3, optimizer="adam", lr=1e-4, eps=1e-8, **kw)


def batch(n=2):
    obs = torch.zeros(n, 4, 84, 84, dtype=torch.uint8)
    return obs, obs.clone()


def test_network_takes_uint8_and_outputs_one_value_per_action():
    net = QNetwork(6)
    q = net(torch.randint(0, 256, (5, 4, 84, 84), dtype=torch.uint8))
    assert q.shape == (5, 6) and q.dtype == torch.float32
    convs = [m for m in net.features if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (32, (8, 8), (4, 4)),
        (64, (4, 4), (2, 2)),
        (64, (3, 3), (1, 1)),
    ]
    assert net.head.layers[0].out_features == 512


@pytest.mark.parametrize("double_dqn,expected_next", [(False, 3.0), (True, 1.0)])
def test_td_target_single_and_double_terminal_and_not(double_dqn, expected_next):
    agent = make_agent(double_dqn=double_dqn)
    constant_q(agent.target, [1.0, 2.0, 3.0])
    constant_q(agent.online, [5.0, 0.0, 0.0])  # online prefers action 0: Double DQN reads target Q[0] = 1
    _, next_obs = batch()
    rewards = torch.tensor([1.0, -1.0])
    discounts = torch.tensor([0.99, 0.0])  # second transition is terminal
    y = agent.td_target(rewards, discounts, next_obs)
    assert y.tolist() == pytest.approx([1.0 + 0.99 * expected_next, -1.0])


@pytest.mark.parametrize("loss,expected", [("huber", 1.03 - 0.5), ("mse", 1.03**2)])
def test_loss_huber_vs_mse(loss, expected):
    agent = make_agent(loss=loss)
    constant_q(agent.target, [1.0, 2.0, 3.0])
    constant_q(agent.online, [5.0, 0.0, 0.0])
    obs, next_obs = batch(1)
    stats = agent.update(obs, torch.tensor([0]), torch.tensor([1.0]), torch.tensor([0.99]), next_obs)
    # target = 1 + 0.99 * 3 = 3.97, Q(s, 0) = 5: error 1.03
    assert stats["loss"].item() == pytest.approx(expected, rel=1e-5)


def test_hard_target_sync_every_period_updates():
    agent = make_agent(target_update_period_updates=3)
    obs, next_obs = batch(4)
    args = (obs, torch.zeros(4, dtype=torch.int64), torch.ones(4), torch.full((4,), 0.9), next_obs)
    initial = [p.clone() for p in agent.target.parameters()]
    for update in range(1, 7):
        agent.update(*args)
        pairs = zip(agent.target.parameters(), agent.online.parameters(), strict=True)
        same_as_online = all(torch.equal(t, o) for t, o in pairs)
        same_as_initial = all(torch.equal(t, i) for t, i in zip(agent.target.parameters(), initial, strict=True))
        if update % 3 == 0:
            assert same_as_online
        else:
            assert not same_as_online
        if update < 3:
            assert same_as_initial


def test_soft_target_update_moves_by_tau():
    agent = make_agent(tau=0.25)
    before = [p.clone() for p in agent.target.parameters()]
    obs, next_obs = batch(2)
    agent.update(obs, torch.zeros(2, dtype=torch.int64), torch.ones(2), torch.full((2,), 0.9), next_obs)
    for b, t, o in zip(before, agent.target.parameters(), agent.online.parameters(), strict=True):
        torch.testing.assert_close(t, b + 0.25 * (o - b))


def test_epsilon_schedule_values():
    assert linear_epsilon(0, 1.0, 0.1, 1_000_000) == 1.0
    assert linear_epsilon(500_000, 1.0, 0.1, 1_000_000) == pytest.approx(0.55)
    assert linear_epsilon(1_000_000, 1.0, 0.1, 1_000_000) == pytest.approx(0.1)
    assert linear_epsilon(7_000_000, 1.0, 0.1, 1_000_000) == pytest.approx(0.1)


def test_epsilon_greedy_explores_at_the_given_rate_and_is_greedy_otherwise():
    agent = make_agent()
    constant_q(agent.online, [0.0, 9.0, 0.0])
    obs = np.zeros((4000, 4, 84, 84), np.uint8)
    assert (agent.act(obs[:64], 0.0) == 1).all()
    actions = agent.act(obs, 0.3)
    # Explored actions are uniform over 3, so a fraction 0.3 * 2/3 = 0.2 are not the greedy one.
    assert abs((actions != 1).mean() - 0.2) < 0.03


def test_deepmind_rmsprop_two_steps_by_hand():
    """w <- w - lr g / sqrt(E[g^2] - E[g]^2 + eps), both averages from zero: computed here with
    plain floats for two steps, and different from torch's RMSprop (eps outside the root)."""
    import math

    from dqn_atari.optimizers import DeepMindRMSprop

    lr, alpha, eps = 0.1, 0.95, 1e-3
    w0 = [1.0, -2.0]
    grads = [[0.5, 0.1], [-0.3, 0.2]]
    expected = []
    for i in range(2):
        w, mean_g, mean_g2 = w0[i], 0.0, 0.0
        for g in (grads[0][i], grads[1][i]):
            mean_g = alpha * mean_g + (1 - alpha) * g
            mean_g2 = alpha * mean_g2 + (1 - alpha) * g * g
            w -= lr * g / math.sqrt(mean_g2 - mean_g**2 + eps)
        expected.append(w)

    def two_steps(make):
        w = torch.tensor(w0, dtype=torch.float64, requires_grad=True)
        opt = make([w])
        for g in grads:
            w.grad = torch.tensor(g, dtype=torch.float64)
            opt.step()
        return w.detach().tolist()

    assert two_steps(lambda p: DeepMindRMSprop(p, lr=lr, alpha=alpha, eps=eps)) == pytest.approx(expected, rel=1e-12)
    torch_version = two_steps(lambda p: torch.optim.RMSprop(p, lr=lr, alpha=alpha, eps=eps, centered=True))
    assert torch_version != pytest.approx(expected, rel=1e-3)


def test_dueling_head_is_value_plus_centred_advantage():
    torch.manual_seed(0)
    net = QNetwork(5, dueling=True)
    with torch.no_grad():
        net.head.value[-1].weight.zero_()
        net.head.value[-1].bias.fill_(2.0)
        net.head.advantage[-1].weight.zero_()
        net.head.advantage[-1].bias.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]))
    q = net(torch.zeros(3, 4, 84, 84, dtype=torch.uint8))
    # V = 2, A = 1..5 with mean 3: Q = 2 + A - 3
    assert q.tolist() == [[0.0, 1.0, 2.0, 3.0, 4.0]] * 3
    # With learned weights the mean advantage over actions is V: Q's mean is V's output.
    torch.manual_seed(1)
    net = QNetwork(5, dueling=True)
    obs = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    features = net.features(obs.float() / 255)
    torch.testing.assert_close(net(obs).mean(dim=1), net.head.value(features).squeeze(1))


def test_noisy_layer_shapes_initialisation_noise_statistics_and_seeding():
    from dqn_atari.networks import NoisyLinear

    torch.manual_seed(0)
    layer = NoisyLinear(4000, 3, sigma0=0.5)
    assert layer.weight_mu.shape == layer.weight_sigma.shape == (3, 4000)
    assert layer.noise_in.shape == (4000,) and layer.noise_out.shape == (3,)
    bound = 1 / 4000**0.5
    assert layer.weight_mu.abs().max() <= bound and torch.allclose(layer.weight_sigma, torch.tensor(0.5 * bound))
    # f(x) = sign(x) sqrt(|x|) of a standard normal: mean 0, mean square E|x| = sqrt(2/pi)
    draws = []
    for _ in range(50):
        layer.reset_noise()
        draws.append(layer.noise_in.clone())
    draws = torch.stack(draws)
    assert abs(draws.mean().item()) < 0.01
    assert abs(draws.pow(2).mean().item() - (2 / np.pi) ** 0.5) < 0.01
    # The output moves with the noise, and the same torch seed gives the same noise.
    x = torch.randn(2, 4000)
    before = layer(x)
    layer.reset_noise()
    assert not torch.allclose(before, layer(x))
    torch.manual_seed(7)
    layer.reset_noise()
    first = layer(x)
    torch.manual_seed(7)
    layer.reset_noise()
    torch.testing.assert_close(layer(x), first)
    # The layer is y = (mu_w + sigma_w * eps_out eps_in^T) x + mu_b + sigma_b * eps_out, however
    # it is computed.
    with torch.no_grad():
        layer.weight_sigma.uniform_(0, 0.1)  # each weight its own sigma
    noisy_weight = layer.weight_mu + layer.weight_sigma * torch.outer(layer.noise_out, layer.noise_in)
    explicit = torch.nn.functional.linear(x, noisy_weight, layer.bias_mu + layer.bias_sigma * layer.noise_out)
    torch.testing.assert_close(layer(x), explicit)
    with torch.no_grad():
        layer.weight_sigma.zero_()
        layer.bias_sigma.zero_()
    torch.testing.assert_close(layer(x), torch.nn.functional.linear(x, layer.weight_mu, layer.bias_mu))


def test_categorical_projection_by_hand():
    """Support -2..2 (5 atoms, spacing 1). Rows: a terminal with reward 0.5; reward 1 and
    gamma^k 0.5 on a uniform distribution; targets beyond either end of the support."""
    from dqn_atari.agent import categorical_projection

    support = torch.linspace(-2, 2, 5)
    uniform = torch.full((4, 5), 0.2)
    projected = categorical_projection(
        uniform, torch.tensor([0.5, 1.0, 5.0, -5.0]), torch.tensor([0.0, 0.5, 1.0, 0.9]), support
    )
    expected = torch.tensor(
        [
            [0.0, 0.0, 0.5, 0.5, 0.0],  # all mass at 0.5: half to atom 0, half to atom 1
            [0.0, 0.0, 0.3, 0.4, 0.3],  # 1 + 0.5 z = 0, 0.5, 1, 1.5, 2
            [0.0, 0.0, 0.0, 0.0, 1.0],  # clipped at v_max
            [1.0, 0.0, 0.0, 0.0, 0.0],  # clipped at v_min
        ]
    )
    torch.testing.assert_close(projected, expected)
    torch.testing.assert_close(projected.sum(dim=1), torch.ones(4))


@pytest.mark.parametrize("double_dqn", [False, True])
def test_rainbow_network_composes_and_updates(double_dqn):
    """C51 with dueling and noisy heads (and Double DQN): Q-values are the distributions'
    expected values, and an update gives a finite loss and one priority per sample."""
    torch.manual_seed(0)
    agent = DQNAgent(
        4,
        network={"dueling": True, "noisy": True, "atoms": 51},
        double_dqn=double_dqn,
        optimizer="adam",
        lr=6.25e-5,
        eps=1.5e-4,
    )
    obs = torch.randint(0, 256, (8, 4, 84, 84), dtype=torch.uint8)
    log_probs = agent.online(obs)
    assert log_probs.shape == (8, 4, 51)
    torch.testing.assert_close(log_probs.exp().sum(dim=2), torch.ones(8, 4))
    torch.testing.assert_close(agent.online.q_values(obs), (log_probs.exp() * torch.linspace(-10, 10, 51)).sum(dim=2))
    weights = torch.rand(8)
    stats = agent.update(obs, torch.randint(0, 4, (8,)), torch.ones(8), torch.full((8,), 0.97), obs, weights)
    assert torch.isfinite(stats["loss"]) and stats["priorities"].shape == (8,) and (stats["priorities"] > 0).all()


@pytest.mark.parametrize("device", [CUDA])
@pytest.mark.parametrize(
    "settings",
    [
        {"optimizer": "deepmind_rmsprop", "loss": "huber"},  # Nature DQN
        {"optimizer": "adam", "network": {"dueling": True, "atoms": 51}, "double_dqn": True, "max_grad_norm": 10.0},
    ],
    ids=["nature", "dueling-c51-double"],
)
def test_updates_on_a_gpu_give_the_cpu_numbers(device, settings):
    """The same weights and batches on the GPU and on the CPU: the same losses, Q-values and
    priorities, update after update (TF32 off, so both compute in full fp32). Noisy layers are
    left out: the two devices draw their noise from different generators."""
    torch.backends.cudnn.allow_tf32, tf32 = False, torch.backends.cudnn.allow_tf32
    try:
        torch.manual_seed(0)
        cpu = DQNAgent(6, lr=1e-4, target_update_period_updates=2, **settings)
        gpu = DQNAgent(6, lr=1e-4, target_update_period_updates=2, device=device, **settings)
        gpu.load_state_dict(cpu.state_dict())
        rng = torch.Generator().manual_seed(1)
        for _ in range(4):  # crosses two target syncs
            obs, next_obs = (torch.randint(0, 256, (32, 4, 84, 84), dtype=torch.uint8, generator=rng) for _ in "ab")
            actions = torch.randint(0, 6, (32,), generator=rng)
            rewards = torch.randint(-1, 2, (32,), generator=rng).float()
            discounts = 0.99 * (torch.rand(32, generator=rng) > 0.1).float()
            weights = torch.rand(32, generator=rng)
            batch = (obs, actions, rewards, discounts, next_obs, weights)
            on_cpu = cpu.update(*batch)
            on_gpu = gpu.update(*(x.to(device) for x in batch))
            for key in ("loss", "q_mean", "priorities"):
                torch.testing.assert_close(on_gpu[key].cpu(), on_cpu[key], rtol=1e-4, atol=1e-5, msg=key)
        torch.testing.assert_close(gpu.q_values(obs.numpy()).cpu(), cpu.q_values(obs.numpy()), rtol=1e-4, atol=1e-5)
    finally:
        torch.backends.cudnn.allow_tf32 = tf32


@pytest.mark.parametrize("device", [CUDA])
@pytest.mark.parametrize(
    "settings",
    [
        {"optimizer": "deepmind_rmsprop", "loss": "huber"},  # Nature DQN
        {
            "optimizer": "adam",
            "lr": 6.25e-5,
            "eps": 1.5e-4,
            "network": {"dueling": True, "noisy": True, "atoms": 51},
            "double_dqn": True,
            "max_grad_norm": 10.0,
        },
    ],
    ids=["nature", "rainbow"],
)
def test_an_update_replayed_as_a_cuda_graph_computes_what_the_eager_update_does(device, settings):
    """10 updates on fresh batches, through the warm-up, the capture and two target syncs, each
    with the same noise: the same losses, priorities and weights as the eager agent. With
    deterministic algorithms, as a run with train.deterministic: otherwise cuDNN's weight
    gradients and cuBLAS on the warm-up's side stream differ from run to run by themselves."""
    deterministic = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    try:
        torch.manual_seed(0)
        eager = DQNAgent(6, target_update_period_updates=4, device=device, **settings)
        graph = DQNAgent(6, target_update_period_updates=4, device=device, cuda_graph=True, **settings)
        graph.online.load_state_dict(eager.online.state_dict())
        graph.target.load_state_dict(eager.target.state_dict())
        differences = []

        def same(actual, expected, msg):  # bit for bit
            differences.append((actual - expected).abs().max().item())
            torch.testing.assert_close(actual, expected, rtol=0.0, atol=0.0, msg=msg)

        rng = torch.Generator().manual_seed(1)
        for update in range(10):
            obs, next_obs = (torch.randint(0, 256, (32, 4, 84, 84), dtype=torch.uint8, generator=rng) for _ in "ab")
            actions = torch.randint(0, 6, (32,), generator=rng)
            rewards = torch.randint(-1, 2, (32,), generator=rng).float()
            discounts = 0.99 * (torch.rand(32, generator=rng) > 0.1).float()
            weights = torch.rand(32, generator=rng)
            batch = [x.to(device) for x in (obs, actions, rewards, discounts, next_obs, weights)]
            stats = {}
            for name, agent in (("eager", eager), ("graph", graph)):
                torch.cuda.manual_seed(update)  # the same noise draws for both
                stats[name] = agent.update(*batch)
            for key in ("loss", "q_mean", "priorities"):
                same(stats["graph"][key], stats["eager"][key], msg=f"update {update}: {key}")
        assert graph._graph is not None, "the updates after the warm-up must replay the captured graph"
        for (key, a), b in zip(eager.online.state_dict().items(), graph.online.state_dict().values(), strict=True):
            same(b, a, msg=key)
        for a, b in zip(eager.target.parameters(), graph.target.parameters(), strict=True):
            same(b, a, msg="target")
        print(f"largest difference, graph vs eager: {max(differences):.3g}")
    finally:
        torch.use_deterministic_algorithms(deterministic[0])
        torch.backends.cudnn.benchmark = deterministic[1]


def test_on_a_cpu_cuda_graph_is_ignored():
    """A config written for a GPU cluster runs unchanged on a laptop: the eager update."""
    agent = DQNAgent(4, cuda_graph=True)
    obs, next_obs = batch(8)
    agent.update(obs, torch.zeros(8, dtype=torch.long), torch.ones(8), torch.full((8,), 0.99), next_obs)
    assert not agent.cuda_graph and agent._graph is None
