"""The DQN agent for K seeds at once: epsilon-greedy acting and the TD update with a target
network, every member with its own parameters, optimiser state, exploration stream and noise
generator. A single run is K = 1; nothing here couples members (see `Agent`).

The learner is one pure function, `per_sample_loss(online, target, head, batch, noise,
double_dqn)`: per-sample losses from parameters, target parameters, a batch and the update's
random draws, as DQN Zoo writes each agent's `loss_fn`. The eager update, the update replayed as
a CUDA graph, and a population of any size all call it. What the network outputs and how it
learns from it is its value head's (`dqn_atari/value_heads.py`); Double DQN is only a choice of
which network picks the bootstrap action, shared by every head.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from dqn_atari.config import to_dict
from dqn_atari.networks import QNetwork, initialize, member_state, network_settings, scaled_noise, stacked_state
from dqn_atari.optimizers import make_optimizer
from dqn_atari.value_heads import ScalarTD, ValueHead, value_head_from_config


class Batch(NamedTuple):
    """An update's transitions, one batch per member: (K, B, ...) device tensors."""

    obs: torch.Tensor  # (K, B, stack, H, W) uint8
    actions: torch.Tensor  # (K, B) int64
    rewards: torch.Tensor  # (K, B) float32, n-step discounted sums of learning rewards
    discounts: torch.Tensor  # (K, B) float32, gamma^n, 0 where a learning terminal came first
    next_obs: torch.Tensor  # (K, B, stack, H, W) uint8, the states bootstrapped from
    weights: torch.Tensor | None = None  # (K, B) prioritized replay's importance weights


class UpdateNoise(NamedTuple):
    """An update's random draws, each member's from its own generator (None where unused)."""

    online: torch.Tensor | None = None  # (K, noise_size) for the online network's noisy layers
    target: torch.Tensor | None = None  # ...and the target network's, drawn independently
    online_taus: torch.Tensor | None = None  # (K, B, N) IQN's fractions for Q(s, a)
    target_taus: torch.Tensor | None = None  # (K, B, N') for the target's quantiles at s'
    policy_taus: torch.Tensor | None = None  # (K, B, K') to choose the bootstrap action
    # (K, noise_size): the online network's own draw for choosing a' with Double DQN, apart from
    # the loss's (DQN Zoo's Rainbow gives each of its three network applications its own key)
    selector: torch.Tensor | None = None


class LossTerms(NamedTuple):
    per_sample: torch.Tensor  # (K, B), with gradient
    priorities: torch.Tensor  # (K, B), detached
    q_taken: torch.Tensor  # (K, B) Q of the actions taken, detached


def per_sample_loss(
    online: QNetwork, target: QNetwork, head: ValueHead, batch: Batch, noise: UpdateNoise, double_dqn: bool
) -> LossTerms:
    """The TD loss of each transition against r + gamma^n (target network's value at s' of the
    action a' it bootstraps on): a' is greedy in the target network, or with Double DQN in the
    online network (van Hasselt et al. 2016). With noisy layers every network application has
    its own noise: the online network's at s, the target's at s' (the NoisyNet-DQN loss of
    Fortunato et al. 2018) and, with Double DQN, the online network's at s' that chooses a'."""
    with torch.no_grad():
        target_next = target(batch.next_obs, noise.target, noise.target_taus)
        if double_dqn:
            chooser = online.q_values(batch.next_obs, noise.selector, noise.policy_taus)
        elif head.samples_taus:  # IQN: greedy in the mean over K' more fractions
            chooser = target.q_values(batch.next_obs, noise.target, noise.policy_taus)
        else:
            chooser = head.q_values(target_next)
        best = chooser.argmax(dim=2)  # (K, B)
        target_chosen = _at_actions(target_next, best)
    online_out = online(batch.obs, noise.online, noise.online_taus)
    taken = _at_actions(online_out, batch.actions)
    per_sample, priorities = head.loss(taken, target_chosen, batch.rewards, batch.discounts, noise.online_taus)
    q_taken = head.q_values(taken.detach().unsqueeze(2)).squeeze(2)
    return LossTerms(per_sample, priorities, q_taken)


