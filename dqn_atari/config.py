"""One typed configuration for a run: YAML files plus dotted `key=value` overrides.

Units are in the names: `*_frames` counts emulator frames (the paper's budget unit),
`*_steps` counts agent steps (one action = `frame_skip` frames, summed over parallel envs),
`*_updates` counts gradient updates.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import yaml

from dqn_atari.errors import ConfigError


@dataclass
class EnvConfig:
    game: str = "Pong"  # an Atari game; `dqn-atari games` lists them
    # nature: no sticky actions (the NoFrameskip-v4 setting of Mnih et al. 2015);
    # machado: sticky actions with probability 0.25 (Machado et al. 2018, section 5).
    protocol: Literal["nature", "machado"] = "nature"
    # gymnasium: our wrapper stack over ale-py, one emulator per env, stepped in this process;
    # ale_vector: ale-py's C++ AtariVectorEnv, envs stepped on worker threads.
    backend: Literal["gymnasium", "ale_vector"] = "gymnasium"
    num_envs: int = 1  # games played side by side, acted on in one batched forward pass
    frame_skip: int = 4  # action repeat: frames per agent step (max of the last two observed)
    noop_max: int = 30  # a game starts with 1..noop_max random no-op frames
    fire_reset: bool = True  # press FIRE once after reset, in games that wait for it
    # Life loss ends the *learning* episode (zero bootstrap) while the game goes on.
    terminal_on_life_loss: bool = True
    max_episode_frames: int = 108_000  # a game is truncated (bootstrapped) after this many frames
    frame_size: int = 84  # frames are resized to frame_size x frame_size
    frame_stack: int = 4  # frames per observation, newest last
    # What fills a new stack's older slots: zeros (DeepMind's code, Dopamine, DQN Zoo) or the first
    # frame repeated (Baselines, CleanRL). The replay rebuilds stacks the same way.
    frame_stack_padding: Literal["zeros", "first_frame"] = "zeros"
    # A life loss starts a new frame stack, as if a new game began (Baselines, CleanRL: their
    # EpisodicLifeEnv resets the wrappers above it). Needs terminal_on_life_loss.
    frame_stack_restart_on_life_loss: bool = False
    # After each life loss, play NOOP, FIRE, action 2 unseen (Baselines/CleanRL's FireResetEnv
    # sits above EpisodicLifeEnv), so the ball is served for the agent. Needs the restart above.
    fire_on_life_loss: bool = False


@dataclass
class NetworkConfig:
    # The convolutional torso (dqn_atari/networks.py, TORSOS): nature, Mnih et al. 2015's three
    # convolutions.
    torso: Literal["nature"] = "nature"
    hidden_size: int = 512  # units of the head's hidden layer (each stream's, when dueling)
    # Dueling head (Wang et al. 2016): Q = V + A - mean(A), two streams of hidden_size units.
    dueling: bool = False
    # Noisy linear layers in the head (Fortunato et al. 2018, factorised Gaussian noise); they
    # explore by themselves, so configs using them set agent.exploration to none.
    noisy: bool = False
    noisy_sigma0: float = 0.5  # initial noise scale sigma_0 of the noisy layers
    # When the online network's noise is redrawn for acting: step, at every acting step from the
    # first one (Dopamine's and DQN Zoo's agents); update, only at each update, acting on the
    # last update's noise (before learning starts, one draw holds). Each update draws fresh
    # noise for the online and the target network either way.
    noise_per: Literal["step", "update"] = "step"
    iqn_cosines: int = 64  # IQN: cosines n of the quantile embedding (Dabney et al. 2018b: 64)
    # NHWC activations for the convolutions: faster with cuDNN and with oneDNN on the CPUs
    # measured (see the README's benchmarks); the numbers are the same either way.
    channels_last: bool = True


@dataclass
class ReplayConfig:
    capacity: int = 1_000_000  # transitions held (split evenly between the envs)
    n_step: int = 1  # n-step returns, cut at learning terminals
    # Prioritized replay (Schaul et al. 2016, proportional): P(i) ~ (loss_i + 1e-6)^alpha, with
    # importance-sampling weights whose beta moves linearly from beta_start to beta_end over
    # train.total_frames.
    prioritized: bool = False
    priority_alpha: float = 0.5  # prioritization exponent alpha
    priority_beta_start: float = 0.4  # importance-sampling exponent at the first frame
    priority_beta_end: float = 1.0  # ...and at train.total_frames
    # Keep the uint8 frame store on the training device (a GPU), so sampling never copies frames
    # from host memory; 1M frames take 7 GB of GPU memory.
    frames_on_device: bool = False


@dataclass
class OptimizerConfig:
    # adam; rmsprop (torch's: eps outside the square root); deepmind_rmsprop (the Nature DQN's:
    # centred, eps inside the square root; see dqn_atari/optimizers.py)
    name: Literal["adam", "rmsprop", "deepmind_rmsprop"] = "deepmind_rmsprop"
    lr: float = 2.5e-4  # learning rate
    eps: float = 0.01 / 32**2  # epsilon of Adam or RMSProp (see `name` for where RMSProp puts it)
    rmsprop_alpha: float = 0.95  # RMSProp's decay of its running averages
    rmsprop_centered: bool = True  # torch's RMSprop only: subtract the squared mean gradient
    # None turns gradient-norm clipping off.
    max_grad_norm: float | None = None


@dataclass
class AgentConfig:
    gamma: float = 0.99  # discount factor
    loss: Literal["huber", "mse"] = "huber"  # scalar TD loss (Huber: Nature's error clipping)
    double_dqn: bool = False  # the online network picks the bootstrap action (van Hasselt et al. 2016)
    # Hard sync every `target_update_period_steps` agent steps (DeepMind's code, Dopamine and
    # DQN Zoo: 10,000; CleanRL: 1,000), i.e. every period / train.train_frequency_steps updates;
    # with tau < 1 the target is instead moved softly by tau at every update.
    target_update_period_steps: int = 10_000
    tau: float = 1.0  # 1: hard target syncs; below 1: soft updates by tau at every update
    # What the network outputs per action and how it learns from it (dqn_atari/value_heads.py):
    # scalar (DQN: one Q-value, Huber or MSE per `loss`); c51 (Bellemare et al. 2017: a categorical
    # distribution over `atoms` returns on [v_min, v_max], cross-entropy to the projected target);
    # qr_dqn (Dabney et al. 2018a: `quantiles` fixed quantiles, quantile Huber loss); iqn (Dabney
    # et al. 2018b: quantiles at sampled fractions). Older configs' `distributional: true` is c51.
    value_head: Literal["scalar", "c51", "qr_dqn", "iqn"] = "scalar"
    atoms: int = 51  # C51: atoms of the return distribution
    v_min: float = -10.0  # C51: lowest return an atom stands for
    v_max: float = 10.0  # C51: highest return an atom stands for
    quantiles: int = 200  # QR-DQN: quantiles N of the return distribution
    huber_kappa: float = 1.0  # QR-DQN and IQN: kappa of the quantile Huber loss
    iqn_tau_samples: int = 64  # IQN: fractions N sampled for the online network in the loss
    iqn_tau_prime_samples: int = 64  # IQN: fractions N' sampled for the target network
    iqn_policy_samples: int = 32  # IQN: fractions K averaged to act and to pick the bootstrap action
    # Which games act at random (dqn_atari/exploration.py): linear_epsilon, epsilon-greedy on
    # the schedule below; none, always greedy (noisy nets explore through their noise).
    exploration: Literal["linear_epsilon", "none"] = "linear_epsilon"
    epsilon_start: float = 1.0  # exploration at the first frame
    epsilon_end: float = 0.1  # exploration after epsilon_decay_frames, annealed linearly
    # Nature's "final exploration frame 1,000,000" is 1M agent steps in DeepMind's code = 4M frames.
    epsilon_decay_frames: int = 4_000_000
    # Where the annealing begins: learning_starts, epsilon held at epsilon_start until learning
    # starts (DeepMind's Nature code, Dopamine, DQN Zoo); zero, from the first frame (CleanRL,
    # Baselines).
    epsilon_decay_start: Literal["learning_starts", "zero"] = "learning_starts"


@dataclass
class TrainConfig:
    # Nature: 50M agent steps = 200M frames ("38 days of game experience").
    total_frames: int = 200_000_000
    learning_starts_steps: int = 50_000  # agent steps of random play before the first update
    # One update every `train_frequency_steps` agent steps, whatever the number of envs.
    train_frequency_steps: int = 4
    batch_size: int = 32  # transitions per update
    device: str = "auto"  # auto (a GPU if there is one), cpu, cuda or cuda:N
    torch_threads: int = 0  # torch's CPU threads; 0: SLURM's CPUs per task under SLURM, else torch's default
    deterministic: bool = False  # torch's deterministic algorithms (bit-exact resume on CUDA too)
    # CPU arithmetic flushes denormal floats (nonzero, below 1.2e-38) to zero, as TensorFlow's
    # CPU kernels do: Adam's moments of barely used weights decay into that range over a long run
    # and every operation on them takes the CPU's slow path (`dqn-atari benchmark denormal`).
    # No update can move a weight by such an amount. Ignored on a GPU.
    flush_denormal: bool = True
    # On a GPU, replay each update as one captured CUDA graph (the same computation; several
    # times faster at batch 32, where launching the kernels costs more than running them).
    # Ignored on a CPU.
    cuda_graph: bool = False
    # bf16: the forward passes under bfloat16 autocast but for each head's output layer, which
    # stays fp32 with everything made from its outputs (Q-values, C51's log-softmax, the losses,
    # every argmax); weights, optimiser state and the loss's reduction stay fp32 too. A change
    # of numerics; faster where the CPU or GPU has bf16 units.
    precision: Literal["fp32", "bf16"] = "fp32"


@dataclass
class EvalConfig:
    episodes: int = 10  # full games per evaluation during training
    epsilon: float = 0.05  # exploration while evaluating (Nature: 0.05)
    every_frames: int = 1_000_000  # evaluate (and keep a model snapshot) this often; 0: never
    # Nature's evaluation cap: 5 minutes of play at 60 Hz = 18,000 frames.
    max_episode_frames: int = 18_000
    protocol: Literal["nature", "machado"] = "nature"  # no-op starts (nature) or sticky actions (machado)
    noop_max: int | None = None  # random no-ops at each game's start; null: the protocol's (30)
    # A noisy network's noise while evaluating: off (the mean weights; Dopamine), per_step (a
    # fresh draw at every step; DQN Zoo) or frozen (the acting noise when the evaluation began).
    noise: Literal["off", "per_step", "frozen"] = "per_step"
    # Stop training once an in-training evaluation's mean reaches this score (e.g. 18 for a
    # solved Pong); null trains to train.total_frames.
    stop_at_return: float | None = None


@dataclass
class LogConfig:
    every_steps: int = 10_000  # agent steps between logged loss, Q, speed and progress lines
    tensorboard: bool = True  # TensorBoard events in tb/ (x axis: emulator frames)
    csv: bool = True  # metrics.csv: frames, steps, wall_time, tag, value
    # auto: a bar on a terminal, plain lines otherwise (SLURM logs); quiet: neither
    progress: Literal["auto", "bar", "lines", "quiet"] = "auto"


@dataclass
class CheckpointConfig:
    every_frames: int = 1_000_000  # write a checkpoint this often (and at the end); 0: only at the end
    keep_last: int = 2  # checkpoints kept; older ones are deleted


@dataclass
class Config:
    seed: int = 0  # one seed; every random stream of the run is derived from it
    run_dir: str | None = None  # the run directory; null: runs_root/<game>-<config>-s<seed>-<time>
    runs_root: str = "runs"  # where new run directories go
    # Recorded in the run's name; set from the config file's stem when loaded from a file.
    config_name: str = "default"
    env: EnvConfig = field(default_factory=EnvConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)


# (dotted key, predicate, what a valid value is). Checked after types, before anything runs.
_RANGES: list[tuple[str, Any, str]] = [
    # numpy's global seed takes 32 bits
    ("seed", lambda v: 0 <= v < 2**32, "an integer in [0, 2**32)"),
    ("env.num_envs", lambda v: v >= 1, "an integer >= 1"),
    ("env.frame_skip", lambda v: v >= 1, "an integer >= 1"),
    # a reset plays up to noop_max frames: a huge value hangs every reset (Nature: 30)
    ("env.noop_max", lambda v: 0 <= v <= 10_000, "an integer in [0, 10000]"),
    ("env.max_episode_frames", lambda v: v >= 1, "an integer >= 1"),
    # the Nature network's three convolutions need 36 pixels: 36 -> 8 -> 3 -> 1
    ("env.frame_size", lambda v: 36 <= v <= 1024, "an integer in [36, 1024]"),
    ("env.frame_stack", lambda v: v >= 1, "an integer >= 1"),
    ("network.hidden_size", lambda v: v >= 1, "an integer >= 1"),
    ("replay.capacity", lambda v: v >= 1, "a positive integer"),
    ("replay.n_step", lambda v: v >= 1, "an integer >= 1"),
    ("replay.priority_alpha", lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    ("replay.priority_beta_start", lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    ("replay.priority_beta_end", lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    ("optimizer.lr", lambda v: v > 0, "a positive number"),
    ("optimizer.eps", lambda v: v > 0, "a positive number"),
    ("optimizer.rmsprop_alpha", lambda v: 0 <= v < 1, "a number in [0, 1)"),
    ("optimizer.max_grad_norm", lambda v: v is None or v > 0, "a positive number or null"),
    ("agent.gamma", lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    ("agent.target_update_period_steps", lambda v: v >= 1, "an integer >= 1"),
    ("agent.tau", lambda v: 0 < v <= 1, "a number in (0, 1]"),
    # Upper bounds far above the papers' (51 atoms, 200 quantiles, 64 fractions and cosines):
    # the head's output and the loss's pairwise terms grow with them, and a typo of a few more
    # digits would end in an out-of-memory crash at the first update instead of this line.
    ("agent.atoms", lambda v: 2 <= v <= 10_000, "an integer in [2, 10000]"),
    ("agent.quantiles", lambda v: 1 <= v <= 10_000, "an integer in [1, 10000]"),
    ("agent.huber_kappa", lambda v: v > 0, "a positive number"),
    ("agent.iqn_tau_samples", lambda v: 1 <= v <= 10_000, "an integer in [1, 10000]"),
    ("agent.iqn_tau_prime_samples", lambda v: 1 <= v <= 10_000, "an integer in [1, 10000]"),
    ("agent.iqn_policy_samples", lambda v: 1 <= v <= 10_000, "an integer in [1, 10000]"),
    ("network.iqn_cosines", lambda v: 1 <= v <= 10_000, "an integer in [1, 10000]"),
    ("network.noisy_sigma0", lambda v: v >= 0, "a number >= 0"),
    ("agent.epsilon_start", lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    ("agent.epsilon_end", lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    ("agent.epsilon_decay_frames", lambda v: v >= 1, "an integer >= 1"),
    ("train.total_frames", lambda v: v >= 1, "an integer >= 1"),
    ("train.learning_starts_steps", lambda v: v >= 0, "an integer >= 0"),
    ("train.train_frequency_steps", lambda v: v >= 1, "an integer >= 1"),
    ("train.batch_size", lambda v: v >= 1, "an integer >= 1"),
    ("train.torch_threads", lambda v: v >= 0, "an integer >= 0"),
    ("eval.episodes", lambda v: v >= 0, "an integer >= 0"),
    ("eval.epsilon", lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    ("eval.every_frames", lambda v: v >= 0, "an integer >= 0 (0: no evaluation during training)"),
    ("eval.max_episode_frames", lambda v: v >= 1, "an integer >= 1"),
    ("eval.noop_max", lambda v: v is None or 0 <= v <= 10_000, "an integer in [0, 10000] or null"),
    ("log.every_steps", lambda v: v >= 1, "an integer >= 1"),
    ("checkpoint.every_frames", lambda v: v >= 0, "an integer >= 0 (0: only at the end)"),
    ("checkpoint.keep_last", lambda v: v >= 1, "an integer >= 1"),
]


def key_descriptions(cls: type = Config, prefix: str = "") -> dict[str, str]:
    """Dotted key -> a one-line description, read from the comments in this file: the comment
    block right above a field, else the comment at the end of its line."""
    import inspect

    fields = typing.get_type_hints(cls)
    out: dict[str, str] = {}
    block: list[str] = []
    for line in inspect.getsource(cls).splitlines()[1:]:
        text = line.strip()
        if text.startswith("#"):
            block.append(text.lstrip("#").strip())
            continue
        name = text.split(":", 1)[0].strip()
        if name in fields:
            if dataclasses.is_dataclass(fields[name]):
                out.update(key_descriptions(fields[name], prefix + name + "."))
            else:
                inline = line.split("  # ", 1)[1].strip() if "  # " in line else ""
                out[prefix + name] = " ".join(block) or inline
        block = []
    return out


def key_choices(key: str) -> str:
    """What values a key takes: its choices, or the range it is checked against."""
    section, _, name = key.rpartition(".")
    cls: Any = Config
    for part in filter(None, section.split(".")):
        cls = typing.get_type_hints(cls)[part]
    typ = typing.get_type_hints(cls)[name]
    if typing.get_origin(typ) is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(typ)))
    for ranged, _, valid in _RANGES:
        if ranged == key:
            return valid
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    inner = [a for a in typing.get_args(typ) if a is not type(None)] or [typ]
    return names.get(inner[0], str(typ)) + (" or null" if type(None) in typing.get_args(typ) else "")


def all_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every valid dotted key, e.g. 'replay.capacity'."""
    keys = []
    for name, typ in typing.get_type_hints(cls).items():
        if dataclasses.is_dataclass(typ):
            keys.extend(all_keys(cast(type, typ), prefix + name + "."))
        else:
            keys.append(prefix + name)
    return keys


