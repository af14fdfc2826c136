"""The agent: the TD update against hand-computed numbers, target syncs, exploration, the
optimisers, and members that never couple (clipping, noise, optimiser state, streams), mapped
one after another or with vmap."""

import functools

import numpy as np
import pytest
import torch
from helpers import BF16_HERE, CUDA
from torch import nn

from dqn_atari.agent import Agent, UpdateBatch, per_sample_loss
from dqn_atari.config import NetworkConfig, OptimizerConfig
from dqn_atari.networks import MLP, TORSOS, NatureTorso, QNetwork
from dqn_atari.value_heads import Categorical, ImplicitQuantile, QuantileRegression, ScalarTD

# How a population maps its members: one after another (the CPU's way) and with vmap (a GPU's).
MAPPINGS = [pytest.param(False, id="one-after-another"), pytest.param(True, id="vmap")]


def constant_q(networks: nn.ModuleList, values) -> None:
    """Make every member output `values` for every input: zero last-layer weights, bias = values."""
    with torch.no_grad():
        for network in networks:
            last = network.head.layers[-1]
            last.weight.zero_()
            last.bias.copy_(torch.tensor(values, dtype=torch.float32))


def make_agent(seeds=(0,), head=None, num_actions=3, **kw) -> Agent:
    """Adam at 1e-4 unless `optimizer` names another; `network` a dict of NetworkConfig's
    fields, `loss` the scalar head's loss, the rest Agent's settings."""
    optimizer = {"name": kw.pop("optimizer")} if "optimizer" in kw else {"name": "adam", "lr": 1e-4, "eps": 1e-8}
    for key in ("lr", "eps", "max_grad_norm"):
        if key in kw:
            optimizer[key] = kw.pop(key)
    if "loss" in kw:
        head = ScalarTD(kw.pop("loss"))
    network = NetworkConfig(**kw.pop("network", {}))
    return Agent.for_seeds(
        num_actions, list(seeds), head, network=network, optimizer=OptimizerConfig(**optimizer), **kw
    )


def member(batch: UpdateBatch, k: int) -> UpdateBatch:
    """Member k's part of a population's batch, as a population of one."""
    return UpdateBatch(*(None if t is None else t[k : k + 1] for t in batch))


def random_batch(
    members: int, size: int, actions: int, generator: torch.Generator, weights: bool = False
) -> UpdateBatch:
    obs, next_obs = (
        torch.randint(0, 256, (members, size, 4, 84, 84), dtype=torch.uint8, generator=generator) for _ in "ab"
    )
    return UpdateBatch(
        obs,
        torch.randint(0, actions, (members, size), generator=generator),
        torch.randint(-1, 2, (members, size), generator=generator).float(),
        0.99 * (torch.rand(members, size, generator=generator) > 0.1).float(),
        next_obs,
        torch.rand(members, size, generator=generator) if weights else None,
    )


def zeros_batch(n=2, actions=(0, 0), rewards=(1.0, -1.0), discounts=(0.99, 0.0)) -> UpdateBatch:
    obs = torch.zeros(1, n, 4, 84, 84, dtype=torch.uint8)
    return UpdateBatch(obs, torch.tensor([actions]), torch.tensor([rewards]), torch.tensor([discounts]), obs.clone())


@pytest.mark.parametrize("double_dqn,expected_next", [(False, 3.0), (True, 1.0)])
def test_td_target_single_and_double_terminal_and_not(double_dqn, expected_next):
    agent = make_agent(double_dqn=double_dqn)
    constant_q(agent.target, [1.0, 2.0, 3.0])
    constant_q(agent.online, [5.0, 0.0, 0.0])  # online prefers action 0: Double DQN reads target Q[0] = 1
    batch = UpdateBatch(*(t[0] for t in zeros_batch()[:5]))  # one member's: no member dimension
    noise = agent.draw_update_noise(2)
    terms = per_sample_loss(agent.online[0], agent.target[0], agent.head, batch, noise, double_dqn)
    # Q(s, 0) = 5; targets 1 + 0.99 * next and -1 (terminal): |TD| is the priority
    expected_targets = [1.0 + 0.99 * expected_next, -1.0]
    assert terms.priorities.tolist() == pytest.approx([5.0 - t for t in expected_targets], rel=1e-6)
    assert terms.q_taken.tolist() == [5.0, 5.0]


