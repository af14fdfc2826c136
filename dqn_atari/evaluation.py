"""Scores under a published evaluation protocol: full games (all lives), raw game points.

Nature (Mnih et al. 2015, Methods): up to 30 random no-ops at the start, epsilon 0.05, each game
capped at 5 minutes (18,000 frames). Machado et al. 2018: sticky actions (0.25) and a 108,000-
frame cap. Evaluation plays on its own emulator with its own RNG, so evaluating during training
changes nothing in the training run.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch
from ale_py.env import AtariEnv

from dqn_atari.config import EnvConfig, typed
from dqn_atari.envs import make_env
from dqn_atari.envs.wrappers import action_meanings
from dqn_atari.errors import first_line
from dqn_atari.scores import REFERENCE_SOURCE, bootstrap_ci, human_normalized, reference_scores

PROTOCOLS = {
    "nature": {"protocol": "nature", "max_episode_frames": 18_000, "noop_max": 30},
    "machado": {"protocol": "machado", "max_episode_frames": 108_000, "noop_max": 30},
}


# The env settings that shape what the network sees: evaluation plays with the training run's.
OBSERVATION_KEYS = (
    "frame_skip",
    "frame_size",
    "frame_stack",
    "frame_stack_padding",
    "frame_stack_restart_on_life_loss",
    "fire_on_life_loss",
)


def observation_settings(env: EnvConfig) -> dict:
    """The run's observation settings, from its config's `env` section."""
    return {key: getattr(env, key) for key in OBSERVATION_KEYS}


class EvaluationError(RuntimeError):
    """A checkpoint or output that cannot be used; the message is one line for the user."""


@dataclass
class EpisodeResult:
    seed: int
    score: float  # raw game points over the whole game
    frames: int  # emulator frames played, the start's no-ops included
    steps: int  # agent actions
    capped: bool  # ended by the frame cap, not by game over


class GreedyPolicy:
    """Q-values of one network for playing: `policy(obs, games)` takes the stacks (B, stack, H,
    W) uint8 of the games numbered `games` and gives (B, A). A noisy network's noise is off,
    frozen (`frozen_noise`, its run's acting noise) or drawn afresh at every step; IQN's
    fractions are drawn at every step. Each game draws from its own generator (seeded from
    `seed` and its number), so a game plays the same whether it is played alone or beside
    others, and evaluating never moves a training stream. `channels_last_input` lays the stacks
    out as the run's config says (`network.channels_last`)."""

    def __init__(
        self,
        network,
        noise: str = "per_step",
        frozen_noise: torch.Tensor | None = None,
        seed: int = 0,
        channels_last_input: bool = False,
    ):
        self.network, self.mode, self.seed = network, noise, seed
        self.channels_last_input = channels_last_input
        self.device = next(network.parameters()).device
        # (noise_size,); the member layout saved it as (1, noise_size)
        self.frozen_noise = None if frozen_noise is None else frozen_noise.reshape(-1).to(self.device)
        self._generators: dict[int, torch.Generator] = {}

    def generator(self, game: int) -> torch.Generator:
        if game not in self._generators:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(int(np.random.SeedSequence([self.seed, game]).generate_state(1, np.uint64)[0]))
            self._generators[game] = generator
        return self._generators[game]

    @torch.no_grad()
    def __call__(self, obs: np.ndarray, games: list[int]) -> np.ndarray:
        from dqn_atari.networks import channels_last, scaled_noise

        x = torch.from_numpy(np.ascontiguousarray(obs)).to(self.device)
        if self.channels_last_input:
            x = channels_last(x)
        noise = None
        if self.network.noisy and self.mode == "per_step":
            size = self.network.noise_size
            drawn = [torch.randn(size, generator=self.generator(g), device=self.device) for g in games]
            noise = scaled_noise(torch.stack(drawn))  # (B, size): each game its own
        elif self.network.noisy and self.mode == "frozen":
            noise = self.frozen_noise
        taus = None
        head = self.network.value_head
        if head.samples_taus:
            drawn = [torch.rand(head.policy_samples, generator=self.generator(g), device=self.device) for g in games]
            taus = torch.stack(drawn)
        return self.network.q_values(x, noise, taus).float().cpu().numpy()


class EvaluationInterrupted(Exception):
    """`play_episodes` was told to stop before its games ended; no score was kept."""


def play_episodes(
    policy: Callable[[np.ndarray, list[int]], np.ndarray],
    game: str,
    *,
    episodes: int,
    epsilon: float,
    protocol: str = "nature",
    max_episode_frames: int | None = None,
    noop_max: int | None = None,
    seed: int = 0,
    observation: dict | None = None,
    recorder_for: Callable | None = None,
    games_at_once: int | None = None,
    processes: int = 1,
    interrupted: Callable[[], bool] | None = None,
) -> list[EpisodeResult]:
    """Play `episodes` full games, epsilon-greedy on `policy(obs_batch, game_numbers) -> (B, A)`;
    game i is seeded with seed + i and explores from its own stream, so results are
    reproducible and each game's the same however many are played at once. `observation` (see
    `observation_settings`) makes the stacks what the network saw in training; `noop_max` and
    `max_episode_frames` replace the protocol's where given.

    `games_at_once` games (default: all) are played side by side, each on its own emulator,
    with one forward pass per step for all of them; with `processes` > 1 their emulators step
    in that many worker processes. A batched forward pass rounds a game's Q-values within
    about 1e-8 of its forward pass alone, so a near-tie between two actions can, rarely, go
    the other way.

    `recorder_for(i)` may return an object with add(rgb, stack, q, action), point_scored() and
    close() (an EpisodeVideo): it then sees the emulator's colour screen before each action and
    the final screen (recording plays in this process).

    `interrupted()` is asked before every step: once it is true the games are abandoned and
    EvaluationInterrupted is raised (a stop signal must not wait for a whole evaluation)."""
    settings: dict[str, Any] = {**PROTOCOLS[protocol], **(observation or {})}
    if max_episode_frames is not None:
        settings["max_episode_frames"] = max_episode_frames
    if noop_max is not None:
        settings["noop_max"] = noop_max
    at_once = episodes if games_at_once is None else max(1, games_at_once)
    results: list[EpisodeResult] = []
    for start in range(0, episodes, at_once):
        numbers = list(range(start, min(start + at_once, episodes)))
        games = _Games(game, settings, len(numbers), 1 if recorder_for else processes)
        try:
            results += _play(policy, games, numbers, epsilon, seed, recorder_for, interrupted)
        finally:
            games.close()
    return results


def _play(
    policy, games: _Games, numbers: list[int], epsilon: float, seed: int, recorder_for, interrupted
) -> list[EpisodeResult]:
    n = len(numbers)
    # Each game explores from its own stream: its play does not depend on the games beside it.
    rngs = [np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, i]))) for i in numbers]
    recorders = [recorder_for(i) if recorder_for else None for i in numbers]
    obs = games.reset([seed + i for i in numbers])
    score, steps = np.zeros(n), np.zeros(n, dtype=np.int64)
    frames, capped, done = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    while not done.all():
        if interrupted is not None and interrupted():
            raise EvaluationInterrupted()
        live = np.flatnonzero(~done)
        q = policy(obs[live], [numbers[j] for j in live])
        actions = np.zeros(n, dtype=np.int64)
        for row, j in enumerate(live):
            action = int(np.argmax(q[row]))
            if rngs[j].random() < epsilon:
                action = int(rngs[j].integers(games.num_actions))
            actions[j] = action
            recorder = recorders[j]
            if recorder is not None:
                recorder.add(games.screen(int(j)), obs[j], q[row], action)
        obs, reward, ended, truncated, frame_numbers = games.step(actions, live)
        for j in live:
            score[j] += float(reward[j])
            steps[j] += 1
            recorder = recorders[j]
            if recorder is not None and reward[j] != 0:
                recorder.point_scored()
            if ended[j] or truncated[j]:
                done[j], capped[j], frames[j] = True, bool(truncated[j]), int(frame_numbers[j])
                if recorder is not None:
                    recorder.add(games.screen(int(j)), obs[j], policy(obs[j : j + 1], [numbers[j]])[0], None)
                    recorder.close()
    return [
        EpisodeResult(seed + i, float(score[j]), int(frames[j]), int(steps[j]), bool(capped[j]))
        for j, i in enumerate(numbers)
    ]