# Keys that changed meaning as well as name: the message says how to convert an old value.
_RENAMED = {
    "agent.target_update_period": "agent.target_update_period_steps, in agent steps "
    "(old value x train.train_frequency_steps)",
}


# Keys older configs wrote that today's read as another key's value.
_CONVERTED = {
    # C51 was a switch before value heads had a name
    "agent.distributional": lambda value: ("agent.value_head", "c51") if value else None,
}

# Keys added with a default that differs from what runs did before the key existed: an older
# resolved config (which lacks the key) ran with this value.
_BEFORE_THE_KEY = {
    "agent.epsilon_decay_start": "zero",
    "network.noise_per": "update",
    "eval.noise": "frozen",
    "network.channels_last": False,
}


def in_todays_keys(flat: dict[str, Any]) -> dict[str, Any]:
    """A resolved config written by an older version, flattened (`section.key: value`), as
    today's version would write it: renamed keys converted as `_RENAMED` and `_CONVERTED` say,
    keys added since at what runs did before them (`_BEFORE_THE_KEY`, else the default, which
    for those keys switches on something new). Keys unknown today are kept as they are."""
    out = dict(flat)
    if "agent.target_update_period" in out:  # counted updates; now agent steps
        frequency = out.get("train.train_frequency_steps", TrainConfig.train_frequency_steps)
        out["agent.target_update_period_steps"] = out.pop("agent.target_update_period") * frequency
    for old, convert in _CONVERTED.items():
        if old in out:
            converted = convert(out.pop(old))
            if converted is not None:
                out.setdefault(*converted)
    defaults = {**flatten(to_dict(Config())), **_BEFORE_THE_KEY}
    return {**defaults, **out}