@pytest.mark.parametrize("loss,expected", [("huber", 1.03 - 0.5), ("mse", 1.03**2)])
def test_update_loss_huber_vs_mse(loss, expected):
    agent = make_agent(loss=loss)
    constant_q(agent.target, [1.0, 2.0, 3.0])
    constant_q(agent.online, [5.0, 0.0, 0.0])
    stats = agent.update(zeros_batch(1, (0,), (1.0,), (0.99,)))
    # target = 1 + 0.99 * 3 = 3.97, Q(s, 0) = 5: error 1.03
    assert stats.loss.shape == (1,) and stats.loss.item() == pytest.approx(expected, rel=1e-5)


def test_hard_target_sync_every_period_updates():
    agent = make_agent(target_update_period_updates=3)
    batch = random_batch(1, 4, 3, torch.Generator().manual_seed(0))
    initial = [p.clone() for p in agent.target.parameters()]
    for update in range(1, 7):
        agent.update(batch)
        pairs = zip(agent.target.parameters(), agent.online.parameters(), strict=True)
        same_as_online = all(torch.equal(t, o) for t, o in pairs)
        same_as_initial = all(torch.equal(t, i) for t, i in zip(agent.target.parameters(), initial, strict=True))
        assert same_as_online == (update % 3 == 0)
        if update < 3:
            assert same_as_initial


def test_soft_target_update_moves_by_tau():
    agent = make_agent(tau=0.25)
    before = [p.clone() for p in agent.target.parameters()]
    agent.update(random_batch(1, 2, 3, torch.Generator().manual_seed(0)))
    for b, t, o in zip(before, agent.target.parameters(), agent.online.parameters(), strict=True):
        torch.testing.assert_close(t, b + 0.25 * (o - b))


def test_epsilon_greedy_explores_at_each_members_rate_and_is_greedy_otherwise():
    agent = make_agent(seeds=(0, 1))
    constant_q(agent.online, [0.0, 9.0, 0.0])
    obs = np.zeros((2, 2000, 4, 84, 84), np.uint8)
    assert (agent.act(obs[:, :64], [0.0, 0.0]) == 1).all()
    actions = agent.act(obs, [0.3, 0.0])
    # Explored actions are uniform over 3, so a fraction 0.3 * 2/3 = 0.2 are not the greedy one.
    assert abs((actions[0] != 1).mean() - 0.2) < 0.03
    assert (actions[1] == 1).all()
    # one epsilon per game (a rule such as Ape-X's): game 0 always explores, game 1 never
    per_game = agent.act(obs[:, :2].repeat(1000, axis=1)[:, :2000], [np.tile([1.0, 0.0], 1000)] * 2)
    assert (per_game[:, 1::2] == 1).all() and abs((per_game[:, 0::2] != 1).mean() - 2 / 3) < 0.03


