"""Would overlapping acting with learning pay on this machine? One cycle of the 1-env loop is
one batch-32 update and 4 agent steps (acting forward pass + env step, real Pong). Cycles per
second in turn (as the training loop does them) and overlapped (the update on a second thread
while this one acts on a copy of the network, copied again after each update), next to the
update alone and the acting alone, in alternating blocks of 20 cycles in one process.

usage: python scripts/overlap-check.py [ROUNDS]   (default 5; about 10 s a round on 2 cores)"""

import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

from dqn_atari.agent import DQNAgent
from dqn_atari.config import load_config
from dqn_atari.envs.vector import vector_env_from_config

torch.set_num_threads(2)
cfg = load_config(Path(__file__).resolve().parent.parent / "configs" / "pong.yaml", ["env.num_envs=1"])
env = vector_env_from_config(cfg.env)
obs = env.reset(seed=0)
learner = DQNAgent(6, optimizer="adam", lr=1e-4, eps=1e-8, loss="huber")
actor = DQNAgent(6)
g = torch.Generator().manual_seed(0)
batch = (
    torch.randint(0, 256, (32, 4, 84, 84), dtype=torch.uint8, generator=g),
    torch.randint(0, 6, (32,), generator=g),
    torch.randn(32, generator=g),
    torch.full((32,), 0.99),
    torch.randint(0, 256, (32, 4, 84, 84), dtype=torch.uint8, generator=g),
)


def act_steps(n):
    global obs
    for _ in range(n):
        actions = np.asarray(actor.greedy_actions(obs))
        step = env.step(actions)
        obs = step.obs  # the next stack to act on (a new game's first where one ended)


def sequential(cycles):
    for _ in range(cycles):
        learner.update(*batch)
        act_steps(4)


def overlapped(cycles):
    for _ in range(cycles):
        worker = threading.Thread(target=learner.update, args=batch)
        worker.start()
        act_steps(4)
        worker.join()
        actor.online.load_state_dict(learner.online.state_dict())  # the copy acting needs


def update_only(cycles):
    for _ in range(cycles):
        learner.update(*batch)


def act_only(cycles):
    for _ in range(cycles):
        act_steps(4)


loops = {f.__name__: f for f in (sequential, overlapped, update_only, act_only)}
rates: dict[str, list[float]] = {name: [] for name in loops}
for loop in loops.values():
    loop(3)  # warm
for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 5):
    for name, loop in loops.items():
        start = time.perf_counter()
        loop(20)
        rates[name].append(20 / (time.perf_counter() - start))
for name, r in rates.items():
    print(f"{name:12s} cycles/s median {np.median(r):.2f}  all {[round(x, 2) for x in r]}")
seq, ovl, upd = (float(np.median(rates[k])) for k in ("sequential", "overlapped", "update_only"))
print(f"overlapped / in turn {ovl / seq:.3f}; in turn / update alone {seq / upd:.3f}")