def upgraded(resolved: dict) -> dict:
    """A resolved config (nested, e.g. a checkpoint's) in today's keys."""
    nested: dict[str, Any] = {}
    for key, value in in_todays_keys(flatten(resolved)).items():
        section, _, name = key.rpartition(".")
        (nested.setdefault(section, {}) if section else nested)[name] = value
    return nested


def typed(resolved: dict) -> Config:
    """A resolved config of any version (e.g. a checkpoint's) as today's Config: upgraded, with
    the keys that today's version no longer has left out."""
    known = set(all_keys())
    flat = {key: value for key, value in in_todays_keys(flatten(resolved)).items() if key in known}
    return from_dict(upgraded(flat))


def flatten(nested: dict, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}"""
    out: dict[str, Any] = {}
    for key, value in nested.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


# CleanRL's dqn_atari.py arguments, as its users type them, and what each is called here.
CLEANRL_NAMES = {
    "env_id": "env.game=Pong (a game's name, not a gym id)",
    "total_timesteps": "train.total_frames=N (frames: 4 x CleanRL's agent steps)",
    "learning_rate": "optimizer.lr",
    "buffer_size": "replay.capacity",
    "gamma": "agent.gamma",
    "tau": "agent.tau",
    "target_network_frequency": "agent.target_update_period_steps",
    "batch_size": "train.batch_size",
    "start_e": "agent.epsilon_start",
    "end_e": "agent.epsilon_end",
    "exploration_fraction": "agent.epsilon_decay_frames (frames, not a fraction)",
    "learning_starts": "train.learning_starts_steps",
    "train_frequency": "train.train_frequency_steps",
}


def _unknown_key(key: str) -> ConfigError:
    if key in _RENAMED:
        return ConfigError(f"config key '{key}' was renamed: use {_RENAMED[key]}")
    cleanrl = CLEANRL_NAMES.get(key.replace("-", "_"))
    if cleanrl is not None:
        return ConfigError(f"unknown config key '{key}' (CleanRL's name); here it is {cleanrl}")
    keys = all_keys()
    section, _, leaf = key.rpartition(".")
    elsewhere = [k for k in keys if k.rsplit(".", 1)[-1] == leaf]  # agent.lr: the leaf lives in optimizer
    close = elsewhere[:1] or difflib.get_close_matches(key, keys, n=1, cutoff=0.5)
    sections = sorted({k.rsplit(".", 1)[0] for k in keys if "." in k})
    if section and section not in sections:  # a misspelled section: its closest, if the leaf is there
        for near in difflib.get_close_matches(section, sections, n=3, cutoff=0.5):
            if f"{near}.{leaf}" in keys:
                close = [f"{near}.{leaf}"]
                break
    if not close:  # a typo in the last part only: compare leaf names too
        leaves = {k.rsplit(".", 1)[-1]: k for k in keys}
        close = [leaves[m] for m in difflib.get_close_matches(leaf, list(leaves), n=1, cutoff=0.6)]
    hint = f"; did you mean '{close[0]}'?" if close else "; run `dqn-atari train --help-config` for the list"
    return ConfigError(f"unknown config key '{key}'{hint}")


def _coerce(key: str, value: Any, typ: Any) -> Any:
    """Check `value` against the field's type; ints are accepted where floats are expected."""
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(typ)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(key, value, inner[0])
    if origin is Literal:
        choices = typing.get_args(typ)
        if value not in choices:
            close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"config key '{key}' must be one of {', '.join(map(str, choices))}, got {value!r}{hint}")
        return value
    if typ is bool:
        if isinstance(value, bool):
            return value
    elif typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():  # 5e6 in YAML is a float
            return int(value)
    elif typ is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):  # YAML 1.1 reads '3e-4' (no dot) as a string
            with contextlib.suppress(ValueError):
                number = float(value)
        if number is not None:
            if not math.isfinite(number):
                raise ConfigError(f"config key '{key}' must be a finite number, got {value!r}")
            return number
    elif typ is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    raise ConfigError(f"config key '{key}' must be {names.get(typ, typ)}, got {value!r}")