@pytest.mark.parametrize("vectorized", MAPPINGS)
def test_a_members_update_is_its_update_alone(vectorized):
    """Member k of a population of 3 updated on batch k ends where the same seed alone ends on
    the same batch: weights, target and optimiser state, through gradient-norm clipping (at
    0.1, where these members' norms are 0.03 to 0.3: it binds for some members at some updates
    and not for others, so clipping by the members' joint norm would fail here), noisy layers
    (each member's own noise generator), C51 and Double DQN, and two target syncs. Per-sample
    priorities, losses and greedy actions too."""
    settings = {
        "network": {"dueling": True, "noisy": True},
        "double_dqn": True,
        "max_grad_norm": 0.1,
        "target_update_period_updates": 2,
    }
    head = Categorical(51, -10.0, 10.0)
    population = make_agent((4, 5, 6), head, vectorized=vectorized, **settings)
    alone = [make_agent((s,), Categorical(51, -10.0, 10.0), **settings) for s in (4, 5, 6)]
    generator = torch.Generator().manual_seed(1)
    for _ in range(5):
        batch = random_batch(3, 8, 3, generator, weights=True)
        together = population.update(batch)
        for k, agent in enumerate(alone):
            own = agent.update(member(batch, k))
            torch.testing.assert_close(together.loss[k : k + 1], own.loss, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(together.priorities[k : k + 1], own.priorities, rtol=1e-4, atol=1e-5)
    obs = np.random.default_rng(0).integers(0, 256, (3, 16, 4, 84, 84), dtype=np.uint8)
    acted = population.act(obs, [0.0, 0.0, 0.0])
    for k, agent in enumerate(alone):
        assert (agent.act(obs[k : k + 1], [0.0]) == acted[k : k + 1]).all()
    for k, agent in enumerate(alone):
        state = population.member_state_dict(k)
        for net in ("online", "target"):
            for name, value in agent.member_state_dict(0)[net].items():
                torch.testing.assert_close(state[net][name], value, rtol=1e-4, atol=1e-5, msg=f"{net}.{name}")
        torch.testing.assert_close(state["acting_noise"], agent.member_state_dict(0)["acting_noise"])


def test_member_states_round_trip_into_a_population_and_out_again():
    population = make_agent((0, 1), max_grad_norm=10.0)
    population.update(random_batch(2, 4, 3, torch.Generator().manual_seed(0)))
    states = [population.member_state_dict(k) for k in (1, 0)]  # swapped
    other = make_agent((7, 8), max_grad_norm=10.0)
    other.load_member_state_dicts(states)
    for k, source in ((0, 1), (1, 0)):
        mine, theirs = other.member_state_dict(k), population.member_state_dict(source)
        for name, value in theirs["online"].items():
            assert torch.equal(mine["online"][name], value)
        for index, per_param in theirs["optimizer"]["state"].items():
            for key, value in per_param.items():
                assert torch.equal(torch.as_tensor(mine["optimizer"]["state"][index][key]), torch.as_tensor(value))
        assert torch.equal(mine["noise_generator"], theirs["noise_generator"])


def test_dropping_a_member_leaves_the_others_unchanged():
    population = make_agent((0, 1, 2), network={"noisy": True})
    generator = torch.Generator().manual_seed(0)
    population.update(random_batch(3, 4, 3, generator))
    before = [population.member_state_dict(k) for k in (0, 2)]
    population.keep_members([0, 2])
    assert population.members == 2 and len(population.online) == 2
    for k in range(2):
        after = population.member_state_dict(k)
        for name, value in before[k]["online"].items():
            assert torch.equal(after["online"][name], value)
    population.update(random_batch(2, 4, 3, generator))  # and it still learns


def test_noise_is_drawn_at_every_acting_step_or_held_between_updates():
    obs = np.zeros((1, 2, 4, 84, 84), np.uint8)
    per_step = make_agent(network={"noisy": True}, noise_per="step")
    per_step.act(obs, [0.0])
    first = per_step.acting_noise.clone()
    per_step.act(obs, [0.0])
    assert not torch.equal(first, per_step.acting_noise)
    per_update = make_agent(network={"noisy": True}, noise_per="update")
    held = per_update.acting_noise.clone()
    per_update.act(obs, [0.0])
    assert torch.equal(held, per_update.acting_noise)
    per_update.update(random_batch(1, 4, 3, torch.Generator().manual_seed(0)))
    assert not torch.equal(held, per_update.acting_noise)


@pytest.mark.parametrize(
    "head", [Categorical(51, -10.0, 10.0), QuantileRegression(200), ImplicitQuantile(8, 8, 4)], ids=["c51", "qr", "iqn"]
)
def test_every_head_composes_with_dueling_noisy_and_double_and_updates(head):
    agent = make_agent((0,), head, network={"dueling": True, "noisy": True}, double_dqn=True, lr=6.25e-5, eps=1.5e-4)
    batch = random_batch(1, 8, 3, torch.Generator().manual_seed(0), weights=True)
    stats = agent.update(batch)
    assert torch.isfinite(stats.loss).all() and stats.priorities.shape == (1, 8)
    assert (stats.priorities > 0).all()
    actions = agent.act(np.zeros((1, 5, 4, 84, 84), np.uint8), [0.0])
    assert actions.shape == (1, 5) and ((actions >= 0) & (actions < 3)).all()


def test_with_noisy_nets_double_dqn_chooses_the_bootstrap_action_with_noise_of_its_own():
    """DQN Zoo's Rainbow: the online network at s (the loss), the target network at s' and the
    online network at s' (choosing a') each get their own noise."""
    agent = make_agent((0,), network={"noisy": True, "noisy_sigma0": 50.0}, double_dqn=True)
    noise = agent.draw_update_noise(16)
    assert noise.selector is not None and not torch.equal(noise.selector, noise.online)
    batch = UpdateBatch(*(t[0] for t in random_batch(1, 16, 3, torch.Generator().manual_seed(0))[:5]))
    noise = noise._replace(**{name: t[0] for name, t in noise._asdict().items() if t is not None})
    losses = [
        per_sample_loss(agent.online[0], agent.target[0], agent.head, batch, noise._replace(selector=selector), True)
        for selector in (noise.selector, agent.draw_update_noise(16).selector[0])
    ]
    assert not torch.equal(losses[0].per_sample, losses[1].per_sample)  # a' read the selector's noise
    plain = make_agent((0,), network={"noisy": True}).draw_update_noise(16)
    assert plain.selector is None  # without Double DQN, a' is the target network's


@BF16_HERE
@pytest.mark.parametrize(
    "head,network",
    [
        (None, {}),
        (None, {"dueling": True}),
        (Categorical(51, -10.0, 10.0), {}),
        (QuantileRegression(200), {"dueling": True}),
        (ImplicitQuantile(8, 8, 4), {}),
    ],
    ids=["dqn", "dueling", "c51", "qr-dqn-dueling", "iqn"],
)
def test_under_bf16_q_values_stay_fp32_so_near_ties_are_still_told_apart(head, network):
    """Q-values at a trained network's scale (every output layer's bias raised by 5): bf16
    keeps 8 significant bits, so rounded Q-values of about 5 would tie whenever two actions are
    less than 1/32 apart and argmax would return the first. The output layer and all after it
    stay fp32: actions agree with fp32's, and each head's update runs (C51's projection too)."""
    agents = [make_agent((0,), head, network=network, precision=p) for p in ("fp32", "bf16")]
    for agent in agents:
        with torch.no_grad():
            for module in agent.online.modules():
                if isinstance(module, MLP):
                    module[2].bias.add_(5.0)
    obs = torch.randint(0, 256, (1, 200, 4, 84, 84), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    taus = torch.rand(1, 200, 4, generator=torch.Generator().manual_seed(2)) if head and head.samples_taus else None
    fp32, bf16 = (agent.q_values(obs, None, taus) for agent in agents)
    assert bf16.dtype == torch.float32
    top2 = bf16.topk(2, dim=2).values
    assert (top2[..., 0] > top2[..., 1]).all()  # no exact ties
    assert (fp32.argmax(dim=2) == bf16.argmax(dim=2)).float().mean() > 0.9
    stats = agents[1].update(random_batch(1, 8, 3, torch.Generator().manual_seed(0)))
    assert torch.isfinite(stats.loss).all()


@pytest.mark.parametrize("device", [CUDA])
@pytest.mark.parametrize(
    "settings",
    [
        {"optimizer": "deepmind_rmsprop", "loss": "huber"},  # Nature DQN
        {"optimizer": "adam", "network": {"dueling": True}, "double_dqn": True, "max_grad_norm": 10.0, "c51": True},
    ],
    ids=["nature", "dueling-c51-double"],
)
def test_updates_on_a_gpu_give_the_cpu_numbers(device, settings):
    """The same weights and batches on the GPU and on the CPU: the same losses, Q-values and
    priorities, update after update (TF32 off, so both compute in full fp32). Noisy layers are
    left out: the two devices draw their noise from different generators."""
    settings = dict(settings)
    head = (lambda: Categorical(51, -10.0, 10.0)) if settings.pop("c51", False) else (lambda: None)
    torch.backends.cudnn.allow_tf32, tf32 = False, torch.backends.cudnn.allow_tf32
    try:
        cpu = make_agent((0,), head(), 6, lr=1e-4, target_update_period_updates=2, **settings)
        gpu = make_agent((0,), head(), 6, lr=1e-4, target_update_period_updates=2, device=device, **settings)
        gpu.load_member_state_dicts([cpu.member_state_dict(0)])
        generator = torch.Generator().manual_seed(1)
        for _ in range(4):  # crosses two target syncs
            batch = random_batch(1, 32, 6, generator, weights=True)
            on_cpu = cpu.update(batch)
            on_gpu = gpu.update(UpdateBatch(*(t.to(device) for t in batch)))
            for key in ("loss", "q_mean", "priorities"):
                expected = getattr(on_cpu, key)
                torch.testing.assert_close(getattr(on_gpu, key).cpu(), expected, rtol=1e-4, atol=1e-5, msg=key)
        obs = batch.obs.numpy()
        torch.testing.assert_close(gpu.q_values(obs).cpu(), cpu.q_values(obs), rtol=1e-4, atol=1e-5)
    finally:
        torch.backends.cudnn.allow_tf32 = tf32


@pytest.mark.parametrize("device", [CUDA])
@pytest.mark.parametrize("members", [1, 3])
@pytest.mark.parametrize("vectorized", MAPPINGS)
@pytest.mark.parametrize(
    "settings",
    [
        {"optimizer": "deepmind_rmsprop", "loss": "huber"},  # Nature DQN
        {
            "optimizer": "adam",
            "lr": 6.25e-5,
            "eps": 1.5e-4,
            "network": {"dueling": True, "noisy": True},
            "double_dqn": True,
            "max_grad_norm": 10.0,
            "c51": True,
        },
    ],
    ids=["nature", "rainbow"],
)
def test_an_update_replayed_as_a_cuda_graph_computes_what_the_eager_update_does(device, members, vectorized, settings):
    """10 updates on fresh batches, through the warm-up, the capture and two target syncs, the
    same seeds (so the same noise, drawn outside the graph): the same losses, priorities and
    weights as the eager agent, for one member and for a population. With deterministic
    algorithms, as a run with train.deterministic: otherwise cuDNN's weight gradients and
    cuBLAS on the warm-up's side stream differ from run to run by themselves."""
    settings = dict(settings)
    c51 = settings.pop("c51", False)
    deterministic = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    try:
        seeds = list(range(members))
        agents = {
            name: make_agent(
                seeds,
                Categorical(51, -10.0, 10.0) if c51 else None,
                6,
                target_update_period_updates=4,
                device=device,
                cuda_graph=name == "graph",
                vectorized=vectorized,
                **settings,
            )
            for name in ("eager", "graph")
        }
        differences = []

        def same(actual, expected, msg):  # bit for bit
            differences.append((actual - expected).abs().max().item())
            torch.testing.assert_close(actual, expected, rtol=0.0, atol=0.0, msg=msg)

        generator = torch.Generator().manual_seed(1)
        for update in range(10):
            batch = UpdateBatch(*(t.to(device) for t in random_batch(members, 32, 6, generator, weights=True)))
            stats = {name: agent.update(batch) for name, agent in agents.items()}
            for key in ("loss", "q_mean", "priorities"):
                same(getattr(stats["graph"], key), getattr(stats["eager"], key), msg=f"update {update}: {key}")
        assert agents["graph"]._graph is not None, "the updates after the warm-up must replay the captured graph"
        eager, graph = agents["eager"], agents["graph"]
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
    agent = make_agent(cuda_graph=True)
    agent.update(zeros_batch())
    assert not agent.cuda_graph and agent._graph is None


class NormedNatureTorso(nn.Sequential):
    """The Nature torso with a LayerNorm over its features: a layer that mixes a sample's
    channels, which a member dimension folded into the channels would mix across members."""

    def __init__(self, frame_stack: int, frame_size: int):
        nature = NatureTorso(frame_stack, frame_size)
        features = nature(torch.zeros(1, frame_stack, frame_size, frame_size)).shape[1]
        super().__init__(nature, nn.LayerNorm(features))


@pytest.mark.parametrize("vectorized", MAPPINGS)
def test_a_new_torso_is_one_class_and_a_population_of_two_still_equals_two_networks(monkeypatch, vectorized):
    monkeypatch.setitem(TORSOS, "nature_layer_norm", NormedNatureTorso)

    def agent(seeds, **settings):
        network = functools.partial(QNetwork, 3, ScalarTD(), torso="nature_layer_norm")
        seeds = [np.random.SeedSequence(s) for s in seeds]
        # Adam with eps = 1: its step, lr * g / (|g| + eps), stays proportional to the gradient.
        # With a small eps, a gradient that LayerNorm's backward leaves as a near-cancelled sum
        # becomes a full lr-sized step whose size and sign the CPU's rounding decides, so the
        # comparison below would measure the CPU's kernels rather than the mapping.
        return Agent(network, seeds, optimizer=OptimizerConfig(name="adam", lr=1e-3, eps=1.0), **settings)

    population = agent((0, 1), vectorized=vectorized)
    alone = [agent((0,)), agent((1,))]
    assert isinstance(population.online[0].features[1], nn.LayerNorm)
    generator = torch.Generator().manual_seed(2)
    for _ in range(3):
        batch = random_batch(2, 8, 3, generator)
        population.update(batch)
        for k, single in enumerate(alone):
            single.update(member(batch, k))
    # the updates moved each member's LayerNorm gain away from its initial ones, its own way
    gains = [network.features[1].weight for network in population.online]
    assert not torch.equal(gains[0], gains[1]) and not torch.equal(gains[0], torch.ones_like(gains[0]))
    obs = torch.randint(0, 256, (2, 16, 4, 84, 84), dtype=torch.uint8, generator=generator)
    together = population.q_values(obs)
    for k, single in enumerate(alone):
        for name, value in single.member_state_dict(0)["online"].items():
            # up to ~2e-5 apart where kernels round LayerNorm's backward differently (a Zen 3's AVX2
            # ones); a mapping that mixed members would move whole layers by the step itself
            torch.testing.assert_close(population.member_state_dict(k)["online"][name], value, rtol=1e-4, atol=1e-4)
        # LayerNorm over the small features of a fresh torso magnifies those roundings in the
        # Q-values to a few percent of their size; members mixed would change them by their size
        q_alone = single.q_values(obs[k : k + 1])
        torch.testing.assert_close(together[k : k + 1], q_alone, rtol=0, atol=0.1 * q_alone.abs().max().item())
