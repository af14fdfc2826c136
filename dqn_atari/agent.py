"""The DQN agent for K seeds at once: epsilon-greedy acting and the TD update with a target
network, every member with its own network, target network, optimiser, exploration stream and
noise generator. A single run is K = 1; nothing here couples members (see `Agent`).

The learner is one pure function of one member, `per_sample_loss(online, target, head, batch,
noise, double_dqn)`: per-sample losses from a network, its target network, a batch and the
update's random draws, as DQN Zoo writes each agent's `loss_fn`. `Agent._map` applies such a
function to every member: one member after another on the CPU, where that is as fast as
batching them and a single run is plain PyTorch; with `torch.func.vmap` over the members'
stacked parameters on a GPU, where one kernel for all members beats K small ones. The eager
update, the update replayed as a CUDA graph and acting all go through it. What the network
outputs and how it learns from it is its value head's (`dqn_atari/value_heads.py`); Double DQN
is only a choice of which network picks the bootstrap action, shared by every head.
"""

from __future__ import annotations

import copy
import functools
import itertools
from collections.abc import Callable
from typing import Any, NamedTuple, cast

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap

from dqn_atari.config import AgentConfig, Config, EnvConfig, NetworkConfig, OptimizerConfig, TrainConfig
from dqn_atari.networks import (
    QNetwork,
    channels_last,
    initialize,
    network_from_config,
    plain_state,
    scaled_noise,
    without_member_dimension,
)
from dqn_atari.optimizers import make_optimizer
from dqn_atari.value_heads import ScalarTD, ValueHead, value_head_from_config


class UpdateBatch(NamedTuple):
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


class UpdateResult(NamedTuple):
    """What an update reports, per member: detached device tensors, read when needed (no host
    sync in the update)."""

    loss: torch.Tensor  # (K,) each member's batch loss
    q_mean: torch.Tensor  # (K,) mean Q of the actions taken
    priorities: torch.Tensor  # (K, B) prioritized replay's new priorities


class LossTerms(NamedTuple):
    per_sample: torch.Tensor  # (B,), with gradient
    priorities: torch.Tensor  # (B,), detached
    q_taken: torch.Tensor  # (B,) Q of the actions taken, detached


# A network applied: (obs, noise, taus) -> the value head's output. A member's QNetwork itself,
# or its parameters applied to the network's form under vmap.
Network = Callable[..., torch.Tensor]


def per_sample_loss(
    online: Network, target: Network, head: ValueHead, batch: UpdateBatch, noise: UpdateNoise, double_dqn: bool
) -> LossTerms:
    """One member's TD loss of each transition against r + gamma^n (target network's value at
    s' of the action a' it bootstraps on): a' is greedy in the target network, or with Double
    DQN in the online network (van Hasselt et al. 2016). With noisy layers every network
    application has its own noise: the online network's at s, the target's at s' (the
    NoisyNet-DQN loss of Fortunato et al. 2018) and, with Double DQN, the online network's at s'
    that chooses a'. Every tensor of `batch` and `noise` is this member's (no member dimension)."""
    with torch.no_grad():
        target_next = target(batch.next_obs, noise.target, noise.target_taus)
        if double_dqn:
            chooser = head.q_values(online(batch.next_obs, noise.selector, noise.policy_taus))
        elif head.samples_taus:  # IQN: greedy in the mean over K' more fractions
            chooser = head.q_values(target(batch.next_obs, noise.target, noise.policy_taus))
        else:
            chooser = head.q_values(target_next)
        target_chosen = _at_actions(target_next, chooser.argmax(dim=-1))
    taken = _at_actions(online(batch.obs, noise.online, noise.online_taus), batch.actions)
    per_sample, priorities = head.loss(taken, target_chosen, batch.rewards, batch.discounts, noise.online_taus)
    q_taken = head.q_values(taken.detach().unsqueeze(-2)).squeeze(-1)
    return LossTerms(per_sample, priorities, q_taken)


