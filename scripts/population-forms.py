"""Two ways to update K Nature-DQN networks at once, against updating them one after another.

One batch-32 update (online forward, target forward, Huber loss, backward, Adam) per member:
- one after another: K plain torch networks (nn.Conv2d, nn.Linear), each its own optimiser;
- torch.func: the K networks' parameters stacked (stack_module_state), the per-sample loss run
  through functional_call under vmap over the member dimension, one backward, one Adam;
- member dimension: dqn_atari's QNetwork with K members (grouped convolutions, batched matrix
  products), one backward, one Adam; in contiguous (NCHW) and channels-last activations.
Timed in alternating rounds in one process; milliseconds per update of all K members.

usage: python scripts/population-forms.py [K ...]   (default 1 2 4 8)
"""

import copy
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from dqn_atari.agent import Agent, Batch


def plain_network() -> nn.Module:
    layers = [nn.Conv2d(4, 32, 8, 4), nn.ReLU(), nn.Conv2d(32, 64, 4, 2), nn.ReLU(), nn.Conv2d(64, 64, 3, 1)]
    return nn.Sequential(*layers, nn.ReLU(), nn.Flatten(), nn.Linear(3136, 512), nn.ReLU(), nn.Linear(512, 6))


def td_loss(q_all, next_q_all, actions, rewards, discounts):
    q = q_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    target = rewards + discounts * next_q_all.max(-1).values.detach()
    return F.smooth_l1_loss(q, target, reduction="none")


def one_after_another(k: int):
    online = [plain_network() for _ in range(k)]
    target = [copy.deepcopy(n) for n in online]
    optimisers = [torch.optim.Adam(n.parameters(), lr=1e-4) for n in online]

    def update(b: Batch):
        for i in range(k):
            with torch.no_grad():
                next_q = target[i](b.next_obs[i].float() / 255)
            loss = td_loss(online[i](b.obs[i].float() / 255), next_q, b.actions[i], b.rewards[i], b.discounts[i])
            optimisers[i].zero_grad()
            loss.mean().backward()
            optimisers[i].step()

    return update


def with_torch_func(k: int):
    networks = [plain_network() for _ in range(k)]
    params, _ = stack_module_state(networks)
    params = {name: p.detach().requires_grad_() for name, p in params.items()}
    target = {name: p.detach().clone() for name, p in params.items()}
    template = copy.deepcopy(networks[0]).to("meta")
    optimiser = torch.optim.Adam(params.values(), lr=1e-4)

    def member_loss(p, tp, obs, next_obs, actions, rewards, discounts):
        q_all = functional_call(template, p, (obs.float() / 255,))
        next_q = functional_call(template, tp, (next_obs.float() / 255,))
        return td_loss(q_all, next_q, actions, rewards, discounts)

    losses = vmap(member_loss)

    def update(b: Batch):
        loss = losses(params, target, b.obs, b.next_obs, b.actions, b.rewards, b.discounts).mean(dim=1).sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    return update


def with_member_dimension(k: int, channels_last: bool):
    agent = Agent.for_seeds(6, list(range(k)), network={"channels_last": channels_last}, optimizer="adam", lr=1e-4)
    return agent.update


def batch(k: int) -> Batch:
    g = torch.Generator().manual_seed(0)
    frames = lambda: torch.randint(0, 256, (k, 32, 4, 84, 84), dtype=torch.uint8, generator=g)  # noqa: E731
    return Batch(
        frames(), torch.randint(0, 6, (k, 32), generator=g), torch.randn(k, 32), torch.full((k, 32), 0.99), frames()
    )


def main() -> None:
    torch.set_num_threads(2)
    counts = [int(x) for x in sys.argv[1:]] or [1, 2, 4, 8]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; ms per update of all K members")
    for k in counts:
        b = batch(k)
        forms = {
            "one after another": one_after_another(k),
            "torch.func vmap": with_torch_func(k),
            "member dimension, NCHW": with_member_dimension(k, False),
            "member dimension, channels-last": with_member_dimension(k, True),
        }
        times: dict[str, list[float]] = {name: [] for name in forms}
        for update in forms.values():
            update(b)
        for _ in range(3):  # alternating rounds: every form sees the same machine load
            for name, update in forms.items():
                start = time.perf_counter()
                for _ in range(3):
                    update(b)
                times[name].append((time.perf_counter() - start) / 3 * 1000)
        reference = min(times["one after another"])
        shown = ", ".join(f"{name} {min(t):.1f} ({reference / min(t):.2f}x)" for name, t in times.items())
        print(f"K={k}: {shown}", flush=True)


if __name__ == "__main__":
    main()
