"""The training loop on real Pong: the replay ratio, logs a person can read, and failure."""

import csv
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import CONFIGS, ROOT
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dqn_atari.config import load_config
from dqn_atari.trainer import Trainer, deterministic_algorithms, seed_everything


@pytest.mark.e2e
def test_replay_ratio_is_the_configured_one_with_parallel_envs(tmp_path):
    cfg = load_config(
        CONFIGS / "smoke.yaml",
        [
            "env.num_envs=4",
            "train.learning_starts_steps=100",
            "train.train_frequency_steps=8",
            "train.total_frames=3200",
            "log.progress=quiet",
            "log.tensorboard=false",
        ],
    )
    trainer = Trainer(cfg, tmp_path)
    trainer.train()
    trainer.close()
    assert trainer.steps == 800 and trainer.frames == 3200
    # One update per 8 agent steps (summed over the 4 envs) once 100 steps are stored.
    assert trainer.agent.updates == (800 - 100) // 8 + 1
    # Each env's ring holds its own steps (plus one `last` entry per finished game).
    assert (trainer.replay.count >= 200).all()


def test_smoke_run_on_pong_writes_config_csv_and_tensorboard(cli, tmp_path):
    run = tmp_path / "run"
    result = cli(
        "train", str(CONFIGS / "smoke.yaml"), f"run_dir={run}", "log.every_steps=250", "seed=3", "train.batch_size=8"
    )
    assert result.returncode == 0, result.stderr
    assert "done: 8,000 frames" in result.stdout
    resolved = load_config(run / "config.yaml")
    assert resolved.seed == 3 and resolved.env.game == "Pong"
    rows = list(csv.DictReader((run / "metrics.csv").read_text().splitlines()))
    tags = {r["tag"] for r in rows}
    assert {
        "train/loss",
        "train/q_mean",
        "train/epsilon",
        "perf/steps_per_s",
        "replay/size",
        "train/episode_return",
    } <= tags
    returns = [float(r["value"]) for r in rows if r["tag"] == "train/episode_return"]
    assert all(-21 <= r <= 21 for r in returns) and returns  # full Pong games, raw points
    frames = [int(r["frames"]) for r in rows if r["tag"] == "train/epsilon"]
    assert frames == sorted(frames) and frames[-1] == 8000
    events = EventAccumulator(str(run / "tb"))
    events.Reload()
    loss = events.Scalars("train/loss")
    assert len(loss) >= 5 and all(np.isfinite(e.value) for e in loss)
    assert events.Scalars("train/episode_return")[0].value == returns[0]
    # The step axis is frames, and says so; agent steps are logged beside them.
    assert all(e.value * 4 == e.step for e in events.Scalars("progress/agent_steps"))
    assert {"about/text_summary", "config/text_summary"} <= set(events.Tags()["tensors"])
    table = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "| `seed` | `3` |" in table and "| `env.game` | `'Pong'` |" in table
    # Plain progress lines for a non-terminal (SLURM logs), not a bar.
    assert "frames=" in result.stdout and "eps=" in result.stdout


@pytest.mark.e2e
def test_non_finite_loss_stops_with_one_line_and_exit_3(cli, tmp_path):
    result = cli(
        "train",
        str(CONFIGS / "smoke.yaml"),
        f"run_dir={tmp_path / 'run'}",
        "optimizer.name=rmsprop",
        "optimizer.lr=1e15",
        "train.learning_starts_steps=64",
        "log.every_steps=100",
    )
    assert result.returncode == 3, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "non-finite" in lines[0] and "at step" in lines[0]


def test_every_random_stream_is_its_own_and_seeds_share_none(tmp_path):
    """Exploration and replay sampling draw from different streams, and seed 1 is not seed 0
    shifted by one env (each stream is a child of numpy's SeedSequence(seed))."""
    from dqn_atari.trainer import Trainer

    trainers = [
        Trainer(
            load_config(CONFIGS / "smoke.yaml", [f"seed={seed}", "env.num_envs=2", "replay.capacity=1000"]),
            tmp_path / str(seed),
        )
        for seed in (0, 1)
    ]
    draws = [tuple(rng.random(4)) for t in trainers for rng in (t.agent.rngs[0], t.replay.rng)]
    noise = [tuple(torch.randn(4, generator=t.agent.generators[0]).tolist()) for t in trainers]
    assert len(set(draws)) == 4 and len(set(noise)) == 2
    first, second = trainers[0].seeds[0], trainers[1].seeds[0]
    assert not set(first.game_seeds) & set(second.game_seeds)
    assert len(set(first.game_seeds)) == 2
    assert first.evaluation_seed != second.evaluation_seed
    for t in trainers:
        t.close()