def _apply(obj: Any, mapping: dict, prefix: str = "") -> None:
    hints = typing.get_type_hints(type(obj))
    for name, value in mapping.items():
        key = prefix + str(name)
        if key in _CONVERTED:
            converted = _CONVERTED[key](value)
            if converted is not None:  # a key of the same section
                _apply(obj, {converted[0].rsplit(".", 1)[1]: converted[1]}, prefix)
            continue
        if name not in hints:
            if isinstance(value, dict) and value:  # a misspelled section: name the whole key
                key = f"{key}.{next(iter(flatten(value)))}"
            raise _unknown_key(key)
        current = getattr(obj, name)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(
                    f"config key '{key}' is a section; give its fields, "
                    f"e.g. '{key}.{dataclasses.fields(current)[0].name}=...'"
                )
            _apply(current, value, key + ".")
        else:
            setattr(obj, name, _coerce(key, value, hints[name]))


def get(cfg: Config, key: str) -> Any:
    obj: Any = cfg
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def validate(cfg: Config) -> None:
    for key in ("run_dir", "runs_root"):
        value = get(cfg, key)
        try:
            (value or "").encode("utf-8")
        except UnicodeEncodeError as err:
            raise ConfigError(
                f"config key '{key}' holds a byte that is not UTF-8 (at character {err.start}); choose a name in UTF-8"
            ) from None
    for key, ok, valid in _RANGES:
        value = get(cfg, key)
        if not ok(value):
            raise ConfigError(f"config key '{key}' must be {valid}, got {value!r}")
    if cfg.eval.every_frames and cfg.eval.episodes < 1:
        raise ConfigError(
            "config key 'eval.episodes' must be at least 1 when evaluating during training "
            f"(eval.every_frames={cfg.eval.every_frames}); or set eval.every_frames=0"
        )
    if cfg.agent.v_min >= cfg.agent.v_max:
        raise ConfigError(
            f"config key 'agent.v_min' ({cfg.agent.v_min}) must be below 'agent.v_max' ({cfg.agent.v_max})"
        )
    if cfg.agent.epsilon_end > cfg.agent.epsilon_start:
        raise ConfigError(
            f"config key 'agent.epsilon_end' ({cfg.agent.epsilon_end}) must not exceed "
            f"'agent.epsilon_start' ({cfg.agent.epsilon_start})"
        )
    env = cfg.env
    if env.frame_stack_restart_on_life_loss and not env.terminal_on_life_loss:
        raise ConfigError(
            "config key 'env.frame_stack_restart_on_life_loss' needs env.terminal_on_life_loss=true: "
            "a restarted stack cannot be bootstrapped from"
        )
    if env.fire_on_life_loss and not env.frame_stack_restart_on_life_loss:
        raise ConfigError(
            "config key 'env.fire_on_life_loss' needs env.frame_stack_restart_on_life_loss=true "
            "(Baselines and CleanRL press FIRE inside the reset that restarts the stack)"
        )
    if env.backend == "ale_vector" and (
        env.frame_stack_padding != "zeros" or env.frame_stack_restart_on_life_loss or env.fire_on_life_loss
    ):
        raise ConfigError(
            "env.backend=ale_vector supports DeepMind's stacks only (zeros padding, no restart or FIRE at life "
            "loss); use env.backend=gymnasium for the Baselines/CleanRL conventions"
        )
    t = cfg.train
    if cfg.agent.tau == 1.0 and cfg.agent.target_update_period_steps % t.train_frequency_steps:
        raise ConfigError(
            f"config key 'agent.target_update_period_steps' ({cfg.agent.target_update_period_steps}) must be a "
            f"multiple of 'train.train_frequency_steps' ({t.train_frequency_steps}): the target syncs after an update"
        )
    if t.batch_size > cfg.replay.capacity:
        raise ConfigError(
            f"config key 'train.batch_size' ({t.batch_size}) must not exceed 'replay.capacity' ({cfg.replay.capacity})"
        )
    fewest_starts = max(t.batch_size, cfg.env.num_envs * (cfg.replay.n_step + 1))
    if t.learning_starts_steps < fewest_starts:
        raise ConfigError(
            f"config key 'train.learning_starts_steps' ({t.learning_starts_steps}) must be at least {fewest_starts}: "
            f"the first update samples a batch of {t.batch_size} from {cfg.env.num_envs} env(s) with "
            f"{cfg.replay.n_step}-step returns"
        )
    device = cfg.train.device
    if not (device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit())):
        raise ConfigError(f"config key 'train.device' must be auto, cpu, cuda or cuda:N, got {cfg.train.device!r}")
    from dqn_atari.envs.games import resolve_game  # late import: games lists ale-py's ROMs

    cfg.env.game = resolve_game(cfg.env.game)


