"""How much of a checkpoint's Adam state is denormal: for each weight tensor of the online
network, the share of its first (exp_avg) and second (exp_avg_sq) moments that are nonzero and
below the smallest normal float, then the share over all weights. Those entries are what
`train.flush_denormal` flushes to zero and what `dqn-atari benchmark denormal` imitates.

usage: python scripts/denormal-moments.py CHECKPOINT_DIR [...]   (a run's checkpoints/ckpt-*)
"""

import sys
from pathlib import Path

import torch

from dqn_atari.checkpoint import CheckpointError, load_model

MOMENTS = ("exp_avg", "exp_avg_sq")


def denormal_count(moment: torch.Tensor) -> int:
    return int(((moment != 0) & (moment.abs() < torch.finfo(moment.dtype).tiny)).sum())


def report(checkpoint: Path) -> None:
    if not (checkpoint / "model.pt").is_file():
        raise CheckpointError(f"{checkpoint} holds no model.pt: give a checkpoint, RUN_DIR/checkpoints/ckpt-*")
    agent = load_model(checkpoint)["agent"]
    weight_names = list(agent["online"])
    state = agent["optimizer"]["state"]
    if not state or "exp_avg" not in next(iter(state.values())):
        raise CheckpointError(f"{checkpoint}: its optimizer is not Adam (no exp_avg): nothing to count")
    print(checkpoint)
    totals = {name: [0, 0] for name in MOMENTS}
    for index, moments in sorted(state.items(), key=lambda item: int(item[0])):
        shares = []
        for name in MOMENTS:
            denormal, size = denormal_count(moments[name]), moments[name].numel()
            totals[name][0] += denormal
            totals[name][1] += size
            shares.append(f"{name} {100 * denormal / size:5.1f}%")
        print(f"  {weight_names[int(index)]:<28} {size:>9,}  " + "  ".join(shares))
    print("  all weights" + "".join(f"  {name} {100 * d / n:.1f}%" for name, (d, n) in totals.items()))


def main(paths: list[str]) -> int:
    if not paths:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    for path in paths:
        try:
            report(Path(path))
        except CheckpointError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