@pytest.mark.e2e
def test_evaluations_keep_model_snapshots_and_a_reached_target_ends_the_run(cli, tmp_path):
    """Each in-training evaluation leaves snapshots/model-<frames>/ (weights only, evaluable
    later), is printed, and once its mean reaches eval.stop_at_return the run ends there; a
    resume of the finished run trains no further."""
    import json

    run = tmp_path / "run"
    args = [
        "train",
        str(CONFIGS / "smoke.yaml"),
        f"run_dir={run}",
        "eval.every_frames=2000",
        "eval.episodes=1",
        "eval.max_episode_frames=400",
        "eval.stop_at_return=-100",
    ]
    result = cli(*args)
    assert result.returncode == 0, result.stderr
    assert "evaluation at 2,000 frames: mean" in result.stdout and "training stops" in result.stdout
    snapshot = run / "snapshots" / "model-000000002000"
    assert sorted(p.name for p in snapshot.iterdir()) == ["model.pt", "state.json"]
    assert snapshot.joinpath("model.pt").stat().st_size < 8_000_000  # the online network only
    state = json.loads(snapshot.joinpath("state.json").read_text())
    assert state["frames"] == 2000 and state["evaluation"]["games"] == 1
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["ckpt-000000002000"]
    again = cli(*args)
    assert again.returncode == 0 and "evaluation at" not in again.stdout
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["ckpt-000000002000"]
    report = cli(
        "evaluate", str(snapshot), "--episodes", "1", "--max-episode-frames", "400", "--epsilon", "0.05", "0.5"
    )
    assert report.returncode == 0, report.stderr
    for epsilon in ("0.05", "0.5"):
        saved = json.loads((run / f"eval-000000002000-nature-eps{epsilon}" / "report.json").read_text())
        assert saved["kind"] == "evaluate" and saved["protocol"]["epsilon"] == float(epsilon)


# Rainbow's pieces on the smoke run (as tests/test_checkpoint.py's), with epsilon kept at 1 below.
RAINBOW = [
    "network.dueling=true",
    "network.noisy=true",
    "replay.n_step=3",
    "replay.prioritized=true",
    "agent.double_dqn=true",
    "agent.value_head=c51",
    "optimizer.lr=6.25e-5",
    "optimizer.eps=1.5e-4",
    "optimizer.max_grad_norm=10",
]


# Epsilon annealed from 1 to 0 over the first 800 frames: from frame 800 on every action is the
# network's, so the games themselves depend on the weights.
ANNEALED = ["agent.epsilon_start=1", "agent.epsilon_end=0", "agent.epsilon_decay_frames=800"]


@pytest.mark.e2e
@pytest.mark.parametrize(
    "pieces",
    [
        pytest.param(["agent.epsilon_start=1", "agent.epsilon_end=1"], id="dqn"),
        pytest.param(["agent.epsilon_start=1", "agent.epsilon_end=1", *RAINBOW], id="rainbow"),
        pytest.param(ANNEALED, id="dqn-acting-on-its-weights"),
    ],
)
def test_each_seed_of_a_population_is_the_run_it_would_be_alone(tmp_path, pieces):
    """Seeds 0, 1, 2 trained in lockstep against each trained alone, on real Pong: 200 agent
    steps of warm-up, then 51 updates through two target syncs. On the CPU the members'
    networks run one after another, each the computation of a single run, so everything is the
    same bit for bit: observations, actions, rewards, flags, every frame of the replay and every
    weight, with epsilon held at 1 (the games do not depend on the weights) and with epsilon
    annealed to 0 (the games follow the weights)."""
    overrides = [
        "train.total_frames=1600",
        "train.learning_starts_steps=200",
        "train.batch_size=8",
        "agent.target_update_period_steps=80",
        "replay.capacity=2000",
        "log.progress=quiet",
        "log.tensorboard=false",
        "eval.every_frames=0",
        *pieces,
    ]
    configs = [load_config(CONFIGS / "smoke.yaml", [*overrides, f"seed={seed}"]) for seed in (0, 1, 2)]
    population = Trainer(configs, [tmp_path / f"member-{c.seed}" for c in configs])
    population.train(checkpoint_at_end=False)
    assert population.agent.updates == 51  # at steps 200, 204, ..., 400
    for k, cfg in enumerate(configs):
        alone = Trainer(cfg, tmp_path / f"alone-{cfg.seed}")
        alone.train(checkpoint_at_end=False)
        member = population.seeds[k]
        np.testing.assert_array_equal(member.obs, alone.seeds[0].obs)
        for name in ("frames", "actions", "rewards", "flags", "cursor", "count"):
            np.testing.assert_array_equal(getattr(member.replay, name), getattr(alone.replay, name), err_msg=name)
        ours, theirs = population.agent.member_state_dict(k), alone.agent.member_state_dict(0)
        largest = 0.0
        for net in ("online", "target"):
            for name, value in theirs[net].items():
                largest = max(largest, (ours[net][name] - value).abs().max().item())
                torch.testing.assert_close(ours[net][name], value, rtol=0, atol=0, msg=f"seed {cfg.seed} {net}.{name}")
        print(f"seed {cfg.seed}: largest weight difference population vs alone {largest:.2g}")
        alone.close()
    population.close()