class _Games:
    """n games of one kind, each on its own emulator: in this process (stepping only the games
    still playing), or with `processes` > 1 in that many worker processes, each stepping its
    own contiguous share of the games (`_game_worker`)."""

    def __init__(self, game: str, settings: dict, n: int, processes: int):
        make = partial(make_env, game, **settings)
        self.n = n
        workers = min(processes, n)
        self.parallel = workers > 1
        if self.parallel:
            import multiprocessing

            bounds = np.linspace(0, n, workers + 1).round().astype(int)
            self.shares = [np.arange(bounds[w], bounds[w + 1]) for w in range(workers)]
            context = multiprocessing.get_context("fork")  # workers import nothing anew
            self.pipes, self.workers = [], []
            for share in self.shares:
                parent, child = context.Pipe()
                worker = context.Process(target=_game_worker, args=(child, make, len(share)), daemon=True)
                worker.start()
                child.close()
                self.pipes.append(parent)
                self.workers.append(worker)
            self.num_actions = int(self._gather("actions")[0])
        else:
            self.envs = [make() for _ in range(n)]
            self.num_actions = int(cast(gym.spaces.Discrete, self.envs[0].action_space).n)

    def _gather(self, command: str, per_share=None) -> list:
        """Send each worker its command (with `per_share(its share)`), then collect the answers:
        the workers step at the same time."""
        for pipe, share in zip(self.pipes, self.shares, strict=True):
            pipe.send((command, None if per_share is None else per_share(share)))
        answers = [pipe.recv() for pipe in self.pipes]
        for answer in answers:
            if isinstance(answer, BaseException):
                raise answer
        return answers

    def reset(self, seeds: list[int]) -> np.ndarray:
        if self.parallel:
            return np.concatenate(self._gather("reset", lambda share: [seeds[j] for j in share]))
        self.obs = np.stack([env.reset(seed=s)[0] for env, s in zip(self.envs, seeds, strict=True)])
        return self.obs

    def step(self, actions: np.ndarray, live: np.ndarray):
        """(obs, reward, terminated, truncated, episode frame numbers) of every game; only the
        entries of `live` games mean anything."""
        if self.parallel:
            playing = set(live.tolist())
            answers = self._gather(
                "step", lambda share: (actions[share], [i for i, j in enumerate(share) if j in playing])
            )
            return tuple(np.concatenate(part) for part in zip(*answers, strict=True))
        return _step_games(self.envs, self.obs, actions, live)

    def screen(self, j: int) -> np.ndarray:
        return cast(AtariEnv, self.envs[j].unwrapped).ale.getScreenRGB()

    def close(self) -> None:
        if self.parallel:
            for pipe in self.pipes:
                with contextlib.suppress(OSError):  # a worker that already ended
                    pipe.send(("close", None))
            for worker in self.workers:
                worker.join(timeout=10)
                if worker.is_alive():
                    worker.kill()
        else:
            for env in self.envs:
                env.close()