def _at_actions(output: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """(K, B, A, k) at one action per sample (K, B) -> (K, B, k)."""
    index = actions[:, :, None, None].expand(-1, -1, 1, output.shape[3])
    return output.gather(2, index).squeeze(2)


def linear_epsilon(frames: int, start: float, end: float, decay_frames: int, begin_frames: int = 0) -> float:
    """Epsilon held at `start` until `begin_frames`, then annealed linearly to `end` over
    `decay_frames` frames."""
    fraction = min(max(frames - begin_frames, 0) / decay_frames, 1.0)
    return start + fraction * (end - start)


class Agent:
    """K DQN agents of one config, trained in lockstep: one acting forward pass for all their
    games and one update for all of them. Per member and never shared: parameters and target
    parameters (a leading member dimension on every tensor), optimiser state (Adam and RMSProp
    are elementwise), gradient-norm clipping (each member's own norm), the exploration stream
    (numpy) and the generator of its noise and IQN fractions (torch), all seeded from the
    member's own seed."""

    def __init__(
        self,
        num_actions: int,
        value_head: ValueHead,
        member_seeds: list[np.random.SeedSequence],
        *,
        network: dict | None = None,
        noise_per: str = "step",
        double_dqn: bool = False,
        target_update_period_updates: int = 2_500,
        tau: float = 1.0,
        optimizer: str = "deepmind_rmsprop",
        lr: float = 2.5e-4,
        eps: float = 0.01 / 32**2,
        rmsprop_alpha: float = 0.95,
        rmsprop_centered: bool = True,
        max_grad_norm: float | None = None,
        device: str | torch.device = "cpu",
        cuda_graph: bool = False,
        precision: str = "fp32",
    ):
        self.num_actions = num_actions
        self.device = torch.device(device)
        self.head = value_head.to(self.device)
        self.members = len(member_seeds)
        self.double_dqn, self.noise_per = double_dqn, noise_per
        self.target_update_period_updates, self.tau, self.max_grad_norm = (
            target_update_period_updates,
            tau,
            max_grad_norm,
        )
        # bfloat16 autocast for the forward passes (weights, optimiser state and the loss's
        # reduction stay fp32): a change of numerics, off by default.
        self.autocast = precision == "bf16"
        self.network_settings = dict(network or {})

        # Each member's seed gives its exploration stream, its initial weights (a CPU generator:
        # the same network on every device) and its noise generator on the device.
        self.rngs, init_generators, self.generators = [], [], []
        for seed in member_seeds:
            exploration, weights, noise = seed.spawn(3)
            self.rngs.append(np.random.Generator(np.random.PCG64(exploration)))
            init_generators.append(torch.Generator().manual_seed(int(weights.generate_state(1, np.uint64)[0])))
            generator = torch.Generator(device=self.device)
            generator.manual_seed(int(noise.generate_state(1, np.uint64)[0]))
            self.generators.append(generator)
        self.online = self._network(self.members)
        initialize(self.online, init_generators)
        self.online.to(self.device)
        self.target = self._network(self.members).to(self.device)
        self.target.load_state_dict(self.online.state_dict())
        self.target.requires_grad_(False)
        self.noisy = self.online.noisy
        # The noise acting uses: redrawn at every acting step (noise_per="step") or the last
        # update's online noise ("update"); (K, noise_size), None without noisy layers.
        self.acting_noise = self._draw_noise() if self.noisy else None

        # A CUDA graph replays the whole update (loss, backward, clipping, optimiser step) as one
        # launch: at batch 32 the GPU otherwise waits on Python launching ~100-500 small kernels.
        # Only on a GPU. There torch's Adam and RMSprop always keep their step count on the
        # device (`capturable`), with or without the graph, so that the graph changes the speed
        # and never the numbers. The update's random draws are inputs of the graph, drawn eagerly.
        self.cuda_graph = cuda_graph and self.device.type == "cuda"
        self.optimizer_settings = (optimizer, lr, eps, rmsprop_alpha, rmsprop_centered)
        self.optimizer = self._optimizer()
        self._graph: torch.cuda.CUDAGraph | None = None
        self._graph_signature: tuple | None = None
        self._static_inputs: tuple = ()  # the graph's inputs: a batch's and the noise's tensors
        self._static_stats: dict[str, torch.Tensor] = {}  # the graph's outputs
        self._warmup_left = self.GRAPH_WARMUP_UPDATES
        self.updates = 0

    @classmethod
    def for_seeds(cls, num_actions: int, seeds: list[int], value_head: ValueHead | None = None, **settings) -> Agent:
        """An agent with one member per seed (tests, benchmarks); `settings` as __init__'s."""
        head = value_head or ScalarTD(settings.pop("loss", "huber"))
        return cls(num_actions, head, [np.random.SeedSequence(s) for s in seeds], **settings)

    def _network(self, members: int) -> QNetwork:
        return QNetwork(self.num_actions, self.head, members=members, **self.network_settings)

    def _optimizer(self) -> torch.optim.Optimizer:
        name, lr, eps, alpha, centered = self.optimizer_settings
        return make_optimizer(
            self.online.parameters(), name, lr, eps, alpha, centered, capturable=self.device.type == "cuda"
        )

    # ------------------------------------------------------------------ random draws
    def _normal(self, generator: torch.Generator, *shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, device=self.device)

    def _draw_noise(self) -> torch.Tensor:
        """(K, noise_size): f(eps) for every noisy layer, member k's from its own generator."""
        size = self.online.noise_size
        return torch.stack([scaled_noise(self._normal(g, size)) for g in self.generators])

    def _draw_taus(self, batch: int, samples: int) -> torch.Tensor:
        """(K, batch, samples) fractions in U(0, 1), member k's from its own generator."""
        return torch.stack([torch.rand(batch, samples, generator=g, device=self.device) for g in self.generators])

    def draw_update_noise(self, batch_size: int) -> UpdateNoise:
        online = self._draw_noise() if self.noisy else None
        target = self._draw_noise() if self.noisy else None
        selector = self._draw_noise() if self.noisy and self.double_dqn else None
        if not self.head.samples_taus:
            return UpdateNoise(online, target, selector=selector)
        h = self.head
        return UpdateNoise(
            online,
            target,
            self._draw_taus(batch_size, h.online_samples),
            self._draw_taus(batch_size, h.target_samples),
            self._draw_taus(batch_size, h.policy_samples),
            selector,
        )

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def q_values(
        self, obs: np.ndarray | torch.Tensor, noise: torch.Tensor | None = None, taus: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(K, N, A) for observations (K, N, stack, H, W), with the given noise (None: the noise
        off) and IQN fractions (K, N, K')."""
        x = obs if isinstance(obs, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(obs))
        x = x.to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            return self.online.q_values(x, noise, taus).float()

    def act(self, obs: np.ndarray, epsilons: list[float]) -> np.ndarray:
        """Epsilon-greedy for each member's games, obs (K, N, stack, H, W) -> actions (K, N):
        one forward pass for all, and none at all when every game explores (most of early
        training). Each member draws from its own streams exactly what it would draw alone."""
        members, n = obs.shape[:2]
        explore = np.empty((members, n), dtype=bool)
        random_actions = np.empty((members, n), dtype=np.int64)
        for k, (rng, epsilon) in enumerate(zip(self.rngs, epsilons, strict=True)):
            explore[k] = rng.random(n) < epsilon
            random_actions[k] = rng.integers(0, self.num_actions, size=n)
        if self.noisy and self.noise_per == "step":
            # Dopamine and DQN Zoo draw the online network's noise afresh for every action,
            # from the first one: before learning starts, noisy nets are what explores.
            self.acting_noise = self._draw_noise()
        # Drawn whether or not a forward pass follows, so that each member's generator moves
        # as it would alone (where its own exploration alone decides the pass).
        taus = self._draw_taus(n, self.head.policy_samples) if self.head.samples_taus else None
        if explore.all():
            return random_actions
        greedy = self.q_values(obs, self.acting_noise, taus).argmax(dim=2).cpu().numpy()
        return np.where(explore, random_actions, greedy)

    # ------------------------------------------------------------------ learning
    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One gradient step for every member on its batch. Returns detached device tensors:
        loss (K,), q_mean (K,) and priorities (K, B) (no host sync here; the caller reads them
        when it needs them)."""
        noise = self.draw_update_noise(batch.actions.shape[1])
        stats = self._graph_step(batch, noise) if self.cuda_graph else self._learning_step(batch, noise)
        if self.noisy and self.noise_per == "update":
            self.acting_noise = noise.online  # held for acting until the next update
        self.updates += 1
        if self.tau < 1.0:
            self.soft_update()
        elif self.updates % self.target_update_period_updates == 0:
            self.sync_target()  # in place: a captured update reads the new target weights
        return stats

    def _learning_step(self, batch: Batch, noise: UpdateNoise) -> dict[str, torch.Tensor]:
        """The update's device work, the same eagerly and inside a CUDA graph."""
        # No cache of casted weights under a CUDA graph: a cached cast would outlive the capture.
        with torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.autocast, cache_enabled=not self.cuda_graph
        ):
            terms = per_sample_loss(self.online, self.target, self.head, batch, noise, self.double_dqn)
        per_sample = terms.per_sample.float()
        weighted = per_sample if batch.weights is None else per_sample * batch.weights
        member_loss = weighted.mean(dim=1)  # (K,): each member's own batch mean
        self.optimizer.zero_grad(set_to_none=True)
        # Member k's loss depends on member k's parameters only: the gradient of the sum is
        # each member's own gradient.
        member_loss.sum().backward()
        if self.max_grad_norm is not None:
            clip_grad_norm_per_member(list(self.online.parameters()), self.max_grad_norm)
        self.optimizer.step()
        return {
            "loss": member_loss.detach(),
            "q_mean": terms.q_taken.float().mean(dim=1),
            "priorities": terms.priorities.float(),
        }

    # Eager updates before the capture, on a side stream, as torch asks: they create the
    # optimiser's state and cuBLAS's workspace, which a graph cannot allocate. They are real
    # updates, so a run's sequence of updates is the same with and without the graph.
    GRAPH_WARMUP_UPDATES = 3

    def _graph_step(self, batch: Batch, noise: UpdateNoise) -> dict[str, torch.Tensor]:
        inputs = (*batch, *noise)
        signature = tuple(None if t is None else (t.shape, t.dtype) for t in inputs)
        if self._graph is not None and signature != self._graph_signature:
            self._forget_graph()  # another batch size, or weights that come and go
        if self._graph is None and self._warmup_left > 0:
            self._warmup_left -= 1
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                stats = self._learning_step(batch, noise)
            torch.cuda.current_stream(self.device).wait_stream(side)
            return stats
        graph = self._graph
        if graph is None:
            self._static_inputs = tuple(None if t is None else t.clone() for t in inputs)
            static_batch = Batch(*self._static_inputs[: len(batch)])
            static_noise = UpdateNoise(*self._static_inputs[len(batch) :])
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):  # records the kernels; runs nothing
                self._static_stats = self._learning_step(static_batch, static_noise)
            self._graph, self._graph_signature = graph, signature
        for static, t in zip(self._static_inputs, inputs, strict=True):
            if static is not None:
                static.copy_(t)
        graph.replay()
        # The graph writes into the same output tensors at every replay: hand out copies.
        return {k: v.clone() for k, v in self._static_stats.items()}

    def _forget_graph(self) -> None:
        """Drop the captured update (its inputs, outputs and gradient buffers); the next update
        warms up again and captures afresh, e.g. after the optimiser state was replaced."""
        self._graph = None
        self._graph_signature = None
        self._static_inputs = ()
        self._static_stats = {}
        self._warmup_left = self.GRAPH_WARMUP_UPDATES
        for p in self.online.parameters():
            p.grad = None

    @torch.no_grad()
    def sync_target(self) -> None:
        self.target.load_state_dict(self.online.state_dict())

    @torch.no_grad()
    def soft_update(self) -> None:
        torch._foreach_lerp_(list(self.target.parameters()), list(self.online.parameters()), self.tau)

    # ------------------------------------------------------------------ members
    def member_network(self, k: int) -> QNetwork:
        """Member k's online network on its own (a network of one member), e.g. to evaluate."""
        network = self._network(1).to(self.device)
        network.load_state_dict(member_state(self.online.state_dict(), k))
        return network.eval()

    def member_state_dict(self, k: int) -> dict:
        """What a single run of member k's seed would save: its weights, target weights,
        optimiser state and noise generator, every tensor with a member dimension of 1."""
        state = {
            "online": member_state(self.online.state_dict(), k),
            "target": member_state(self.target.state_dict(), k),
            "optimizer": _member_optimizer_state(self.optimizer, k),
            "updates": self.updates,
            "noise_generator": self.generators[k].get_state(),
        }
        if self.acting_noise is not None:
            state["acting_noise"] = self.acting_noise[k : k + 1].clone()
        return state

    def load_member_state_dicts(self, states: list[dict]) -> None:
        """Each member from a state of `member_state_dict`'s form (a checkpoint of a single run,
        or of one member of a population); all must be at the same update."""
        if len(states) != self.members:
            raise ValueError(f"{len(states)} member states for an agent of {self.members} members")
        updates = {int(s["updates"]) for s in states}
        if len(updates) != 1:
            raise ValueError(f"members at different updates ({sorted(updates)}) cannot train in lockstep")
        self.online.load_state_dict(stacked_state([s["online"] for s in states]))
        self.target.load_state_dict(stacked_state([s["target"] for s in states]))
        self.optimizer.load_state_dict(_stacked_optimizer_state([s["optimizer"] for s in states]))
        for generator, state in zip(self.generators, states, strict=True):
            generator.set_state(state["noise_generator"])
        if self.noisy and all("acting_noise" in s for s in states):
            self.acting_noise = torch.cat([s["acting_noise"] for s in states]).to(self.device)
        self._forget_graph()  # new optimiser state tensors: a graph would miss them
        self.updates = updates.pop()

    def keep_members(self, kept: list[int]) -> None:
        """Go on with only these members (the others stopped, e.g. at their target return):
        parameters, optimiser state and streams of the rest are dropped, and the update is
        captured afresh for the smaller population."""
        states = [self.member_state_dict(k) for k in kept]
        self.rngs = [self.rngs[k] for k in kept]
        self.generators = [self.generators[k] for k in kept]
        self.members = len(kept)
        self._forget_graph()
        self.online = self._network(self.members).to(self.device)
        self.target = self._network(self.members).to(self.device)
        self.target.requires_grad_(False)
        self.optimizer = self._optimizer()
        self.load_member_state_dicts(states)


def clip_grad_norm_per_member(parameters: list[torch.Tensor], max_norm: float) -> None:
    """torch.nn.utils.clip_grad_norm_ for each member on its own: the L2 norm of member k's
    gradient over all its parameters, scaled down to `max_norm` where above. Clipping the
    stacked parameters at once would clip every member by their joint norm."""
    grads = [p.grad for p in parameters if p.grad is not None]
    squares = torch.stack([g.flatten(1).float().pow(2).sum(dim=1) for g in grads]).sum(dim=0)  # (K,)
    scale = (max_norm / (squares.sqrt() + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale.view(-1, *([1] * (g.dim() - 1))).to(g.dtype))


def _member_optimizer_state(optimizer: torch.optim.Optimizer, k: int) -> dict:
    """Member k's slice of an elementwise optimiser's state: tensors shaped like their parameter
    keep member k's row (as a member dimension of 1); step counts are shared by all members."""
    state = optimizer.state_dict()
    shapes = [p.shape for group in optimizer.param_groups for p in group["params"]]
    sliced = {
        index: {
            name: value[k : k + 1].clone()
            if isinstance(value, torch.Tensor) and value.shape == shapes[index]
            else value
            for name, value in per_param.items()
        }
        for index, per_param in state["state"].items()
    }
    return {"state": sliced, "param_groups": state["param_groups"]}


def _stacked_optimizer_state(states: list[dict]) -> dict:
    """The optimiser state of a population from its members' (`_member_optimizer_state`'s form)."""
    first = states[0]
    stacked: dict[int, dict] = {}
    for index, per_param in first["state"].items():
        stacked[index] = {}
        for name, value in per_param.items():
            parts = [s["state"][index][name] for s in states]
            if isinstance(value, torch.Tensor) and value.dim() > 0 and all(p.dim() == value.dim() for p in parts):
                stacked[index][name] = torch.cat(parts)
            else:
                stacked[index][name] = value
    return {"state": stacked, "param_groups": first["param_groups"]}


def agent_from_config(cfg, num_actions: int, device: torch.device, member_seeds: list[np.random.SeedSequence]) -> Agent:
    """The agent of a run (one member per seed of `member_seeds`, all of `cfg`)."""
    resolved = to_dict(cfg)
    return Agent(
        num_actions,
        value_head_from_config(resolved["agent"]),
        member_seeds,
        network=network_settings(resolved),
        noise_per=cfg.network.noise_per,
        double_dqn=cfg.agent.double_dqn,
        # The agent counts updates; the config counts agent steps, as the published code does.
        target_update_period_updates=max(1, cfg.agent.target_update_period_steps // cfg.train.train_frequency_steps),
        tau=cfg.agent.tau,
        optimizer=cfg.optimizer.name,
        lr=cfg.optimizer.lr,
        eps=cfg.optimizer.eps,
        rmsprop_alpha=cfg.optimizer.rmsprop_alpha,
        rmsprop_centered=cfg.optimizer.rmsprop_centered,
        max_grad_norm=cfg.optimizer.max_grad_norm,
        device=device,
        cuda_graph=cfg.train.cuda_graph,
        precision=cfg.train.precision,
    )