@pytest.mark.parametrize("noise_per", ["step", "update"])
def test_noisy_nets_explore_the_warm_up_only_with_noise_drawn_per_step(tmp_path, noise_per):
    """rainbow.yaml on Pong (epsilon 0: noisy nets explore; learning from 20,000 agent steps),
    500 agent steps of warm-up. Noise drawn at every acting step makes the stored actions vary;
    drawn only at updates, of which there are none yet, one random network with one draw picks
    one action throughout, the warm-up Rainbow learns from first."""
    cfg = load_config(
        CONFIGS / "rainbow.yaml",
        [
            "replay.capacity=2000",
            "train.total_frames=2000",
            "train.device=cpu",
            "train.torch_threads=1",
            "log.progress=quiet",
            "log.tensorboard=false",
            "eval.every_frames=0",
            "checkpoint.every_frames=0",
            f"network.noise_per={noise_per}",
        ],
    )
    trainer = Trainer(cfg, tmp_path)
    trainer.train(checkpoint_at_end=False)
    trainer.close()
    assert trainer.agent.updates == 0 and trainer.steps == 500
    actions = trainer.replay.actions[0, : trainer.replay.count[0]]
    distinct = len(np.unique(actions))
    assert distinct >= 4 if noise_per == "step" else distinct == 1, f"{distinct} distinct actions"


def test_train_deterministic_turns_on_torchs_deterministic_algorithms():
    """train.deterministic sets torch's flag (without the public call's compiler import)."""
    before = torch.are_deterministic_algorithms_enabled()  # other in-process tests may have set it
    try:
        deterministic_algorithms(False)
        seed_everything(0, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
        deterministic_algorithms(False)
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        deterministic_algorithms(before)


# A process that trains, then halves the smallest normal float on every element of a tensor large
# enough that torch splits it between its two threads: prints how many halves are nonzero.
_TRAIN_THEN_HALVE_TINY = """
import sys, torch
from dqn_atari.config import load_config
from dqn_atari.trainer import Trainer
flush, run_dir = sys.argv[1], sys.argv[2]
overrides = ["train.torch_threads=2", f"train.flush_denormal={flush}", "train.total_frames=2400",
             "train.learning_starts_steps=300", "log.progress=quiet", "log.tensorboard=false"]
trainer = Trainer(load_config("configs/smoke.yaml", overrides), run_dir)
trainer.train()
trainer.close()
halves = torch.full((1 << 20,), torch.finfo(torch.float32).tiny) * 0.5
print(int((halves != 0).sum()))
"""


@pytest.mark.e2e
@pytest.mark.parametrize("flush", [True, False])
def test_training_flushes_denormal_floats_to_zero_on_every_thread_unless_told_not_to(tmp_path, flush):
    """Adam's moments of barely used weights decay below the smallest normal float over a long
    run; train.flush_denormal makes the CPU treat them as zero in the main thread and in torch's
    worker threads alike, and false leaves IEEE arithmetic as it is."""
    child = subprocess.run(
        [sys.executable, "-c", _TRAIN_THEN_HALVE_TINY, str(flush).lower(), str(tmp_path / "run")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert child.returncode == 0, child.stderr
    nonzero_halves = int(child.stdout.split()[-1])
    assert nonzero_halves == (0 if flush else 1 << 20)