def _step_games(envs: list, obs: np.ndarray, actions: np.ndarray, playing) -> tuple:
    """One step of the games numbered `playing` (their stacks written into `obs`): (obs, reward,
    terminated, truncated, episode frame numbers) of every game, meaningful for those only."""
    n = len(envs)
    reward, terminated, truncated = np.zeros(n), np.zeros(n, bool), np.zeros(n, bool)
    frames = np.zeros(n, dtype=np.int64)
    for j in playing:
        obs[j], reward[j], terminated[j], truncated[j], _ = envs[j].step(int(actions[j]))
        frames[j] = cast(AtariEnv, envs[j].unwrapped).ale.getEpisodeFrameNumber()
    return obs, reward, terminated, truncated, frames


def _game_worker(pipe, make: Callable, count: int) -> None:
    """A worker process of `_Games`: `count` games, stepped on command (only the playing ones)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    envs = [make() for _ in range(count)]
    obs: np.ndarray | None = None
    while True:
        command, data = pipe.recv()
        try:
            if command == "actions":
                pipe.send(int(cast(gym.spaces.Discrete, envs[0].action_space).n))
            elif command == "reset":
                obs = np.stack([env.reset(seed=seed)[0] for env, seed in zip(envs, data, strict=True)])
                pipe.send(obs)
            elif command == "step":
                assert obs is not None
                actions, playing = data
                pipe.send(_step_games(envs, obs, actions, playing))
            else:
                for env in envs:
                    env.close()
                return
        except Exception as err:  # the parent raises it
            pipe.send(err)


# ---------------------------------------------------------------------------- statistics
def summarize_scores(results: list[EpisodeResult]) -> dict:
    scores = np.array([r.score for r in results], dtype=np.float64)
    low, high = bootstrap_ci(scores)
    return {
        "episodes": len(results),
        "mean": float(scores.mean()),
        "median": float(np.median(scores)),
        "std": float(scores.std()),
        "min": float(scores.min()),
        "max": float(scores.max()),
        "ci95_mean": [low, high],
        "capped_episodes": int(sum(r.capped for r in results)),
    }


# ---------------------------------------------------------------------------- checkpoints
def find_checkpoint(target: str | Path) -> Path:
    """A run directory (its newest checkpoint) or one checkpoint directory."""
    target = Path(target)
    if (target / "model.pt").is_file():
        return target
    from dqn_atari.checkpoint import Checkpointer

    checkpoints = Checkpointer(target).list() if target.is_dir() else []
    if not checkpoints:
        from dqn_atari.errors import closest_sibling

        hint = closest_sibling(target) or ": give a run directory with checkpoints/ or a checkpoint directory"
        raise EvaluationError(f"no checkpoint at {target}{hint}")
    return checkpoints[0]


def load_policy(checkpoint: Path, device: torch.device):
    """(network, config dict, state dict, acting noise or None) from a checkpoint or snapshot;
    nothing is unpickled. Weights of any version load (`plain_state`)."""
    from dqn_atari.checkpoint import CheckpointError, load_model, read_state, verify_files
    from dqn_atari.config import upgraded
    from dqn_atari.networks import network_from_config, plain_state
    from dqn_atari.value_heads import value_head_from_config

    try:
        # the same checks as a resume: every recorded checksum, then a tensors-only load
        state = read_state(checkpoint)
        verify_files(checkpoint, state, ("model.pt",))
        model = load_model(checkpoint)
    except CheckpointError as err:
        raise EvaluationError(f"cannot evaluate: {err}") from None
    try:
        weights = model["agent"]["online"]
        cfg = upgraded(state["config"])
        config = typed(cfg)
        head = value_head_from_config(config.agent)
        num_actions = state.get("num_actions")
        if num_actions is None:  # older saves: from the output layer, actions x values per action
            output_bias = next(k for k in weights if k.startswith(("head.layers.2.bias", "head.advantage.2.bias")))
            num_actions = weights[output_bias].shape[-1] // head.outputs_per_action
        network = network_from_config(num_actions, head.to(device), config)
        network.load_state_dict(plain_state(weights, network))
        acting_noise = model["agent"].get("acting_noise")
    except (
        OSError,
        json.JSONDecodeError,
        RuntimeError,
        KeyError,
        EOFError,
        ValueError,
        StopIteration,
        TypeError,
    ) as err:
        reason = first_line(err)
        raise EvaluationError(f"cannot read checkpoint {checkpoint}: {reason}") from None
    return network.to(device).eval(), cfg, state, acting_noise


def export_model(source: Path, out: Path, weights_dtype: torch.dtype = torch.float16) -> dict:
    """A model-only copy of a checkpoint or snapshot at `out`: the online network's weights, in
    today's layout whatever version saved them, in float16 by default (half the bytes, small
    enough to commit beside a run's results; the network computes in float32 when it plays),
    and a noisy network's acting noise, with a state.json naming its source. `evaluate` and
    `record` read it like a snapshot. It is written beside `out` and renamed into place, so `out`
    is whole or untouched; only an earlier export is ever replaced. Returns the new state."""
    from dqn_atari.checkpoint import write_model_only

    network, cfg, state, acting_noise = load_policy(source, torch.device("cpu"))
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        try:
            earlier = json.loads((out / "state.json").read_text())
        except (OSError, ValueError):
            earlier = None
        if not isinstance(earlier, dict) or "exported_from" not in earlier:
            raise EvaluationError(f"{out} exists and is not an exported model: give a new or empty directory")
    weights = {
        name: tensor.to(weights_dtype) if tensor.is_floating_point() else tensor
        for name, tensor in network.state_dict().items()
    }
    agent = {"online": weights, **({"acting_noise": acting_noise} if acting_noise is not None else {})}
    exported = {key: state[key] for key in ("frames", "steps", "evaluation") if key in state}
    exported.update(num_actions=network.num_actions, config=cfg, weights_dtype=str(weights_dtype).split(".")[-1])
    exported["exported_from"] = {"path": str(source.resolve()), "model_pt_crc32": state["files"]["model.pt"]}
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_model_only(out, agent, exported)


def evaluate_checkpoint(
    target: str | Path,
    *,
    episodes: int = 30,
    epsilon: float = 0.05,
    protocol: str = "nature",
    game: str | None = None,
    seed: int = 0,
    max_episode_frames: int | None = None,
    out: str | Path | None = None,
    video: bool = False,
    video_scale: int = 3,
    panel: bool = False,
    gif_seconds: float = 0.0,
    keep_videos: str = "best-worst",
    device: str = "cpu",
    kind: str = "evaluate",
    noise: str | None = None,
    games_at_once: int | None = None,
    processes: int = 1,
) -> dict:
    """Play, score and (optionally) film a checkpoint; writes report.json (and videos) to `out`.
    `noise`: a noisy network's noise while playing (off, per_step, frozen; None: the run's
    eval.noise). `games_at_once` and `processes` as `play_episodes`'s.

    `kind` is "evaluate" (a score) or "record" (a film, which `summarize` never takes for a
    score). By default each gets its own directory beside the checkpoints, named by what it
    measured, so no report ever replaces one of other settings:
    eval-<frames>-<protocol>-eps<epsilon>/ and record-<frames>/."""
    from dqn_atari.envs.games import resolve_game
    from dqn_atari.video import EpisodeVideo, write_gif

    checkpoint = find_checkpoint(target)
    torch_device = torch.device(device)
    if torch_device.type == "cpu" and (video or (games_at_once or episodes) == 1):
        # Batch-1 forward passes (one game at a time) a second thread barely speeds up
        # (measured here), and on a busy machine two threads wait for each other at every
        # layer (one game took 38 s instead of about 2 beside a training run); with video it
        # leaves the other cores to the encoder.
        torch.set_num_threads(1)
    network, cfg, state, acting_noise = load_policy(checkpoint, torch_device)
    noise = noise or cfg["eval"]["noise"]
    game = resolve_game(game or cfg["env"]["game"])
    probe = make_env(game, frame_stack=cfg["env"]["frame_stack"], frame_size=cfg["env"]["frame_size"])
    num_actions, action_names = int(cast(gym.spaces.Discrete, probe.action_space).n), action_meanings(probe)
    probe.close()
    if num_actions != network.num_actions:
        raise EvaluationError(
            f"checkpoint {checkpoint} is a {network.num_actions}-action network "
            f"({cfg['env']['game']}) but {game} has {num_actions} actions"
        )
    # Reports go beside what owns the model: the run directory of a checkpoint or snapshot, the
    # directory holding an exported model.
    run = checkpoint.parent if "exported_from" in state else checkpoint.parent.parent
    frames_text = f"{state['frames']:012d}"
    default_name = f"eval-{frames_text}-{protocol}-eps{epsilon:g}" if kind == "evaluate" else f"record-{frames_text}"
    out = Path(out) if out else run / default_name
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / ".write-test").touch()
        (out / ".write-test").unlink()
    except OSError as err:
        raise EvaluationError(f"output directory {out} is not writable: {err.strerror or err}") from None

    policy = GreedyPolicy(
        network,
        noise=noise,
        frozen_noise=acting_noise,
        seed=seed,
        channels_last_input=cfg["network"]["channels_last"],
    )
    recorders: dict[int, EpisodeVideo] = {}

    def recorder_for(i: int):
        recorders[i] = EpisodeVideo(out / f".episode-{i}.mp4", video_scale, panel, gif_seconds, action_names)
        return recorders[i]

    results = play_episodes(
        policy,
        game,
        episodes=episodes,
        epsilon=epsilon,
        protocol=protocol,
        max_episode_frames=max_episode_frames,
        seed=seed,
        observation=observation_settings(typed(cfg).env),
        recorder_for=recorder_for if video else None,
        games_at_once=games_at_once,
        processes=processes,
    )
    summary = summarize_scores(results)
    settings: dict[str, Any] = dict(PROTOCOLS[protocol], epsilon=epsilon)
    if max_episode_frames is not None:
        settings["max_episode_frames"] = max_episode_frames
    if network.noisy:
        settings["noise"] = noise
    ref = reference_scores().get(game)
    report = {
        "kind": kind,
        "game": game,
        "protocol": settings,
        # paths relative to the run directory: a report stays right when the run is moved or committed
        "checkpoint": {"path": _relative(checkpoint, run), "frames": state["frames"], "steps": state["steps"]},
        "seed": seed,
        "summary": summary,
        "human_normalized": {
            "mean": human_normalized(game, summary["mean"]),
            "random": ref[0] if ref else None,
            "human": ref[1] if ref else None,
            "table": REFERENCE_SOURCE,
        },
        "per_episode": [asdict(r) for r in results],
        "videos": [
            _relative(Path(v), run) for v in _keep_videos(results, recorders, out, keep_videos, gif_seconds, write_gif)
        ]
        if video
        else [],
        "config": cfg,
    }
    partial = out / ".report.json.tmp"  # never a half-written report under the final name
    partial.write_text(json.dumps(report, indent=2) + "\n")
    partial.replace(out / "report.json")
    return dict(report, written_to=str(out))  # where the files went, for the user (not in the file)


def _relative(path: Path, run: Path) -> str:
    """`path` relative to the run directory where it lies inside it, else as given."""
    try:
        return str(path.resolve().relative_to(run.resolve()))
    except ValueError:
        return str(path)


def _keep_videos(results, recorders, out: Path, keep: str, gif_seconds: float, write_gif) -> list[str]:
    order = sorted(range(len(results)), key=lambda i: results[i].score)
    if len(results) == 1:
        chosen = {0: "game"}
    elif keep == "best-worst":
        chosen = {order[-1]: "best", order[0]: "worst"}
    else:
        chosen = {i: f"{i:03d}" for i in order}
    kept = []
    for i, recorder in recorders.items():
        if i not in chosen:
            recorder.path.unlink(missing_ok=True)
            continue
        name = f"episode-{chosen[i]}-seed{results[i].seed}-score{results[i].score:g}"
        final = out / f"{name}.mp4"
        shutil.move(recorder.path, final)
        kept.append(str(final))
        if gif_seconds and i == order[-1] and recorder.gif_frames:  # a GIF of the best game
            write_gif(recorder.gif_frames, out / f"{name}.gif")
            kept.append(str(out / f"{name}.gif"))
    return kept


def format_report(report: dict) -> str:
    s = report["summary"]
    hn = report["human_normalized"]
    lines = [
        f"{report['game']}  checkpoint {report['checkpoint']['frames']:,} frames  "
        f"protocol {report['protocol']['protocol']}"
        f" (epsilon {report['protocol']['epsilon']}, cap {report['protocol']['max_episode_frames']:,} frames)",
        f"  episodes  {s['episodes']}  (capped: {s['capped_episodes']})",
        f"  mean      {s['mean']:.2f}  95% CI [{s['ci95_mean'][0]:.2f}, {s['ci95_mean'][1]:.2f}]",
        f"  median    {s['median']:.2f}   std {s['std']:.2f}   min {s['min']:.2f}   max {s['max']:.2f}",
    ]
    if hn["mean"] is not None:
        lines.append(
            f"  human-normalised mean  {hn['mean']:.3f}  (random {hn['random']}, human {hn['human']}; {hn['table']})"
        )
    written_to = Path(report.get("written_to", "."))
    for v in report["videos"]:
        lines.append(f"  video     {written_to / Path(v).name}")
    if "written_to" in report:
        lines.append(f"  report    {written_to / 'report.json'}")
    return "\n".join(lines)
