"""Today's population against the member layout it replaced, side by side in one process.

Today's agent holds K plain networks and maps one seed's loss over them (one after another on
the CPU); the member layout (up to commit b7616f4) gave every layer a leading member dimension
(grouped convolutions, batched matrix products). That version is read from git history into a
temporary package, `member_layout`, so both run in this process on the same machine state:

- update: one batch-32 DQN update (Adam, MSE, channels-last, as `benchmark learner`) of a single
  network, today's and the member layout's, beside the minimal plain-PyTorch update that
  `benchmark learner` times; alternating blocks;
- population: agent steps per second of the training loop for K seeds in one process (Pong,
  epsilon 0.01, an update every 4 agent steps, warm replays, 4 games per seed, as
  `benchmark population`), today's trainer against the member layout's; alternating slices.

usage: python scripts/population-vs-member-layout.py [SECONDS] [K ...]   (default 20, K = 1 3)
"""

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
MEMBER_LAYOUT_COMMIT = "b7616f4"


def member_layout_package(into: Path) -> None:
    """dqn_atari as of MEMBER_LAYOUT_COMMIT, importable as `member_layout`."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", MEMBER_LAYOUT_COMMIT, "dqn_atari"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    package = into / "member_layout"
    (into / "dqn_atari").rename(package)
    for source in package.rglob("*.py"):
        source.write_text(re.sub(r"\bdqn_atari\b", "member_layout", source.read_text()))


def rounds(functions: dict, seconds: float, block: int) -> dict:
    """Milliseconds per call of each function, timed in alternating blocks of `block` calls."""
    for fn in functions.values():
        fn()
    spent = dict.fromkeys(functions, 0.0)
    calls = 0
    while calls < 3 * block or sum(spent.values()) < seconds:
        for name, fn in functions.items():
            start = time.perf_counter()
            for _ in range(block):
                fn()
            spent[name] += time.perf_counter() - start
        calls += block
    return {name: 1000 * total / calls for name, total in spent.items()}


def updates(seconds: float) -> None:
    from member_layout import benchmarks as old

    from dqn_atari import benchmarks as new

    cpu = torch.device("cpu")
    batch = new._batch(cpu)
    plain_update = new.plain_pytorch_update(batch, cpu)
    today, member_layout = new._agent("dqn", cpu), old._agent("dqn", cpu, network={"channels_last": True})
    old_batch = old._batch(cpu)
    ms = rounds(
        {
            "today": lambda: today.update(batch),
            "member layout": lambda: member_layout.update(old_batch),
            "plain PyTorch": plain_update,
        },
        seconds,
        block=5,
    )
    print(
        f"update, one network, batch 32: today {ms['today']:.1f} ms ({ms['today'] / ms['plain PyTorch']:.3f}x plain), "
        f"member layout {ms['member layout']:.1f} ms ({ms['member layout'] / ms['plain PyTorch']:.3f}x plain), "
        f"plain PyTorch {ms['plain PyTorch']:.1f} ms",
        flush=True,
    )


def populations(seconds: float, counts: list[int]) -> None:
    from member_layout import benchmarks as old_bench
    from member_layout.config import load_config as old_config
    from member_layout.trainer import Trainer as OldTrainer

    from dqn_atari import benchmarks as new_bench
    from dqn_atari.config import load_config
    from dqn_atari.trainer import Trainer

    config, overrides = new_bench._loop_config("cpu")
    overrides += ["env.frame_stack_padding=zeros", "env.frame_stack_restart_on_life_loss=false"]
    overrides += ["env.fire_on_life_loss=false", "env.num_envs=4", "replay.capacity=20000"]
    with tempfile.TemporaryDirectory() as tmp:
        for k in counts:
            forms = {
                "today": (Trainer, load_config, new_bench),
                "member layout": (OldTrainer, old_config, old_bench),
            }
            trainers = {}
            for name, (trainer_class, load, bench) in forms.items():
                configs = [load(config, [*overrides, f"seed={s}"]) for s in range(k)]
                dirs = [Path(tmp) / f"{name.replace(' ', '-')}-k{k}-{s}" for s in range(k)]
                trainer = trainer_class(configs, dirs)
                bench._warm(trainer, 1_000)
                bench._run_steps(trainer, 16)  # kernels chosen, caches warm
                trainers[name] = (trainer, bench)
            steps = max(16, 160 // k)
            spent = dict.fromkeys(trainers, 0.0)
            done = 0
            while min(spent.values()) < seconds / 2 or done < 3 * steps:
                for name, (trainer, bench) in trainers.items():
                    start = time.perf_counter()
                    bench._run_steps(trainer, steps)
                    spent[name] += time.perf_counter() - start
                done += steps
            rate = {name: done * k / s for name, s in spent.items()}
            print(
                f"K={k}: today {rate['today']:.1f} agent steps/s, member layout {rate['member layout']:.1f} "
                f"(today / member layout {rate['today'] / rate['member layout']:.3f}x)",
                flush=True,
            )
            for trainer, _ in trainers.values():
                trainer.close()


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 20.0
    counts = [int(k) for k in sys.argv[2:]] or [1, 3]
    with tempfile.TemporaryDirectory() as packages:
        member_layout_package(Path(packages))
        sys.path.insert(0, packages)
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
        updates(seconds)
        populations(seconds, counts)


if __name__ == "__main__":
    main()
