"""Speed and memory figures, each measured side by side with its reference in the same run.

Each benchmark prints a table and returns a dict of figures; `run` writes them as JSON.
Ratios are what to compare across machines; absolute numbers depend on the machine.
"""

from __future__ import annotations

import copy
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _timed(fn, seconds: float, min_calls: int = 3) -> float:
    """Calls per second of `fn` over about `seconds` (after one warm-up call)."""
    fn()
    calls, start = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - start < seconds:
        fn()
        calls += 1
    return calls / (time.perf_counter() - start)


def _paired(fn_a, fn_b, seconds: float, block: int = 20) -> tuple[float, float]:
    """Calls per second of fn_a and fn_b, alternating blocks of `block` calls of each, so that
    both see the same machine load (these machines are shared and noisy)."""
    fn_a(), fn_b()
    spent = [0.0, 0.0]
    calls = 0
    while calls < 3 * block or sum(spent) < seconds:
        for i, fn in enumerate((fn_a, fn_b)):
            start = time.perf_counter()
            for _ in range(block):
                fn()
            spent[i] += time.perf_counter() - start
        calls += block
    return calls / spent[0], calls / spent[1]


def machine() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


# ---------------------------------------------------------------------------- env
def bench_env(seconds: float = 5.0) -> dict:
    """Our wrapper stack vs gymnasium's AtariPreprocessing + FrameStackObservation (same settings),
    and ale-py's vector backend, on Pong with random actions."""
    import ale_py
    import gymnasium as gym
    from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

    from dqn_atari.envs import make_env, make_vector_env

    gym.register_envs(ale_py)

    def steps_per_s(env, n_actions) -> float:
        env.reset(seed=0)
        rng = np.random.default_rng(0)

        def step():
            for a in rng.integers(0, n_actions, 100):
                _, _, terminated, truncated, _ = env.step(a)
                if terminated or truncated:
                    env.reset()

        return 100 * _timed(step, seconds)

    ours = make_env("Pong")
    reference = FrameStackObservation(
        AtariPreprocessing(
            gym.make("ALE/Pong-v5", frameskip=1, repeat_action_probability=0.0, max_num_frames_per_episode=108_000),
            noop_max=30,
            frame_skip=4,
            screen_size=84,
            terminal_on_life_loss=False,
            grayscale_obs=True,
        ),
        4,
        padding_type="zero",
    )
    # Several envs per core: the vector backend amortises Python's per-call cost over a batch.
    num_envs = 4 * (os.cpu_count() or 2)
    vec = make_vector_env("Pong", num_envs, backend="ale_vector")
    vec.reset(seed=0)
    rng = np.random.default_rng(0)

    def vector_steps_per_s() -> float:
        return num_envs * _timed(lambda: vec.step(rng.integers(0, 6, num_envs)), seconds)

    # Interleave the three measurements so drift on a shared machine hits all of them alike.
    ours_sps, ref_sps, vector_sps = [], [], []
    for _ in range(3):
        ours_sps.append(steps_per_s(ours, 6))
        ref_sps.append(steps_per_s(reference, 6))
        vector_sps.append(vector_steps_per_s())
    out = {
        "wrapper_steps_per_s": float(np.median(ours_sps)),
        "gymnasium_reference_steps_per_s": float(np.median(ref_sps)),
        "vector_steps_per_s": float(np.median(vector_sps)),
        "vector_num_envs": num_envs,
    }
    out["wrapper_vs_reference"] = out["wrapper_steps_per_s"] / out["gymnasium_reference_steps_per_s"]
    out["vector_vs_wrapper"] = out["vector_steps_per_s"] / out["wrapper_steps_per_s"]
    return out


# ---------------------------------------------------------------------------- replay
def _full_replay(capacity: int, prioritized: bool = False, frames_device: torch.device | None = None):
    """A replay filled to capacity as the trainer would leave it: games of 500 steps, frames of
    varied content (and for prioritized replay, varied priorities on every valid entry), the
    frames in host memory or on `frames_device`."""
    from dqn_atari.prioritized_replay import PrioritizedReplayBuffer
    from dqn_atari.replay import FIRST, LAST, TERMINAL, ReplayBuffer

    kind = PrioritizedReplayBuffer if prioritized else ReplayBuffer
    buf = kind(capacity, 1, seed=0, frames_device=frames_device)
    rng = np.random.default_rng(0)
    block: np.ndarray | torch.Tensor = rng.integers(0, 255, size=(1024, 84, 84), dtype=np.uint8)
    if frames_device is not None:
        block = torch.from_numpy(block).to(frames_device)
    for start in range(0, capacity, 1024):  # in blocks: a temporary copy of 7 GB would not fit
        buf.frames[0, start : start + 1024] = block[: min(1024, capacity - start)]
    positions = np.arange(capacity)
    buf.actions[0] = rng.integers(0, 6, capacity)
    buf.rewards[0] = rng.choice([-1.0, 0.0, 1.0], capacity)
    game_position = positions % 501
    buf.flags[0] = np.select(
        [game_position == 0, game_position == 499, game_position == 500], [FIRST, TERMINAL, LAST], 0
    )
    buf.count[0] = capacity
    buf.cursor[0] = 0
    buf.chunk_version[:] = 1  # every chunk written, as in a run that filled the buffer
    buf.derive_back_bits()
    if isinstance(buf, PrioritizedReplayBuffer):  # every entry but a game's last and the newest
        drawable = (game_position != 500) & (positions < capacity - 1)
        buf.priorities[0] = np.where(drawable, rng.random(capacity) + 0.01, 0.0)
        buf.tree.set_all(buf.priorities.reshape(-1))
    return buf


