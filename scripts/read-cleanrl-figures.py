"""Read CleanRL's published DQN learning curves (Pong, Breakout) off its documentation figures.

CleanRL publishes `dqn_atari.py`'s learning curves only as figures (the data sit in its
experiment tracker): `docs/rl-algorithms/dqn/<Game>NoFrameskip-v4.png`, the mean over 3 seeds of
the training return (`charts/episodic_return`, whole games, at the training epsilon) against agent
steps (4 frames each). This reads the red mean line's pixels, places them with the figure's own
grid lines and tick marks, and writes the points `plot --reference cleanrl-dqn` draws.

usage: python scripts/read-cleanrl-figures.py CLEANRL_CHECKOUT > dqn_atari/data/cleanrl_dqn_atari.csv
"""

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

FRAMES_PER_STEP = 4
FIRST_TICK_STEPS, TICK_SPACING_STEPS = 2_000_000, 2_000_000  # the x labels 2M, 4M, 6M, 8M
GRID_SPACING_POINTS = {"Pong": 10.0, "Breakout": 100.0}  # the y labels' step
POINT_EVERY_FRAMES = 500_000
LEGEND_BOTTOM_FRACTION = 0.18  # the legend's red text lies above this fraction of the height, the curves below
LAST_FRAMES = 39_500_000  # the line ends at 10M steps under the final dot; stop short of it


def runs_of(indices: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) of each run of consecutive indices."""
    breaks = np.where(np.diff(indices) > 1)[0]
    starts = np.concatenate([[indices[0]], indices[breaks + 1]])
    ends = np.concatenate([indices[breaks], [indices[-1]]])
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def read_figure(path: Path, game: str) -> list[tuple[int, float]]:
    rgb = cv2.imread(str(path))[:, :, ::-1].astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    height, width = r.shape
    neutral = (abs(r - g) < 8) & (abs(g - b) < 8)
    # y: horizontal grid lines are light grey rows across most of the width; the zero line is the
    # thickest of them. Pixels per point from the spacing of the thin ones.
    grid_rows = np.where((neutral & (r > 200) & (r < 245)).sum(1) > 0.6 * width)[0]
    lines = runs_of(grid_rows)
    zero = max(lines, key=lambda span: span[1] - span[0])
    zero_row = (zero[0] + zero[1]) / 2
    centres = sorted((a + b) / 2 for a, b in lines)
    spacing_px = float(np.median(np.diff(centres)))
    points_per_px = GRID_SPACING_POINTS[game] / spacing_px
    # x: tick marks are short grey columns just under the lowest grid line (the x axis)
    axis = max(lines)
    under = slice(axis[1] + 8, axis[1] + 48)
    band = neutral[under] & (r[under] > 150) & (r[under] < 240)
    tick_cols = np.where(band.sum(0) >= 32)[0]
    ticks = [(a + b) / 2 for a, b in runs_of(tick_cols)]
    px_per_step = float(np.median(np.diff(ticks))) / TICK_SPACING_STEPS
    x_at_zero_steps = ticks[0] - FIRST_TICK_STEPS * px_per_step
    # the mean line: saturated red (the band around it is pale pink, the legend sits above the plot)
    red = (r > 170) & (g < 110) & (b < 110)
    red[: int(LEGEND_BOTTOM_FRACTION * height)] = False
    points = []
    for frames in range(POINT_EVERY_FRAMES, LAST_FRAMES + 1, POINT_EVERY_FRAMES):
        x = round(x_at_zero_steps + frames / FRAMES_PER_STEP * px_per_step)
        ys = np.where(red[:, x - 2 : x + 3].any(1))[0]
        if len(ys):
            points.append((frames, (zero_row - float(np.median(ys))) * points_per_px))
    return points


def main(checkout: Path) -> None:
    commit = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    print("# CleanRL dqn_atari.py (Adam 1e-4, MSE, 1M replay, epsilon 1 -> 0.01 over the first 1M steps = 4M frames),")
    print("# mean over 3 seeds of the training return (whole games, at the training epsilon), read off the red mean")
    print(f"# line of vwxyzjn/cleanrl docs/rl-algorithms/dqn/<Game>NoFrameskip-v4.png at commit {commit or 'unknown'}")
    print("# (MIT License) by scripts/read-cleanrl-figures.py; to within half a line width: 0.15 points on Pong,")
    print("# 1.5 on Breakout.")
    print("game,agent,frames,mean_return,runs")
    for game in ("Pong", "Breakout"):
        for frames, value in read_figure(checkout / f"docs/rl-algorithms/dqn/{game}NoFrameskip-v4.png", game):
            print(f"{game},dqn_atari,{frames},{value:.1f},3")


if __name__ == "__main__":
    if len(sys.argv) != 2 or not (Path(sys.argv[1]) / "docs/rl-algorithms/dqn").is_dir():
        sys.exit("usage: python scripts/read-cleanrl-figures.py CLEANRL_CHECKOUT (a clone of vwxyzjn/cleanrl)")
    main(Path(sys.argv[1]))