def _at_actions(output: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """(B, A, k) at one action per sample (B,) -> (B, k)."""
    index = actions[:, None, None].expand(-1, 1, output.shape[-1])
    return output.gather(1, index).squeeze(1)


class Agent:
    """K DQN agents of one config, trained in lockstep: one acting pass for all their games and
    one update for all of them. Per member and never shared: the network and its target
    network (K plain modules, `online[k]` and `target[k]`), the optimiser and its state,
    gradient-norm clipping, the exploration stream (numpy) and the generator of its noise and
    IQN fractions (torch), all seeded from the member's own seed. Member k computes exactly what
    a single run of its seed computes."""

    def __init__(
        self,
        network: Callable[[], QNetwork],
        member_seeds: list[np.random.SeedSequence],
        *,
        optimizer: OptimizerConfig | None = None,
        noise_per: str = NetworkConfig.noise_per,
        double_dqn: bool = AgentConfig.double_dqn,
        target_update_period_updates: int = AgentConfig.target_update_period_steps // TrainConfig.train_frequency_steps,
        tau: float = AgentConfig.tau,
        channels_last_input: bool = False,
        device: str | torch.device = "cpu",
        cuda_graph: bool = TrainConfig.cuda_graph,
        precision: str = TrainConfig.precision,
        vectorized: bool | None = None,
    ):
        """`network` builds one member's network (its weights are then drawn from the member's
        seed); `vectorized` maps members with vmap (default: on a GPU with several members)."""
        self.device = torch.device(device)
        self.members = len(member_seeds)
        self.build_network = network
        self.double_dqn, self.noise_per = double_dqn, noise_per
        self.target_update_period_updates, self.tau = target_update_period_updates, tau
        self.optimizer_settings = optimizer or OptimizerConfig()
        self.channels_last_input = channels_last_input
        # bfloat16 autocast for the forward passes (weights, optimiser state and the loss's
        # reduction stay fp32): a change of numerics, off by default.
        self.autocast = precision == "bf16"
        if vectorized is None:
            vectorized = self.device.type == "cuda" and self.members > 1
        self.vectorized = vectorized

        # Each member's seed gives its exploration stream, its initial weights (a CPU generator:
        # the same network on every device) and its noise generator on the device.
        self.rngs: list[np.random.Generator] = []
        self.generators: list[torch.Generator] = []
        online = []
        for seed in member_seeds:
            exploration, weights, noise = seed.spawn(3)
            self.rngs.append(np.random.Generator(np.random.PCG64(exploration)))
            member = network()
            initialize(member, torch.Generator().manual_seed(int(weights.generate_state(1, np.uint64)[0])))
            online.append(member.to(self.device))
            generator = torch.Generator(device=self.device)
            generator.manual_seed(int(noise.generate_state(1, np.uint64)[0]))
            self.generators.append(generator)
        first = online[0]
        self.num_actions, self.noisy, self.noise_size = first.num_actions, first.noisy, first.noise_size
        self.head = first.value_head.to(self.device)  # every member's, with its constants on the device
        self.online = nn.ModuleList(online)
        self.target = copy.deepcopy(self.online).requires_grad_(False)
        # The form vmap applies members' parameters to: a member's network without storage.
        self._form = copy.deepcopy(first).to("meta") if self.vectorized else None
        # The noise acting uses: redrawn at every acting step (noise_per="step") or the last
        # update's online noise ("update"); (K, noise_size), None without noisy layers.
        self.acting_noise = self._draw_noise() if self.noisy else None

        # A CUDA graph replays the whole update (loss, backward, clipping, optimiser step) as one
        # launch: at batch 32 the GPU otherwise waits on Python launching ~100-500 small kernels.
        # Only on a GPU. There torch's Adam and RMSprop always keep their step count on the
        # device (`capturable`), with or without the graph, so that the graph changes the speed
        # and never the numbers. The update's random draws are inputs of the graph, drawn eagerly.
        self.cuda_graph = cuda_graph and self.device.type == "cuda"
        self.optimizers = [self._optimizer(member) for member in self.online]
        self._graph: torch.cuda.CUDAGraph | None = None
        self._graph_signature: tuple | None = None
        self._static_inputs: tuple = ()  # the graph's inputs: a batch's and the noise's tensors
        self._static_result: UpdateResult | None = None  # the graph's outputs
        self._warmup_left = self.GRAPH_WARMUP_UPDATES
        self.updates = 0

    @classmethod
    def for_seeds(
        cls,
        num_actions: int,
        seeds: list[int],
        value_head: ValueHead | None = None,
        *,
        network: NetworkConfig | None = None,
        frame_stack: int = EnvConfig.frame_stack,
        frame_size: int = EnvConfig.frame_size,
        **settings: Any,
    ) -> Agent:
        """An agent with one member per seed (tests, benchmarks): Nature networks of `network`'s
        settings, `settings` as __init__'s."""
        cfg = Config()
        cfg.network = network or NetworkConfig()
        cfg.env.frame_stack, cfg.env.frame_size = frame_stack, frame_size
        head = value_head or ScalarTD()
        settings.setdefault("noise_per", cfg.network.noise_per)
        settings.setdefault("channels_last_input", cfg.network.channels_last)
        return cls(
            functools.partial(network_from_config, num_actions, head, cfg),
            [np.random.SeedSequence(s) for s in seeds],
            **settings,
        )

    def _optimizer(self, member: nn.Module) -> torch.optim.Optimizer:
        return make_optimizer(member.parameters(), self.optimizer_settings, capturable=self.device.type == "cuda")

    # ------------------------------------------------------------------ every member
    def _map(self, fn: Callable[..., Any], networks: list[nn.ModuleList], *inputs: Any) -> Any:
        """fn(member's networks..., member's inputs...) for every member, its outputs stacked
        on a leading member dimension. `networks`: [self.online] or [self.online, self.target];
        `inputs`: tensors, named tuples of tensors or None, each with a leading member
        dimension. One member after another, or vmap over their stacked parameters: the same
        function, the same numbers up to rounding."""
        if not self.vectorized:
            outputs = [fn(*(n[k] for n in networks), *(_of_member(x, k) for x in inputs)) for k in range(self.members)]
            return _stacked(outputs)
        assert self._form is not None
        form = self._form

        def member(states: list[dict[str, torch.Tensor]], *member_inputs: Any) -> Any:
            applied = [lambda *args, state=state: functional_call(form, state, args) for state in states]
            return fn(*applied, *member_inputs)

        # The stacking is differentiable: gradients reach each member's own parameters.
        states = [_stacked_state(n) for n in networks]
        in_dims = (0, *(_member_dims(x) for x in inputs))
        return vmap(member, in_dims=in_dims, randomness="error")(states, *inputs)

    def _laid_out(self, obs: torch.Tensor) -> torch.Tensor:
        return channels_last(obs) if self.channels_last_input else obs

    # ------------------------------------------------------------------ random draws
    def _normal(self, generator: torch.Generator, *shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, device=self.device)

    def _draw_noise(self) -> torch.Tensor:
        """(K, noise_size): f(eps) for every noisy layer, member k's from its own generator."""
        return torch.stack([scaled_noise(self._normal(g, self.noise_size)) for g in self.generators])

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
        """(K, N, A) for observations (K, N, stack, H, W), with the given noise (K, noise_size)
        (None: the noise off) and IQN fractions (K, N, K')."""
        x = obs if isinstance(obs, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(obs))
        x = self._laid_out(x.to(self.device, non_blocking=True))
        head = self.head
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            q = self._map(lambda online, o, n, t: head.q_values(online(o, n, t)), [self.online], x, noise, taus)
        return q.float()

    def act(self, obs: np.ndarray, epsilons: np.ndarray | list) -> np.ndarray:
        """Epsilon-greedy for each member's games, obs (K, N, stack, H, W) -> actions (K, N),
        epsilons per member (K,) or per game (K, N) (`dqn_atari/exploration.py`): one forward
        pass for all, and none at all when every game explores (most of early training). Each
        member draws from its own streams exactly what it would draw alone."""
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
    def update(self, batch: UpdateBatch) -> UpdateResult:
        """One gradient step for every member on its batch."""
        noise = self.draw_update_noise(batch.actions.shape[1])
        result = self._graph_step(batch, noise) if self.cuda_graph else self._learning_step(batch, noise)
        if self.noisy and self.noise_per == "update":
            self.acting_noise = noise.online  # held for acting until the next update
        self.updates += 1
        if self.tau < 1.0:
            self.soft_update()
        elif self.updates % self.target_update_period_updates == 0:
            self.sync_target()  # in place: a captured update reads the new target weights
        return result

    def _learning_step(self, batch: UpdateBatch, noise: UpdateNoise) -> UpdateResult:
        """The update's device work, the same eagerly and inside a CUDA graph."""
        batch = batch._replace(obs=self._laid_out(batch.obs), next_obs=self._laid_out(batch.next_obs))
        head, double_dqn = self.head, self.double_dqn

        def member_loss_terms(online: Network, target: Network, b: UpdateBatch, n: UpdateNoise) -> LossTerms:
            return per_sample_loss(online, target, head, b, n, double_dqn)

        # No cache of casted weights under a CUDA graph: a cached cast would outlive the capture.
        with torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.autocast, cache_enabled=not self.cuda_graph
        ):
            terms = self._map(member_loss_terms, [self.online, self.target], batch, noise)
        per_sample = terms.per_sample.float()
        weighted = per_sample if batch.weights is None else per_sample * batch.weights
        member_loss = weighted.mean(dim=1)  # (K,): each member's own batch mean
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)
        # Member k's loss depends on member k's parameters only: the gradient of the sum is
        # each member's own gradient.
        member_loss.sum().backward()
        for member, optimizer in zip(self.online, self.optimizers, strict=True):
            if self.optimizer_settings.max_grad_norm is not None:
                nn.utils.clip_grad_norm_(member.parameters(), self.optimizer_settings.max_grad_norm)
            optimizer.step()
        return UpdateResult(member_loss.detach(), terms.q_taken.float().mean(dim=1), terms.priorities.float())

    # Eager updates before the capture, on a side stream, as torch asks: they create the
    # optimiser's state and cuBLAS's workspace, which a graph cannot allocate. They are real
    # updates, so a run's sequence of updates is the same with and without the graph.
    GRAPH_WARMUP_UPDATES = 3

    def _graph_step(self, batch: UpdateBatch, noise: UpdateNoise) -> UpdateResult:
        inputs = (*batch, *noise)
        signature = tuple(None if t is None else (t.shape, t.dtype) for t in inputs)
        if self._graph is not None and signature != self._graph_signature:
            self._forget_graph()  # another batch size, or weights that come and go
        if self._graph is None and self._warmup_left > 0:
            self._warmup_left -= 1
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                result = self._learning_step(batch, noise)
            torch.cuda.current_stream(self.device).wait_stream(side)
            return result
        graph = self._graph
        if graph is None:
            self._static_inputs = tuple(None if t is None else t.clone() for t in inputs)
            static_batch = UpdateBatch(*self._static_inputs[: len(batch)])
            static_noise = UpdateNoise(*self._static_inputs[len(batch) :])
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):  # records the kernels; runs nothing
                self._static_result = self._learning_step(static_batch, static_noise)
            self._graph, self._graph_signature = graph, signature
        for static, t in zip(self._static_inputs, inputs, strict=True):
            if static is not None:
                static.copy_(t)
        graph.replay()
        # The graph writes into the same output tensors at every replay: hand out copies.
        assert self._static_result is not None
        return UpdateResult(*(t.clone() for t in self._static_result))

    def _forget_graph(self) -> None:
        """Drop the captured update (its inputs, outputs and gradient buffers); the next update
        warms up again and captures afresh, e.g. after the optimiser state was replaced."""
        self._graph = None
        self._graph_signature = None
        self._static_inputs = ()
        self._static_result = None
        self._warmup_left = self.GRAPH_WARMUP_UPDATES
        for p in self.online.parameters():
            p.grad = None

    @torch.no_grad()
    def sync_target(self) -> None:
        torch._foreach_copy_(list(self.target.parameters()), list(self.online.parameters()))

    @torch.no_grad()
    def soft_update(self) -> None:
        torch._foreach_lerp_(list(self.target.parameters()), list(self.online.parameters()), self.tau)

    # ------------------------------------------------------------------ members
    def member_network(self, k: int) -> QNetwork:
        """Member k's online network on its own, a copy (e.g. to evaluate while training goes on)."""
        return cast(QNetwork, copy.deepcopy(self.online[k])).eval()

    def member_state_dict(self, k: int) -> dict:
        """What a single run of member k's seed saves: its network's and target network's
        state dicts, its optimiser's, its noise generator's state, and its acting noise."""
        state = {
            "online": {name: t.detach().clone() for name, t in self.online[k].state_dict().items()},
            "target": {name: t.detach().clone() for name, t in self.target[k].state_dict().items()},
            "optimizer": copy.deepcopy(self.optimizers[k].state_dict()),
            "updates": self.updates,
            "noise_generator": self.generators[k].get_state(),
        }
        if self.acting_noise is not None:
            state["acting_noise"] = self.acting_noise[k].clone()
        return state

    def load_member_state_dicts(self, states: list[dict]) -> None:
        """Each member from a state of `member_state_dict`'s form, as any version wrote it (a
        checkpoint of a single run, or of one member of a population); all must be at the same
        update. A state without a noise generator (written before populations) leaves the
        member's generator where its seed starts it."""
        if len(states) != self.members:
            raise ValueError(f"{len(states)} member states for an agent of {self.members} members")
        updates = {int(s["updates"]) for s in states}
        if len(updates) != 1:
            raise ValueError(f"members at different updates ({sorted(updates)}) cannot train in lockstep")
        for k, state in enumerate(states):
            self.online[k].load_state_dict(plain_state(state["online"], self.online[k]))
            self.target[k].load_state_dict(plain_state(state["target"], self.target[k]))
            self.optimizers[k].load_state_dict(_plain_optimizer_state(state["optimizer"], self.online[k]))
            if "noise_generator" in state:
                self.generators[k].set_state(state["noise_generator"])
        if self.noisy and all("acting_noise" in s for s in states):
            self.acting_noise = torch.stack([s["acting_noise"].reshape(-1) for s in states]).to(self.device)
        self._forget_graph()  # new optimiser state tensors: a graph would miss them
        self.updates = updates.pop()

    def keep_members(self, kept: list[int]) -> None:
        """Go on with only these members (the others stopped, e.g. at their target return):
        the networks, optimisers and streams of the rest are dropped, and the update is
        captured afresh for the smaller population."""
        self._forget_graph()
        self.online = nn.ModuleList([self.online[k] for k in kept])
        self.target = nn.ModuleList([self.target[k] for k in kept])
        self.optimizers = [self.optimizers[k] for k in kept]
        self.rngs = [self.rngs[k] for k in kept]
        self.generators = [self.generators[k] for k in kept]
        if self.acting_noise is not None:
            self.acting_noise = self.acting_noise[kept]
        self.members = len(kept)