MAX_SEEDS = 1_000_000  # in one --seeds list: far beyond any sweep, far below what fills a memory


def parse_seeds(text: str) -> list[int]:
    """'0-4', '0,2,7' or '3' -> seeds (for --seeds); a seed given twice is refused."""
    import re

    ranges: list[tuple[int, int]] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise ConfigError(f"--seeds {text!r} is not a seed list; use e.g. 0-4 or 0,1,5")
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
        if high < low:
            raise ConfigError(f"--seeds {text!r}: the range {low}-{high} is empty")
        ranges.append((low, high))
    # Counted before any list is built: a typo such as 0-99999999999 must not fill the memory.
    count = sum(high - low + 1 for low, high in ranges)
    if count > MAX_SEEDS:
        raise ConfigError(f"--seeds {text!r} gives {count:,} seeds; at most {MAX_SEEDS:,} at once")
    seeds: list[int] = [seed for low, high in ranges for seed in range(low, high + 1)]
    seen: set[int] = set()
    for seed in seeds:
        if seed in seen:
            raise ConfigError(f"--seeds {text!r} gives seed {seed} twice; each seed is one run")
        seen.add(seed)
    for seed in seeds:
        if seed >= 2**32:
            raise ConfigError(f"--seeds {text!r}: seed {seed} is not below 2**32")
    return seeds


def parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key=value, e.g. replay.capacity=100000")
    key, raw = text.split("=", 1)
    key = key.strip()
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except (yaml.YAMLError, RecursionError):
        value = raw
    return key, value


def _nest(key: str, value: Any) -> dict:
    out: Any = value
    for part in reversed(key.split(".")):
        out = {part: out}
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults <- YAML file (optionally `base:` another file) <- overrides; validated. A run's
    resolved config (the one that names its `config_name`) is read as today's version would
    have written it (`upgraded`), so a run resumes with the settings it was trained with."""
    cfg = Config()
    if path is not None:
        layers = _yaml_layers(Path(path))
        for layer in layers:
            _apply(cfg, upgraded(layer) if "config_name" in layer else layer)
        if not any("config_name" in layer for layer in layers):  # a resolved config keeps its name
            cfg.config_name = Path(path).stem
    for text in overrides:
        key, value = parse_override(text)
        _apply(cfg, _nest(key, value))
    validate(cfg)
    return cfg


def _yaml_layers(path: Path, seen: tuple[Path, ...] = ()) -> list[dict]:
    if path.is_dir():
        raise ConfigError(f"config file '{path}' is a directory; give a YAML file, e.g. {path / 'pong.yaml'}")
    if not path.is_file():
        names = [str(p) for p in path.parent.glob("*.yaml")] if path.parent.is_dir() else []
        close = difflib.get_close_matches(str(path), names, n=1, cutoff=0.7)
        hint = f"; did you mean {close[0]}?" if close else "; the shipped ones are in configs/"
        raise ConfigError(f"config file '{path}' does not exist{hint}")
    if path.resolve() in seen:
        raise ConfigError(f"config file '{path}' includes itself through 'base:'")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file '{path}' is not UTF-8 text (byte {err.start})") from None
    except OSError as err:
        raise ConfigError(f"config file '{path}' cannot be read ({err.strerror})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file '{path}' is not valid YAML{where}") from None
    except RecursionError:
        raise ConfigError(f"config file '{path}' is nested too deeply to be a config (sections hold keys)") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping of sections, got {type(data).__name__}")
    base = data.pop("base", None)
    if base is not None and not isinstance(base, str):
        raise ConfigError(f"config file '{path}': 'base' must be a file name such as nature.yaml, got {base!r}")
    layers = _yaml_layers(_base_file(path, base), seen + (path.resolve(),)) if base else []
    return layers + [data]


# The configs shipped with the source tree, where `base:` also looks.
SHIPPED_CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def _base_file(path: Path, base: str) -> Path:
    """`base:` names a file next to the config, or one of the shipped configs."""
    for candidate in (path.parent / base, SHIPPED_CONFIGS / base):
        if candidate.is_file():
            return candidate
    line = next(
        (i for i, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if text.startswith("base:")),
        None,
    )
    where = f"config file '{path}'" + (f", line {line}" if line else "")
    names = [p.name for folder in (path.parent, SHIPPED_CONFIGS) if folder.is_dir() for p in folder.glob("*.yaml")]
    close = difflib.get_close_matches(Path(base).name, names, n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    raise ConfigError(f"{where}: base {base} is neither next to it nor among the shipped configs{hint}")


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(data: dict) -> Config:
    cfg = Config()
    _apply(cfg, data)
    return cfg


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