def bench_replay(seconds: float = 5.0, capacity: int = 1_000_000, device: str | None = None) -> dict:
    """Bytes per transition of a full buffer, and sampling rate against the bare numpy gather of
    the same frames (the floor: no implementation can move fewer bytes); then prioritized
    sampling (with its priority update) beside uniform sampling; then sampling with the frames
    on the device (a torch tensor on the CPU where there is no GPU) beside frames in host memory."""
    out = {"capacity": capacity, **_uniform_sampling(seconds, capacity)}
    out.update(_prioritized_sampling(seconds, capacity))  # one full buffer at a time in memory
    out.update(_sampling_by_storage(seconds, capacity // 10, _device(device)))
    return out


def _uniform_sampling(seconds: float, capacity: int) -> dict:
    buf = _full_replay(capacity)
    rng = np.random.default_rng(1)
    batch = 32

    def bare_gather():
        p = rng.integers(0, capacity - 5, batch)
        return buf.frames[0][p[:, None] + np.arange(5)]

    sample_rate, gather_rate = _paired(lambda: buf.sample(batch), bare_gather, seconds)
    return {
        "bytes_per_transition": buf.nbytes / capacity,
        "sample_batches_per_s": sample_rate,
        "numpy_gather_bound_batches_per_s": gather_rate,
        "sample_vs_gather_bound": sample_rate / gather_rate,
    }


def _prioritized_sampling(seconds: float, capacity: int) -> dict:
    prioritized = _full_replay(capacity, prioritized=True)
    uniform = _full_replay(capacity // 10)  # the uniform reference: its rate does not depend on size
    batch = 32
    losses = np.random.default_rng(2).random(batch)

    def prioritized_round():  # what the trainer does per update: sample, then new priorities
        b = prioritized.sample(batch, beta=0.5)
        prioritized.update_priorities(b.env_index, b.position, losses)

    per_rate, uniform_rate = _paired(prioritized_round, lambda: uniform.sample(batch), seconds)
    return {
        "prioritized_bytes_per_transition": prioritized.nbytes / capacity,
        "prioritized_sample_batches_per_s": per_rate,
        "uniform_sample_batches_per_s_paired": uniform_rate,
        "prioritized_vs_uniform_sample": per_rate / uniform_rate,
    }


def _sampling_by_storage(seconds: float, capacity: int, on: torch.device) -> dict:
    """Uniform batches of 32 with the frames on `on` beside frames in host memory: the host
    draws and checks both, then gathers where the frames are (on a GPU: until the batch is
    there, so the rate counts the gather and not only its launch). Sampling's rate does not
    depend on the capacity, which is kept small enough for two buffers at once."""
    host, on_device = _full_replay(capacity), _full_replay(capacity, frames_device=on)
    batch = 32

    def device_sample():
        sample = on_device.sample(batch)
        if on.type == "cuda":
            torch.cuda.synchronize()
        return sample

    device_rate, host_rate = _paired(device_sample, lambda: host.sample(batch), seconds)
    return {
        "storage_device": str(on),
        "frames_on_device_sample_batches_per_s": device_rate,
        "frames_in_host_memory_sample_batches_per_s": host_rate,
        "frames_on_device_vs_host_memory": device_rate / host_rate,
    }


# ---------------------------------------------------------------------------- learner
def _device(device: str | None) -> torch.device:
    """The device a benchmark runs on: the one asked for, else the GPU where there is one."""
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def _agent(kind: str, on: torch.device, members: int = 1, **settings):
    """The agents the README reports, from fixed seeds (the same initial weights whatever
    `settings` change): DQN (Adam, MSE, as CleanRL), Nature DQN (DeepMind's RMSProp, Huber),
    Rainbow (C51, dueling, noisy, Double DQN, Adam), QR-DQN and IQN (their presets' heads).
    `settings` as Agent's, with `network` a dict of NetworkConfig's fields."""
    from dqn_atari.agent import Agent
    from dqn_atari.config import NetworkConfig, OptimizerConfig
    from dqn_atari.value_heads import Categorical, ImplicitQuantile, QuantileRegression, ScalarTD, ValueHead

    seeds = list(range(members))
    network = settings.pop("network", {})
    head: ValueHead
    if kind == "dqn":
        head, optimizer = ScalarTD("mse"), OptimizerConfig(name="adam", lr=1e-4, eps=1e-8)
    elif kind == "nature":
        head, optimizer = ScalarTD("huber"), OptimizerConfig()
    elif kind == "rainbow":
        network = {"dueling": True, "noisy": True, **network}
        head, optimizer = Categorical(51, -10.0, 10.0), OptimizerConfig(name="adam", lr=6.25e-5, eps=1.5e-4)
        settings.setdefault("double_dqn", True)
    else:
        head = QuantileRegression(200) if kind == "qr_dqn" else ImplicitQuantile(64, 64, 32)
        optimizer = OptimizerConfig(name="adam", lr=5e-5, eps=0.01 / 32)
    return Agent.for_seeds(6, seeds, head, network=NetworkConfig(**network), optimizer=optimizer, device=on, **settings)


def _batch(on: torch.device, members: int = 1, b: int = 32, generator: torch.Generator | None = None, weights=False):
    from dqn_atari.agent import UpdateBatch

    g = generator or torch.Generator().manual_seed(1)
    return UpdateBatch(
        torch.randint(0, 256, (members, b, 4, 84, 84), dtype=torch.uint8, generator=g).to(on),
        torch.randint(0, 6, (members, b), generator=g).to(on),
        torch.randint(-1, 2, (members, b), generator=g).float().to(on),
        (0.99 * (torch.rand(members, b, generator=g) > 0.1).float()).to(on),
        torch.randint(0, 256, (members, b, 4, 84, 84), dtype=torch.uint8, generator=g).to(on),
        torch.rand(members, b, generator=g).to(on) if weights else None,
    )


def update_flops(batch_size: int = 32, frame_size: int = 84, stack: int = 4, actions: int = 6) -> float:
    """Floating-point operations of one Nature DQN update, counted as 2 per multiply-add: the
    online forward pass, its backward pass (twice the forward's work: gradients of the inputs
    and of the weights) and the target network's forward pass; 4 forward passes in all (2.39
    GFLOP at batch 32)."""
    macs, side, channels = 0, frame_size, stack
    for out, kernel, stride in ((32, 8, 4), (64, 4, 2), (64, 3, 1)):
        side = (side - kernel) // stride + 1
        macs += side * side * out * channels * kernel * kernel
        channels = out
    macs += side * side * channels * 512 + 512 * actions
    return 4 * 2 * macs * batch_size


def _matmul_gflops(on: torch.device, dtype: torch.dtype, seconds: float, n: int = 2048) -> float:
    a, b = (torch.randn(n, n, device=on).to(dtype) for _ in "ab")

    def product():
        torch.mm(a, b)
        if on.type == "cuda":
            torch.cuda.synchronize()

    return 2 * n**3 * _timed(product, seconds) / 1e9


def plain_pytorch_update(batch, on: torch.device):
    """A minimal plain-PyTorch DQN update (Nature network, NCHW, Adam 1e-4, MSE) on member 0
    of `batch`: the reference our update is timed against. Returns the update as a function."""
    import torch.nn.functional as F
    from torch import nn

    obs, actions, rewards, discounts, next_obs = (t[0] for t in batch[:5])
    layers = [nn.Conv2d(4, 32, 8, 4), nn.ReLU(), nn.Conv2d(32, 64, 4, 2), nn.ReLU(), nn.Conv2d(64, 64, 3, 1)]
    layers += [nn.ReLU(), nn.Flatten(), nn.Linear(3136, 512), nn.ReLU(), nn.Linear(512, 6)]
    torch.manual_seed(0)
    online = nn.Sequential(*layers).to(on)
    target = copy.deepcopy(online)
    optimiser = torch.optim.Adam(online.parameters(), lr=1e-4)

    def update():
        with torch.no_grad():
            y = rewards + discounts * target(next_obs.float() / 255).max(1).values
        q = online(obs.float() / 255).gather(1, actions[:, None]).squeeze(1)
        loss = F.mse_loss(q, y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    return update


def bench_learner(seconds: float = 5.0, device: str | None = None) -> dict:
    """Our update against a minimal plain-PyTorch DQN update of the same network and batch; the
    update with contiguous (NCHW) and channels-last (NHWC) activations and under bfloat16
    autocast, beside the machine's own fp32 (and bf16) matrix-product rate; Rainbow's, QR-DQN's
    and IQN's updates beside DQN's."""
    on = _device(device)
    batch = _batch(on)
    raw_update = plain_pytorch_update(batch, on)

    def sync(fn):
        def run():
            fn()
            if on.type == "cuda":
                torch.cuda.synchronize()

        return run

    def updating(agent, b=batch):
        return sync(lambda: agent.update(b))

    from dqn_atari.config import NetworkConfig

    contiguous = _agent("dqn", on, network={"channels_last": False})
    channels_last = _agent("dqn", on, network={"channels_last": True})
    default_is_channels_last = NetworkConfig().channels_last
    default = channels_last if default_is_channels_last else contiguous  # the config's layout, fp32
    bf16 = _agent("dqn", on, network={"channels_last": True}, precision="bf16")
    bf16_contiguous = _agent("dqn", on, network={"channels_last": False}, precision="bf16")
    ours_rate, raw_rate = _paired(updating(default), sync(raw_update), seconds, block=5)
    fp32_rate, cl_rate = _paired(updating(contiguous), updating(channels_last), seconds, block=5)
    bf16_rate, bf16_nchw_rate = _paired(updating(bf16), updating(bf16_contiguous), seconds, block=5)
    weighted = _batch(on, weights=True)
    paired = {}
    for kind in ("rainbow", "qr_dqn", "iqn"):  # in NCHW, as the DQN update beside them
        paired[kind] = _paired(updating(contiguous), updating(_agent(kind, on), weighted), seconds, block=5)
    out: dict[str, Any] = {
        "device": str(on),
        "batch_size": 32,
        "update_ms": 1000 / ours_rate,
        "raw_torch_update_ms": 1000 / raw_rate,
        # fp32 in NCHW: the update as it was before channels-last and bf16 were offered
        "update_ms_fp32": 1000 / fp32_rate,
        "update_ms_channels_last": 1000 / cl_rate,
        "update_ms_bf16": 1000 / bf16_rate,
        "update_ms_bf16_contiguous": 1000 / bf16_nchw_rate,
        "update_ms_default": 1000 / (cl_rate if default_is_channels_last else fp32_rate),
        "default_channels_last": default_is_channels_last,
    }
    for kind, (beside, rate) in paired.items():
        out[f"update_ms_beside_{kind}"] = 1000 / beside
        out[f"{kind}_update_ms"] = 1000 / rate
        out[f"{kind}_vs_update"] = beside / rate
    out["update_vs_raw"] = out["update_ms"] / out["raw_torch_update_ms"]
    out["channels_last_vs_fp32"] = out["update_ms_fp32"] / out["update_ms_channels_last"]
    out["bf16_vs_fp32"] = out["update_ms_fp32"] / out["update_ms_bf16"]
    out["matmul_gflops_fp32"] = _matmul_gflops(on, torch.float32, seconds / 2)
    out["matmul_gflops_bf16"] = _matmul_gflops(on, torch.bfloat16, seconds / 2)
    out["update_gflops_default"] = update_flops() / (out["update_ms_default"] / 1000) / 1e9
    out["update_vs_matmul_fp32"] = out["update_gflops_default"] / out["matmul_gflops_fp32"]
    return out


# Share of the entries of Adam's moments that hold denormal floats in the benchmark below: at most
# what results/pong-solve-eps005's seeds held at 1.7M frames (46-49% of exp_avg's entries, 31-35%
# of exp_avg_sq's: results/benchmarks-cpu-2026-12-05-denormal/denormal-moments.txt).
DENORMAL_MOMENT_SHARE = 1 / 3


def learning_step_on_decaying_moments(share: float = DENORMAL_MOMENT_SHARE):
    """(agent, step): the Pong recipes' network (dueling, Adam) after one update, and a function
    that takes one more learning step with Adam's moments as a long run leaves them, under IEEE
    arithmetic (`step(False)`) or with denormal floats flushed to zero (`step(True)`). A weight
    whose unit has stopped firing gets no gradient, and its moments decay geometrically through
    the denormal range; `share` of every weight's entries are such weights: before every step
    their moments are put back to the same denormal values, and their gradients are held at zero."""
    on = torch.device("cpu")
    agent = _agent("dqn", on, network={"dueling": True})
    batch = _batch(on)
    agent.update(batch)  # Adam's moments exist from the first step on
    g = torch.Generator().manual_seed(2)
    decaying = []  # (a moment, its value before each step)
    for member, optimizer in zip(agent.online, agent.optimizers, strict=True):
        for weight in member.parameters():
            dead = torch.rand(weight.shape, generator=g) < share
            weight.register_hook(lambda grad, live=~dead: grad * live)
            tiny = torch.finfo(weight.dtype).tiny
            denormal = tiny * torch.rand(weight.shape, generator=g).clamp_min(1e-6)
            for name in ("exp_avg", "exp_avg_sq"):
                moment = optimizer.state[weight][name]
                decaying.append((moment, torch.where(dead, denormal, moment)))

    def step(flush: bool) -> None:
        torch.set_flush_denormal(flush)
        for moment, before in decaying:
            moment.copy_(before)
        agent.update(batch)

    return agent, step


def bench_denormal(seconds: float = 5.0) -> dict:
    """A learning step on decaying moments (`learning_step_on_decaying_moments`) under IEEE
    arithmetic and with denormal floats flushed to zero (`train.flush_denormal`), alternated on
    one agent. One torch thread, as each seed of the Pong recipes trains: the flag belongs to
    each thread, and worker threads copy it only when they start."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _, step = learning_step_on_decaying_moments()
        ieee_rate, flushed_rate = _paired(lambda: step(False), lambda: step(True), seconds, block=5)
    finally:
        torch.set_flush_denormal(False)  # torch's default, for the benchmarks after this one
        torch.set_num_threads(threads)
    return {
        "denormal_moment_share": DENORMAL_MOMENT_SHARE,
        "update_ms_ieee": 1000 / ieee_rate,
        "update_ms_flushed": 1000 / flushed_rate,
        "flush_speedup": flushed_rate / ieee_rate,
    }


# ---------------------------------------------------------------------------- update on a GPU
def _update_agents(on: torch.device, cuda_graph: bool, members: int = 1, **settings) -> dict:
    """Nature DQN's and Rainbow's update, from fixed seeds: the same initial weights and noise
    whatever `cuda_graph` is."""
    return {kind: _agent(kind, on, members, cuda_graph=cuda_graph, **settings) for kind in ("nature", "rainbow")}


def _device_profile(fn, calls: int) -> dict:
    """torch.profiler over `calls` calls of fn: device operations (kernels, copies) launched and
    the device's busy time per call, and the five torch ops whose kernels keep it busiest."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
    on_device = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    # Only the host-side ops: each kernel is listed once more under its own name.
    ops = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CPU]
    ops.sort(key=lambda e: e.self_device_time_total, reverse=True)
    return {
        "device_ops_per_call": len(on_device) / calls,
        "device_busy_ms_per_call": sum(e.time_range.elapsed_us() for e in on_device) / 1000 / calls,
        "busiest_ops_ms_per_call": {e.key: round(e.self_device_time_total / 1000 / calls, 4) for e in ops[:5]},
    }


def bench_update_gpu(seconds: float = 3.0, device: str | None = None) -> dict:
    """Where a batch-32 update's time goes on a GPU and what `train.cuda_graph` saves, for
    Nature DQN's and Rainbow's update, for one seed and for a population of 3: wall ms per
    update (synchronised) eagerly and replayed as a CUDA graph, timed in alternating blocks;
    the device operations (kernels, copies) and the device's busy ms per eager update
    (torch.profiler); and the largest weight difference between the two after 8 updates from
    the same state on the same batches (the same seeds: the same noise), in bf16 too. Then the
    acting step's round trip (host uint8 stacks in, actions out) at 1 and 4 envs against its
    device busy time. On a CPU, where there are no graphs, only the eager and acting figures."""
    # The graph-vs-eager comparison runs with deterministic algorithms (otherwise cuDNN's weight
    # gradients differ from run to run by themselves); cuBLAS reads this once, at its start.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    on = _device(device)
    on_gpu = on.type == "cuda"
    out: dict[str, Any] = {"device": str(on), "batch_size": 32}
    for members in (1, 3):
        suffix = "" if members == 1 else f"_k{members}"
        generator = torch.Generator().manual_seed(1)
        batches = [_batch(on, members, generator=generator, weights=True) for _ in range(8)]

        def synced(agent, batches=batches):
            def update():
                agent.update(batches[agent.updates % len(batches)])
                if on_gpu:
                    torch.cuda.synchronize()

            return update

        eager_agents = _update_agents(on, cuda_graph=False, members=members)
        if on_gpu:
            torch.use_deterministic_algorithms(True)
            for name, graph in _update_agents(on, cuda_graph=True, members=members).items():
                eager = _update_agents(on, cuda_graph=False, members=members)[name]
                for batch in batches:
                    eager.update(batch)
                    graph.update(batch)
                out[f"{name}{suffix}_graph_vs_eager_max_weight_diff"] = max(
                    (p - q).abs().max().item()
                    for p, q in zip(eager.online.parameters(), graph.online.parameters(), strict=True)
                )
            torch.use_deterministic_algorithms(False)
        graph_agents = _update_agents(on, cuda_graph=True, members=members) if on_gpu else {}
        for name, eager in eager_agents.items():
            if not on_gpu:
                out[f"{name}{suffix}_update_ms"] = 1000 / _timed(synced(eager), seconds)
                continue
            graph = graph_agents[name]
            eager_rate, graph_rate = _paired(synced(eager), synced(graph), seconds, block=10)
            out[f"{name}{suffix}_update_ms"] = 1000 / eager_rate
            out[f"{name}{suffix}_cuda_graph_update_ms"] = 1000 / graph_rate
            out[f"{name}{suffix}_cuda_graph_vs_eager"] = eager_rate / graph_rate
            if members == 1:
                profile = _device_profile(lambda agent=eager, first=batches[0]: agent.update(first), 20)
                out.update({f"{name}_{key}": value for key, value in profile.items()})
            else:  # the population's members mapped with vmap (a GPU's default) or one after another
                one_by_one = _agent(name, on, members, cuda_graph=True, vectorized=False)
                vmap_rate, loop_rate = _paired(synced(graph), synced(one_by_one), seconds, block=10)
                out[f"{name}{suffix}_cuda_graph_vmap_update_ms"] = 1000 / vmap_rate
                out[f"{name}{suffix}_cuda_graph_one_after_another_update_ms"] = 1000 / loop_rate
                out[f"{name}{suffix}_vmap_vs_one_after_another"] = vmap_rate / loop_rate
        if on_gpu and members == 1:  # the graph in bf16
            bf16 = {p: _agent("nature", on, cuda_graph=p == "graph", precision="bf16") for p in ("eager", "graph")}
            rate_eager, rate_graph = _paired(synced(bf16["eager"]), synced(bf16["graph"]), seconds, block=10)
            out["nature_bf16_update_ms"] = 1000 / rate_eager
            out["nature_bf16_cuda_graph_update_ms"] = 1000 / rate_graph

    acting = _agent("nature", on)
    for num_envs in (1, 4):
        stacks = np.random.default_rng(0).integers(0, 256, (1, num_envs, 4, 84, 84), dtype=np.uint8)

        def act(stacks=stacks):
            acting.act(stacks, [0.0])  # returns host actions: one round trip

        out[f"act_ms_{num_envs}env"] = 1000 / _timed(act, seconds / 2)
        if on_gpu:
            out[f"act_device_busy_ms_{num_envs}env"] = _device_profile(act, 50)["device_busy_ms_per_call"]
    return out


# ---------------------------------------------------------------------------- loop
def _loop_config(device: str | None) -> tuple[Path | None, list[str]]:
    """pong.yaml (None: the defaults, which are Pong's too, when run from an installed package)
    and the loop benchmarks' overrides: no logging, evaluation or checkpoints on the clock."""
    config = Path(__file__).resolve().parent.parent / "configs" / "pong.yaml"
    overrides = [
        "env.game=Pong",
        "replay.capacity=100000",
        "train.train_frequency_steps=4",
        "train.batch_size=32",
        "eval.every_frames=0",
        "checkpoint.every_frames=0",
        "log.tensorboard=false",
        "log.csv=false",
        "log.progress=quiet",
        "log.every_steps=1000000000",
        f"train.device={device or 'auto'}",
        # epsilon as after its decay (most of a run): nearly every step acts with a forward pass
        "agent.epsilon_start=0.01",
        "agent.epsilon_end=0.01",
    ]
    return (config if config.exists() else None), overrides


def _run_steps(trainer, n: int) -> None:
    """n more agent steps of the real training loop, without the checkpoint that ends a run
    (it would be timed once per slice: a replay write, and from a GPU a copy of its frames)."""
    trainer.cfg.train.total_frames = trainer.frames + n * trainer.cfg.env.frame_skip
    trainer.train(checkpoint_at_end=False)


def _warm(trainer, steps: int) -> None:
    """Fill the replay with random play, then learn from the next step on."""
    trainer.cfg.train.learning_starts_steps = 10**12
    _run_steps(trainer, steps)
    trainer.cfg.train.learning_starts_steps = trainer.steps


def bench_loop(seconds: float = 20.0, device: str | None = None) -> dict:
    """The full training loop on Pong with a warm replay (learning on from the first step),
    against the learner bound train_frequency / update_seconds measured in the same run."""
    import tempfile

    from dqn_atari.config import load_config
    from dqn_atari.trainer import Trainer, batch_to_device

    config, overrides = _loop_config(device)
    # The same loop at 1 env (CleanRL's setting) and 4 envs (one batched forward acts for all),
    # and with prioritized replay at 1 env.
    settings = {
        "uniform": ["env.num_envs=1", "replay.prioritized=false"],
        "uniform_4env": ["env.num_envs=4", "replay.prioritized=false"],
        "prioritized": ["env.num_envs=1", "replay.prioritized=true"],
    }
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {
            kind: Trainer(load_config(config, overrides + extra), Path(tmp) / kind) for kind, extra in settings.items()
        }
        tf = trainers["uniform"].cfg.train.train_frequency_steps

        def update_only(trainer=trainers["uniform"]) -> None:
            batch = trainer.replay.sample(32)
            trainer.agent.update(batch_to_device([batch], trainer.device))
            if trainer.device.type == "cuda":
                torch.cuda.synchronize()

        for trainer in trainers.values():
            _warm(trainer, 5_000)
        steps_per_round = max(200, int(seconds / 3 * tf * _timed(update_only, 1.0)))

        rates: dict[str, list[float]] = {kind: [] for kind in [*settings, "bound"]}
        for _ in range(3):  # interleaved: each loop, then the learner alone
            for kind, trainer in trainers.items():
                start_steps, start = trainer.steps, time.perf_counter()
                _run_steps(trainer, steps_per_round)
                rates[kind].append((trainer.steps - start_steps) / (time.perf_counter() - start))
            trainer = trainers["uniform"]
            updates_before = trainer.agent.updates
            rates["bound"].append(tf * _timed(update_only, seconds / 6))
            # Those extra updates must not count against the loop's schedule.
            trainer.cfg.train.learning_starts_steps -= (trainer.agent.updates - updates_before) * tf
        # Where the loop's time goes, after the timed rounds (profiling slows Python code).
        breakdown = {
            f"profile_{kind}": _loop_profile(lambda trainer=trainers[kind]: _run_steps(trainer, steps_per_round))
            for kind in ("uniform", "uniform_4env")
        }
        for trainer in trainers.values():
            trainer.close()
    out: dict[str, Any] = {
        "device": str(trainers["uniform"].device),
        "train_frequency_steps": tf,
        "train_steps_per_s_1env": float(np.median(rates["uniform"])),
        "train_steps_per_s": float(np.median(rates["uniform_4env"])),
        "learner_bound_steps_per_s": float(np.median(rates["bound"])),
        "prioritized_train_steps_per_s": float(np.median(rates["prioritized"])),
    }
    out["loop_vs_learner_bound_1env"] = out["train_steps_per_s_1env"] / out["learner_bound_steps_per_s"]
    out["loop_vs_learner_bound"] = out["train_steps_per_s"] / out["learner_bound_steps_per_s"]
    out["prioritized_vs_uniform_loop"] = out["prioritized_train_steps_per_s"] / out["train_steps_per_s_1env"]
    out.update(breakdown)
    return out


def bench_loop_grid(seconds: float = 5.0, device: str | None = None, env_counts: tuple[int, ...] = (1, 4, 8)) -> dict:
    """Agent steps per second of the whole training loop (as `loop`: Pong, epsilon 0.01, an
    update every 4 agent steps, warm replay) for 1, 4 and 8 envs on both env backends, and on a
    GPU with the replay's frames in pinned host memory, on the GPU itself, and on the GPU with
    the update replayed as a CUDA graph (`train.cuda_graph`)."""
    import tempfile

    from dqn_atari.config import load_config
    from dqn_atari.trainer import Trainer

    config, overrides = _loop_config(device)
    # DeepMind's stacks (as configs/pong-fast.yaml), the ones both backends implement.
    overrides += ["env.frame_stack_padding=zeros", "env.frame_stack_restart_on_life_loss=false"]
    overrides += ["env.fire_on_life_loss=false"]
    on_gpu = _device(device).type == "cuda"
    # (replay.frames_on_device, train.cuda_graph) for each variant
    frame_stores = {"host": ("false", "false")}
    if on_gpu:
        frame_stores.update({"gpu": ("true", "false"), "gpu_cuda_graph": ("true", "true")})
    out: dict[str, Any] = {"device": "cuda" if on_gpu else "cpu"}
    profiled = {("gymnasium", min(env_counts), "host"), ("ale_vector", max(env_counts), "host")}
    profiled |= {("ale_vector", max(env_counts), "gpu_cuda_graph")}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in ("gymnasium", "ale_vector"):
            for num_envs in env_counts:
                for store, (on_device, cuda_graph) in frame_stores.items():
                    name = f"{backend}_{num_envs}env_{store}_frames"
                    settings = [f"env.backend={backend}", f"env.num_envs={num_envs}"]
                    settings += [f"replay.frames_on_device={on_device}", f"train.cuda_graph={cuda_graph}"]
                    trainer = Trainer(load_config(config, overrides + settings), Path(tmp) / name)
                    _warm(trainer, 2_000)
                    _run_steps(trainer, 400)  # kernels chosen, caches and queues warm
                    steps, start = trainer.steps, time.perf_counter()
                    while time.perf_counter() - start < seconds:
                        _run_steps(trainer, 400)
                    out[f"steps_per_s_{name}"] = (trainer.steps - steps) / (time.perf_counter() - start)
                    if (backend, num_envs, store) in profiled:
                        out[f"profile_{name}"] = _loop_profile(lambda trainer=trainer: _run_steps(trainer, 2_000))
                    trainer.close()
    return out


# The loop's parts, as the functions that do them (cumulative time, so nested calls count once
# in their caller's part).
_LOOP_PARTS = {
    "update (forward, backward, optimiser)": ("agent.py", "update"),
    "replay sample": ("replay.py", "sample"),
    "host-to-device copy": ("trainer.py", "batch_to_device"),
    "acting forward pass": ("agent.py", "act"),
    "env step": ("vector.py", "step"),
    "replay add": ("replay.py", "add"),
    "logging and progress": ("trainer.py", "log_interval"),
}


def _loop_profile(run) -> dict[str, float]:
    """Share of the loop's wall time spent in each part (cProfile, cumulative times); the rest
    is the loop's own bookkeeping."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.runcall(run)
    total = time.perf_counter() - start
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    shares = {}
    for part, (file_name, function) in _LOOP_PARTS.items():
        seconds = sum(
            cumulative
            for (path, _, name), (_, _, _, cumulative, _) in stats.items()
            if name == function and path.endswith(file_name)
        )
        shares[part] = round(seconds / total, 3)
    shares["progress tick"] = round(
        sum(c for (path, _, name), (_, _, _, c, _) in stats.items() if name == "tick" and path.endswith("metrics.py"))
        / total,
        3,
    )
    shares["other"] = round(max(0.0, 1 - sum(shares.values())), 3)
    return shares


# ---------------------------------------------------------------------------- evaluate
def bench_evaluate(
    seconds: float = 0.0, episodes: int = 30, max_episode_frames: int = 6_000, device: str | None = None
) -> dict:
    """`episodes` Pong games of an untrained network at epsilon 0.05 (Nature protocol, games
    capped at `max_episode_frames` so that the benchmark ends in minutes), one at a time and
    side by side (one forward pass per step for all; emulators in worker processes where the
    machine has more than 2 cores, as `dqn-atari evaluate` does), in that order, with a check
    that every game's report is the same both ways. The network is on the GPU where there is
    one (`dqn-atari evaluate --device cuda`). `seconds` is unused: each is one pass."""
    from dataclasses import asdict

    from dqn_atari.evaluation import GreedyPolicy, play_episodes

    cores = os.cpu_count() or 1
    processes = 1 if cores <= 2 else min(cores - 1, episodes)
    where = _device(device)
    network = _agent("nature", where).member_network(0)
    threads = torch.get_num_threads()
    out: dict[str, Any] = {
        "episodes": episodes,
        "max_episode_frames": max_episode_frames,
        "processes": processes,
        "device": str(where),
    }
    reports = []
    for name, at_once, workers, torch_threads in (("sequential", 1, 1, 1), ("side_by_side", None, processes, threads)):
        torch.set_num_threads(torch_threads)  # as `dqn-atari evaluate`: one thread for batch-1 passes
        start = time.perf_counter()
        results = play_episodes(
            GreedyPolicy(network),
            "Pong",
            episodes=episodes,
            epsilon=0.05,
            max_episode_frames=max_episode_frames,
            games_at_once=at_once,
            processes=workers,
        )
        out[f"{name}_seconds"] = time.perf_counter() - start
        reports.append([asdict(r) for r in results])
    torch.set_num_threads(threads)
    out["side_by_side_speedup"] = out["sequential_seconds"] / out["side_by_side_seconds"]
    out["games_identical"] = reports[0] == reports[1]
    out["frames_played"] = int(sum(r["frames"] for r in reports[0]))
    return out


# ---------------------------------------------------------------------------- population
def bench_population(
    seconds: float = 10.0,
    device: str | None = None,
    counts: tuple[int, ...] = (1, 2, 3, 4, 8),
    num_envs: int | None = None,
) -> dict:
    """Agent steps per second of the training loop (as `loop`: Pong, epsilon 0.01, an update
    every 4 agent steps, warm replays) for K seeds in one process, per seed and in total,
    beside the same K seeds run one after another in this process (each its own trainer, one
    slice of steps each in turn), timed in alternating rounds. `num_envs` games per seed:
    by default 8 on a GPU (the GPU presets' count), 4 on a CPU."""
    import tempfile

    from dqn_atari.config import load_config
    from dqn_atari.trainer import Trainer

    if num_envs is None:
        num_envs = 8 if _device(device).type == "cuda" else 4
    config, overrides = _loop_config(device)
    overrides += ["env.frame_stack_padding=zeros", "env.frame_stack_restart_on_life_loss=false"]
    overrides += ["env.fire_on_life_loss=false", f"env.num_envs={num_envs}", "replay.capacity=20000"]
    out: dict[str, Any] = {"num_envs": num_envs}
    with tempfile.TemporaryDirectory() as tmp:
        for k in counts:
            configs = [load_config(config, [*overrides, f"seed={s}"]) for s in range(k)]
            population = Trainer(configs, [Path(tmp) / f"k{k}-population-{s}" for s in range(k)])
            alone = [Trainer(c, Path(tmp) / f"k{k}-alone-{c.seed}") for c in configs]
            out["device"] = str(population.device)
            for trainer in (population, *alone):
                _warm(trainer, 1_000)
                _run_steps(trainer, 4 * num_envs)  # kernels chosen, caches warm
            steps = max(4 * num_envs, int(40 * num_envs / k))  # a slice: about as long for every K
            spent = {"population": 0.0, "sequential": 0.0}
            done = {"population": 0, "sequential": 0}
            while min(spent.values()) < seconds / 2 or done["population"] < 3 * steps:
                start = time.perf_counter()
                _run_steps(population, steps)
                spent["population"] += time.perf_counter() - start
                done["population"] += steps * k
                start = time.perf_counter()
                for trainer in alone:
                    _run_steps(trainer, steps)
                spent["sequential"] += time.perf_counter() - start
                done["sequential"] += steps * k
            out[f"population_steps_per_s_total_k{k}"] = done["population"] / spent["population"]
            out[f"population_steps_per_s_per_seed_k{k}"] = done["population"] / spent["population"] / k
            out[f"sequential_steps_per_s_total_k{k}"] = done["sequential"] / spent["sequential"]
            out[f"population_vs_sequential_k{k}"] = spent["sequential"] / spent["population"]
            if k == 3:
                out["profile_k3"] = _loop_profile(lambda trainer=population, n=3 * steps: _run_steps(trainer, n))
            for trainer in (population, *alone):
                trainer.close()
    return out


# ---------------------------------------------------------------------------- checkpoint
def bench_checkpoint(seconds: float = 0.0, capacity: int = 1_000_000, directory: str | None = None) -> dict:
    """The first checkpoint of a run whose replay is full (every frame chunk written, so all of it
    is saved), then one after 10,000 more transitions (which rewrites only the frame chunks
    those touched). `seconds` is unused: each is one write."""
    import tempfile

    from dqn_atari.checkpoint import Checkpointer

    buf = _full_replay(capacity)
    agent = _agent("nature", torch.device("cpu"))
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        checkpointer = Checkpointer(tmp, keep_last=2)

        def save(frames: int) -> float:
            start = time.perf_counter()
            checkpointer.save(frames, {"agent": agent.member_state_dict(0)}, {"config": {}}, {}, buf)
            return time.perf_counter() - start

        full = save(1)
        full_bytes = sum(f.stat().st_size for f in checkpointer.list()[0].rglob("*") if f.is_file())
        obs = rng.integers(0, 255, size=(1, 4, 84, 84), dtype=np.uint8)
        no = np.zeros(1, dtype=bool)
        for _ in range(10_000):
            buf.add(obs, np.zeros(1), np.zeros(1), no, no, no, obs)
        incremental = save(2)
        newest = checkpointer.list()[0]
        written = sum(f.stat().st_size for f in newest.rglob("*") if f.is_file() and f.stat().st_nlink == 1)
    return {
        "capacity": capacity,
        "checkpoint_seconds_full": full,
        "checkpoint_seconds_incremental": incremental,
        "incremental_vs_full": incremental / full,
        "full_bytes_written": full_bytes,  # the whole replay: 7 GB for 1M transitions
        "incremental_bytes_written": written,
    }


# ---------------------------------------------------------------------------- video
def bench_video(seconds: float = 0.0, max_episode_frames: int = 8_000) -> dict:
    """One evaluation game of an untrained Pong network with an MP4 recorded (scale 3), divided by
    the same game (same seed, same actions) without; alternated twice. `seconds` is unused."""
    import tempfile

    from dqn_atari.evaluation import GreedyPolicy, play_episodes
    from dqn_atari.video import EpisodeVideo

    q_values = GreedyPolicy(_agent("nature", torch.device("cpu")).member_network(0))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as `dqn-atari evaluate` plays on CPU, with or without video

    def play(recorder_for) -> tuple[float, int]:
        start = time.perf_counter()
        results = play_episodes(
            q_values, "Pong", episodes=1, epsilon=0.05, max_episode_frames=max_episode_frames, recorder_for=recorder_for
        )
        return time.perf_counter() - start, results[0].frames

    with tempfile.TemporaryDirectory() as tmp:
        plain, recorded = 0.0, 0.0
        for _ in range(2):
            t, frames = play(None)
            plain += t
            t, _ = play(lambda i: EpisodeVideo(Path(tmp) / "v.mp4", scale=3))
            recorded += t
    torch.set_num_threads(threads)
    return {
        "episode_frames": frames,
        "episode_seconds_without_video": plain / 2,
        "episode_seconds_with_video": recorded / 2,
        "record_overhead": recorded / plain,
    }


# `all` runs them in this order; checkpoint goes last because the gigabytes it writes are still
# being flushed to disk for a while afterwards, which would slow whatever ran next.
BENCHMARKS = {
    "env": bench_env,
    "replay": bench_replay,
    "learner": bench_learner,
    "denormal": bench_denormal,
    "update_gpu": bench_update_gpu,
    "loop": bench_loop,
    "loop_grid": bench_loop_grid,
    "population": bench_population,
    "evaluate": bench_evaluate,
    "video": bench_video,
    "checkpoint": bench_checkpoint,
}


def run(
    which: str, json_path: str | None = None, seconds: float | None = None, replay_capacity: int = 1_000_000
) -> int:
    names = list(BENCHMARKS) if which == "all" else [which]
    results: dict = {"machine": machine()}
    for name in names:
        kwargs = {} if seconds is None else {"seconds": seconds}
        if name in ("replay", "checkpoint"):
            kwargs["capacity"] = replay_capacity
        print(f"running benchmark '{name}'...", flush=True)
        results[name] = BENCHMARKS[name](**kwargs)
        _print_table(name, results[name])
    if which == "all":
        _print_summary(results)
    if json_path:
        partial = Path(json_path).with_name(f".{Path(json_path).name}.tmp")  # never half-written
        partial.write_text(json.dumps(results, indent=2) + "\n")
        partial.replace(json_path)
        print(f"wrote {json_path}")
    return 0


# benchmark -> (figure, target) for the one-table summary of `benchmark all`
TARGETS = {
    "env": [("wrapper_vs_reference", ">= 0.95"), ("vector_vs_wrapper", ">= 1.8")],
    "replay": [("bytes_per_transition", "<= 7100"), ("sample_vs_gather_bound", ">= 0.7")],
    "learner": [("update_vs_raw", "<= 1.05"), ("rainbow_vs_update", "<= 1.35"), ("channels_last_vs_fp32", ">= 1.0")],
    "loop": [
        ("loop_vs_learner_bound_1env", ">= 0.9"),
        ("loop_vs_learner_bound", ">= 0.9"),
        ("prioritized_vs_uniform_loop", ">= 0.9"),
    ],
    "population": [("population_vs_sequential_k3", ">= 0.95")],
    "evaluate": [("side_by_side_speedup", ">= 1.5")],
    "checkpoint": [("incremental_vs_full", "<= 0.1")],
    "video": [("record_overhead", "<= 1.5")],
}


def _print_summary(results: dict) -> None:
    m = results["machine"]
    print(f"== all, on {m['cpu']} ({m['cores']} cores), torch {m['torch']}, device {m['cuda_device'] or 'cpu'}")
    print(f"  {'benchmark':<11} {'figure':<24} {'value':>12}  {'target':<8}  met")
    for name, rows in TARGETS.items():
        for key, target in rows:
            if name in results:
                value = results[name][key]
                bound = float(target.split()[1])
                met = value >= bound if target.startswith(">=") else value <= bound
                print(f"  {name:<11} {key:<24} {value:>12,.3f}  {target:<8}  {'yes' if met else 'NO'}")


def _print_table(name: str, figures: dict) -> None:
    width = max(len(k) for k in figures)
    print(f"== {name}")
    for k, v in figures.items():
        if isinstance(v, dict):  # a breakdown: one line per part, in ms or as a share
            print(f"  {k}:")
            for part, value in v.items():
                print(f"    {part:<40} " + (f"{value:>9.4f} ms" if k.endswith("_ms_per_call") else f"{value:>6.1%}"))
            continue
        shown = f"{v:,.3f}" if isinstance(v, float) else str(v)
        print(f"  {k:<{width}}  {shown}")