# The inputs and outputs `Agent._map` carries: a tensor with a leading member dimension, None, or
# a named tuple (UpdateBatch, UpdateNoise, LossTerms) of those.
def _of_member(x: Any, k: int) -> Any:
    if isinstance(x, tuple):
        return type(x)(*(_of_member(field, k) for field in x))
    return None if x is None else x[k]


def _member_dims(x: Any) -> Any:
    """vmap's in_dims for `x`: 0 for each tensor, None where there is none."""
    if isinstance(x, tuple):
        return type(x)(*(_member_dims(field) for field in x))
    return None if x is None else 0


def _stacked(per_member: list) -> Any:
    first = per_member[0]
    if isinstance(first, tuple):
        return type(first)(*(_stacked([m[i] for m in per_member]) for i in range(len(first))))
    return torch.stack(per_member)


def _stacked_state(networks: nn.ModuleList) -> dict[str, torch.Tensor]:
    """The members' parameters and buffers, each stacked on a leading member dimension."""
    named = [dict(itertools.chain(n.named_parameters(), n.named_buffers())) for n in networks]
    return {name: torch.stack([member[name] for member in named]) for name in named[0]}


def _plain_optimizer_state(state: dict, network: nn.Module) -> dict:
    """An optimiser's state dict as any version saved it, for `network`'s parameters: the
    member layout's tensors (a leading member dimension of 1) lose that dimension."""
    shapes = [p.shape for p in network.parameters()]
    per_parameter = {
        index: {
            name: without_member_dimension(value, shapes[int(index)]) if isinstance(value, torch.Tensor) else value
            for name, value in values.items()
        }
        for index, values in state["state"].items()
    }
    return {"state": per_parameter, "param_groups": state["param_groups"]}


def agent_from_config(
    cfg: Config, num_actions: int, device: torch.device, member_seeds: list[np.random.SeedSequence]
) -> Agent:
    """The agent of a run (one member per seed of `member_seeds`, all of `cfg`)."""
    head = value_head_from_config(cfg.agent)
    return Agent(
        functools.partial(network_from_config, num_actions, head, cfg),
        member_seeds,
        optimizer=cfg.optimizer,
        noise_per=cfg.network.noise_per,
        double_dqn=cfg.agent.double_dqn,
        # The agent counts updates; the config counts agent steps, as the published code does.
        target_update_period_updates=max(1, cfg.agent.target_update_period_steps // cfg.train.train_frequency_steps),
        tau=cfg.agent.tau,
        channels_last_input=cfg.network.channels_last,
        device=device,
        cuda_graph=cfg.train.cuda_graph,
        precision=cfg.train.precision,
    )
