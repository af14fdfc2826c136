"""Figures and tables a paper can use, from run directories.

Runs are grouped by game and by their resolved config with the per-run keys removed (seed, run
directory, device, logging and checkpoint settings): runs of different games or settings are
never averaged together. Across seeds, curves show the mean with a shaded 95% bootstrap interval;
across games, the median and interquartile mean (IQM) of human-normalised scores come with
stratified bootstrap intervals from `rliable` (Agarwal et al. 2021).
"""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dqn_atari.config import flatten, in_todays_keys
from dqn_atari.metrics import read_csv
from dqn_atari.scores import REFERENCE_SOURCE, bootstrap_ci, human_normalized

# Settings that do not change what is being measured (and the game, which groups separately).
# The frame budget does: a score at the end of 1M frames is not one at the end of 2M.
PER_RUN_KEYS = {
    "env.game",
    "network.channels_last",
    "seed",
    "run_dir",
    "runs_root",
    "config_name",
    "train.device",
    "train.torch_threads",
    "train.flush_denormal",
    "train.cuda_graph",
}
PER_RUN_SECTIONS = {"log.", "checkpoint."}
TAGS = {"eval": "eval/return_mean", "train": "train/episode_return"}
TRAINING_RETURN_GAMES = 10
# Bootstrap intervals over fewer seeds than this are not shown: the seeds themselves are.
FEWEST_SEEDS_FOR_AN_INTERVAL = 5


class ResultsError(RuntimeError):
    """Nothing to plot or summarise; the message is one line for the user."""


@dataclass
class Run:
    path: Path
    game: str
    seed: int
    config: dict
    metrics: dict[str, list[tuple[int, float]]]
    clock: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))  # (frames, wall time) per logged row


@dataclass
class Group:
    game: str
    name: str
    signature: str
    runs: list[Run]


def find_runs(paths: list[str | Path]) -> list[Run]:
    """Run directories named directly, inside a sweep (sweep.json), or one level down (runs/),
    and the seeds of populations (group.json) among them."""
    import yaml

    dirs: list[Path] = []
    for p in map(Path, paths):
        if (p / "sweep.json").is_file():
            dirs += _sweep_run_dirs(p / "sweep.json")
        elif (p / "metrics.csv").is_file():
            dirs.append(p)
        elif p.is_dir():
            for d in sorted(p.iterdir()):
                if (d / "metrics.csv").is_file():
                    dirs.append(d)
                elif (d / "group.json").is_file():
                    dirs += sorted(m for m in d.iterdir() if (m / "metrics.csv").is_file())
        else:
            raise ResultsError(f"{p} is not a run or sweep directory")
    runs = []
    for d in dirs:
        if not (d / "metrics.csv").is_file() or not (d / "config.yaml").is_file():
            continue  # a task that has not started yet
        try:
            cfg = yaml.safe_load((d / "config.yaml").read_text(encoding="utf-8"))
            game, seed = cfg["env"]["game"], cfg["seed"]
        except (yaml.YAMLError, UnicodeDecodeError, KeyError, TypeError):
            raise ResultsError(f"{d / 'config.yaml'} is not a run's resolved config") from None
        skipped: list[int] = []
        try:
            metrics = read_csv(d / "metrics.csv", skipped)
        except ValueError as err:
            raise ResultsError(str(err)) from None
        if skipped:  # a figure or table that silently missed data would mislead
            lines = ", ".join(map(str, skipped[:5])) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
            print(
                f"dqn-atari: warning: {d / 'metrics.csv'}: skipped {len(skipped)} malformed row(s) (line {lines})",
                file=sys.stderr,
                flush=True,
            )
        runs.append(Run(d, game, seed, cfg, metrics, _wall_clock(d / "metrics.csv")))
    if not runs:
        held = sorted({p.name for path in map(Path, paths) if path.is_dir() for p in path.iterdir()})[:8]
        there = f" (it holds: {', '.join(held)})" if held else " (it is empty)"
        raise ResultsError(f"no runs with metrics.csv and config.yaml under {', '.join(map(str, paths))}{there}")
    return runs


def _sweep_run_dirs(path: Path) -> list[Path]:
    """Every seed's run directory of a sweep (a task training several seeds holds several)."""
    try:
        tasks = json.loads(path.read_text())["tasks"]
        return [Path(m["run_dir"]) for t in tasks for m in t.get("members") or [{"run_dir": t["run_dir"]}]]
    except (ValueError, UnicodeDecodeError, KeyError, TypeError):
        raise ResultsError(f"{path} is not a sweep manifest (written by `dqn-atari submit`)") from None


def _wall_clock(path: Path) -> np.ndarray:
    """(frames, wall time) of every well-formed row of a metrics.csv."""
    clock = []
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        for row in csv.reader(f):
            try:
                clock.append((int(row[0]), float(row[2])))
            except (ValueError, IndexError):  # the header, or a line cut by a crash
                continue
    return np.array(clock, dtype=np.float64).reshape(-1, 2)


def settings(cfg: dict) -> dict:
    """What a run measured, flattened and written in today's keys, so that a run recorded before
    a key was renamed or added compares equal to today's runs of its settings."""
    flat = in_todays_keys(flatten(cfg))
    return {k: v for k, v in flat.items() if k not in PER_RUN_KEYS and not k.startswith(tuple(PER_RUN_SECTIONS))}


def signature(cfg: dict) -> str:
    """Eight hex digits that differ where two runs' settings differ."""
    return hashlib.sha256(json.dumps(settings(cfg), sort_keys=True).encode()).hexdigest()[:8]


# How a figure's legend and a table name a setting that tells two groups apart.
_SETTING_NAMES = {
    "train.total_frames": lambda v: f"{v / 1e6:g}M-frame budget",
    "env.num_envs": lambda v: f"{v} games at once",
    "env.backend": lambda v: {"ale_vector": "ale-py vector env", "gymnasium": "gymnasium envs"}.get(v, str(v)),
    "replay.n_step": lambda v: f"{v}-step returns",
    "network.dueling": lambda v: "dueling" if v else "no dueling",
    "replay.prioritized": lambda v: "prioritized replay" if v else "uniform replay",
    "agent.value_head": lambda v: {"scalar": "DQN head", "c51": "C51", "qr_dqn": "QR-DQN", "iqn": "IQN"}.get(v, v),
    "agent.epsilon_decay_start": lambda v: (
        "epsilon held until learning starts" if v == "learning_starts" else "epsilon from frame 0"
    ),
    "env.protocol": lambda v: "sticky actions" if v == "machado" else "no sticky actions",
    "eval.every_frames": lambda v: f"evaluated every {v / 1e6:g}M frames",
    "eval.episodes": lambda v: f"{v}-game evaluations",
    "replay.frames_on_device": lambda v: "replay frames on the GPU" if v else "replay frames in host memory",
    "replay.capacity": lambda v: f"replay of {v:,}",
}


def describe_setting(key: str, value) -> str:
    """A setting in words ('2M-frame budget'); others as `key=value`."""
    describe = _SETTING_NAMES.get(key)
    return str(describe(value)) if describe is not None and value is not None else f"{key}={value}"


def group_runs(runs: list[Run]) -> list[Group]:
    groups: dict[tuple[str, str], Group] = {}
    for run in runs:
        sig = signature(run.config)
        key = (run.game, sig)
        if key not in groups:
            groups[key] = Group(run.game, run.config.get("config_name", "run"), sig, [])
        groups[key].runs.append(run)
    out = sorted(groups.values(), key=lambda g: (g.game, g.name, g.signature))
    by_name: dict[str, dict[str, dict]] = {}  # config name -> signature -> settings
    for g in out:
        by_name.setdefault(g.name, {})[g.signature] = settings(g.runs[0].config)
    labels = [g.name for g in out]
    for i, g in enumerate(out):
        namesakes = by_name[g.name]
        if len(namesakes) > 1:  # two settings under one config name: say what differs
            values = list(namesakes.values())
            differ = sorted(k for k in set().union(*values) if len({json.dumps(v.get(k)) for v in values}) > 1)
            mine = namesakes[g.signature]
            shown = ", ".join(describe_setting(k, mine.get(k)) for k in differ[:3]) + (
                ", ..." if len(differ) > 3 else ""
            )
            labels[i] = f"{g.name} ({shown})"
    for g, label in zip(out, labels, strict=True):
        g.name = label
    return out


def curve(run: Run, metric: str, x: str) -> tuple[np.ndarray, np.ndarray]:
    points = run.metrics.get(TAGS[metric], [])
    if not points:
        return np.empty(0), np.empty(0)
    frames = np.array([p[0] for p in points], dtype=np.float64)
    values = np.array([p[1] for p in points], dtype=np.float64)
    if metric == "train":  # per-game returns are noisy: a running mean over 10 games
        kernel = np.ones(min(10, len(values))) / min(10, len(values))
        values = np.convolve(values, kernel, mode="valid")
        frames = frames[len(frames) - len(values) :]
    if x == "hours":  # frames -> hours of training through the logged rows' wall times
        frames = (np.interp(frames, run.clock[:, 0], run.clock[:, 1]) - run.clock[0, 1]) / 3600.0
    return frames, values


# A group's seeds share its colour (groups are told apart by colour) and differ by line style.
SEED_LINE_STYLES = ("-", "--", ":", "-.")
SEED_LINE_STYLE_NAMES = {"-": "solid", "--": "dashed", ":": "dotted", "-.": "dash-dot"}


def _draw_seeds(ax, runs: list[Run], name: str, metric: str, x: str) -> None:
    """Too few seeds for an interval: every seed's own curve, named at its end; evaluations as
    points with their spread over games (+/- one standard deviation)."""
    seeds = ", ".join(str(q.seed) for q in runs)
    styles = [SEED_LINE_STYLES[i % len(SEED_LINE_STYLES)] for i in range(len(runs))]
    style_names = ", ".join(SEED_LINE_STYLE_NAMES[s] for s in styles)
    group_label = f"{name}, seed {seeds}" if len(runs) == 1 else f"{name}, seeds {seeds} (one line each: {style_names})"
    colour = None
    for r, style in zip(runs, styles, strict=True):
        cx, cy = curve(r, metric, x)
        label = group_label if colour is None else None  # one legend entry for the group
        if metric == "eval":
            spread = np.array([v for _, v in r.metrics.get("eval/return_std", [])])
            yerr = spread if len(spread) == len(cy) else None
            container = ax.errorbar(
                cx, cy, yerr=yerr, marker="o", markersize=3, linewidth=1, capsize=2, color=colour, label=label
            )
            line = container.lines[0]
            line.set_linestyle(style)
        else:
            (line,) = ax.plot(cx, cy, linewidth=1, color=colour, linestyle=style, label=label)
        colour = line.get_color()
        # named at its end, inside the axes (the label must not fall off the figure's edge)
        ax.annotate(
            f"s{r.seed}",
            (cx[-1], cy[-1]),
            textcoords="offset points",
            xytext=(-2, 4),
            fontsize=7,
            color=colour,
            ha="right",
        )


def _draw_mean_and_band(ax, curves, name: str) -> None:
    lo_x = max(c[0][0] for c in curves)
    hi_x = min(c[0][-1] for c in curves)
    grid = np.linspace(lo_x, hi_x, 100) if hi_x > lo_x else np.array([hi_x])
    ys = np.stack([np.interp(grid, cx, cy) for cx, cy in curves])  # (seeds, points)
    (line,) = ax.plot(grid, ys.mean(axis=0), label=f"{name}: mean of {len(curves)} seeds, band: 95% bootstrap CI")
    bands = np.array([bootstrap_ci(ys[:, i], resamples=2000) for i in range(ys.shape[1])])
    ax.fill_between(grid, bands[:, 0], bands[:, 1], color=line.get_color(), alpha=0.2, linewidth=0)


# Published learning curves `plot --reference` overlays: the data file under dqn_atari/data/ (each
# file's header names its source), the agent's rows in it, and the legend's words for them.
REFERENCES = {
    "dopamine-dqn": (
        "dopamine_baselines.csv",
        "dqn",
        "Dopamine DQN: training return per 1M frames, mean of {runs} runs, sticky actions (Dopamine's baselines data)",
    ),
    "dopamine-dqn-adam-mse": (
        "dopamine_baselines.csv",
        "dqn-adam-mse",
        "Dopamine DQN (Adam + MSE): training return per 1M frames, mean of {runs} runs, sticky actions "
        "(Dopamine's baselines data)",
    ),
    "dopamine-rainbow": (
        "dopamine_baselines.csv",
        "rainbow",
        "Dopamine Rainbow: training return per 1M frames, mean of {runs} runs, sticky actions "
        "(Dopamine's baselines data)",
    ),
    "cleanrl-dqn": (
        "cleanrl_dqn_atari.csv",
        "dqn_atari",
        "CleanRL dqn_atari.py: training return at its epsilon (1 to 0.01 over 4M frames), mean of {runs} seeds "
        "(read off its published figure)",
    ),
}
# Lines every panel of a game gets: the human tester's score of the normalisation table, and
# the score this project's three-seed results aim for (configs/pong-solve*.yaml, breakout-solve.yaml).
GOALS = {"Pong": (18.0, "solved, 18"), "Breakout": (31.8, "goal 31.8 (the Nature paper's human score)")}
# Labels of lines closer than this share of the axis height would overlap: the lower one's label
# goes below its line.
LABEL_CLEARANCE_SHARE = 0.06


def published_curve(game: str, reference: str) -> tuple[np.ndarray, np.ndarray, int]:
    """(frames, mean training return, runs) of a published agent on a game, from its data file."""
    from importlib import resources

    data_file, agent, _ = REFERENCES[reference]
    text = resources.files("dqn_atari.data").joinpath(data_file).read_text()
    rows = [r for r in csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))]
    mine = [r for r in rows if r["game"] == game and r["agent"] == agent]
    frames = np.array([float(r["frames"]) for r in mine])
    values = np.array([float(r["mean_return"]) for r in mine])
    return frames, values, int(mine[0]["runs"]) if mine else 0


def plot(
    paths, out: str | Path = "curves.png", metric: str = "eval", x: str = "frames", references: tuple[str, ...] = ()
) -> tuple[Path, list[Group]]:
    import matplotlib.pyplot as plt

    fig, groups = draw_curves(paths, metric, x, references)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150, bbox_inches="tight")  # nothing clipped: labels and legend included
    plt.close(fig)
    return out, groups


def draw_curves(paths, metric: str = "eval", x: str = "frames", references: tuple[str, ...] = ()):
    """The learning-curve figure and the groups drawn in it: one full-width panel per game,
    stacked, the legend below each naming its conditions; reference lines for the human score
    and a solved game; published curves (`references`, on the frames axis) as points labelled
    with their protocol."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter, MaxNLocator

    groups = group_runs(find_runs(paths))
    games = sorted({g.game for g in groups})
    if x == "hours" and references:
        raise ResultsError("published curves have no wall clock: draw --reference against --x frames")
    if not any(len(curve(r, metric, x)[0]) for g in groups for r in g.runs):
        other = "train" if metric == "eval" else "eval"
        raise ResultsError(
            f"no run here has {metric} points to draw (of {sum(len(g.runs) for g in groups)} runs found); "
            f"try --metric {other}"
        )
    fig, axes = plt.subplots(len(games), 1, figsize=(9.0, 4.6 * len(games)), squeeze=False, layout="constrained")
    for ax, game in zip(axes[:, 0], games, strict=True):
        for g in (g for g in groups if g.game == game):
            runs = [r for r in g.runs if len(curve(r, metric, x)[0])]
            if not runs:
                continue
            if len(runs) < FEWEST_SEEDS_FOR_AN_INTERVAL:
                _draw_seeds(ax, runs, g.name, metric, x)
            else:
                _draw_mean_and_band(ax, [curve(r, metric, x) for r in runs], g.name)
        # The published curves over the frames these runs cover (and one iteration more).
        covered = max(
            (
                curve(r, metric, x)[0].max()
                for g in groups
                if g.game == game
                for r in g.runs
                if len(curve(r, metric, x)[0])
            ),
            default=0.0,
        )
        for reference, marker in zip(references, "Dsv^", strict=False):
            frames, values, published_runs = published_curve(game, reference)
            keep = frames <= covered + 1e6
            frames, values = frames[keep], values[keep]
            if len(frames):
                label = REFERENCES[reference][2].format(runs=published_runs)
                ax.plot(frames, values, linestyle="none", marker=marker, markersize=5, label=label)
        _reference_lines(ax, game)
        what = "evaluation during training: points, mean of its games; bars, +/- 1 std over games"
        ax.set_title(f"{game}: {what}" if metric == "eval" else f"{game}: training games", fontsize=10, loc="left")
        ax.set_xlabel("emulator frames" if x == "frames" else "wall-clock hours")
        if x == "frames":  # 250k, 1.5M: short tick labels that never run into each other
            ax.xaxis.set_major_formatter(EngFormatter(sep=""))
            ax.xaxis.set_major_locator(MaxNLocator(8, steps=[1, 2, 2.5, 5, 10]))
        ax.set_ylabel("raw game score" if metric == "eval" else "raw game score, 10-game running mean")
        ax.grid(alpha=0.3)
        ax.margins(x=0.02)
        # below the axes: labels that name their conditions are long, and must hide no curve
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0.0, -0.14), frameon=False, ncol=1)
    return fig, groups


def _reference_lines(ax, game: str) -> None:
    """Dashed horizontal lines, labelled at the right inside the axes: the human tester's score
    (DQN Zoo's table, as every human-normalised number here) and the game's goal (`GOALS`)."""
    from dqn_atari.evaluation import reference_scores

    lines = []
    human = reference_scores().get(game)
    if human is not None:
        lines.append((human[1], f"human {human[1]:g} (DQN Zoo's table)"))
    if game in GOALS:
        lines.append(GOALS[game])
    for value, _ in lines:
        ax.axhline(value, color="0.35", linestyle="--", linewidth=0.8)
    bottom, top = ax.get_ylim()  # with the lines in: they can widen it
    higher = float("inf")
    for value, text in sorted(lines, reverse=True):
        below = higher - value < LABEL_CLEARANCE_SHARE * (top - bottom)
        higher = value
        ax.annotate(
            text,
            (1.0, value),
            xycoords=("axes fraction", "data"),
            xytext=(-4, -3 if below else 3),
            textcoords="offset points",
            ha="right",
            va="top" if below else "baseline",
            fontsize=7,
            color="0.25",
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1},
        )


@dataclass
class Score:
    value: float
    source: str  # where the number came from: file, games, epsilon, frames
    frames: int = 0  # the frames the score was measured at


def final_evaluation(run: Run) -> Score:
    """The run's evaluation score, with its source. Preferred: a `dqn-atari evaluate` report
    (eval-*/report.json, or an evaluation.json kept with committed results) of the newest
    checkpoint, the most games, epsilon 0.05 (Nature) over others; never a recording. Else the
    last evaluation during training (metrics.csv)."""
    candidates = []
    paths = [*run.path.glob("eval-*/report.json"), *run.path.glob("eval-*/*/report.json"), run.path / "evaluation.json"]
    for path in paths:
        try:
            report = json.loads(path.read_text())
            if report.get("kind", "evaluate") != "evaluate":
                continue
            frames, games = int(report["checkpoint"]["frames"]), int(report["summary"]["episodes"])
            epsilon, mean = float(report["protocol"]["epsilon"]), float(report["summary"]["mean"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # absent or damaged: not an evaluation to report
        source = f"{path.relative_to(run.path)}: {games} games, epsilon {epsilon:g}, {frames:,} frames"
        candidates.append(((frames, games, epsilon == 0.05), Score(mean, source, frames)))
    if candidates:
        return max(candidates, key=lambda c: c[0])[1]
    points = run.metrics.get(TAGS["eval"])
    if points:
        frames, value = points[-1]
        games, epsilon = run.config["eval"]["episodes"], run.config["eval"]["epsilon"]
        return Score(
            value,
            f"metrics.csv, evaluation during training: {games} games, epsilon {epsilon:g}, {frames:,} frames",
            frames,
        )
    return Score(float("nan"), "no evaluation")


def training_return(run: Run, games: int = TRAINING_RETURN_GAMES) -> Score:
    """Mean raw score of the last `games` training games, at the epsilon the agent then played
    with: the metric of CleanRL's published Atari scores."""
    points = run.metrics.get(TAGS["train"], [])[-games:]
    if not points:
        return Score(float("nan"), "no training games")
    frames = points[-1][0]
    # the epsilon the run logged last before its last game ended
    logged = [value for at, value in run.metrics.get("train/epsilon", []) if at <= frames]
    epsilon = f"epsilon {logged[-1]:g}" if logged else "epsilon not logged"
    return Score(
        float(np.mean([v for _, v in points])),
        f"metrics.csv: last {len(points)} training games to {frames:,} frames, {epsilon}",
    )


def final_frames(run: Run) -> int | None:
    """The frames a finished run ended at: the first evaluation during training that reached its
    `eval.stop_at_return` (training stops there), else the last frames logged once they reach
    its budget; None for a run still training."""
    target = run.config["eval"].get("stop_at_return")
    if target is not None:
        reached = [frames for frames, value in run.metrics.get(TAGS["eval"], []) if value >= target]
        if reached:
            return reached[0]
    logged = max((frames for points in run.metrics.values() for frames, _ in points), default=0)
    return logged if logged >= int(run.config["train"]["total_frames"]) else None


def summarize(paths, reps: int = 10_000) -> dict:
    from rliable import library as rly
    from rliable import metrics as rlm

    groups = group_runs(find_runs(paths))
    rows = []
    for g in groups:
        evaluations = [final_evaluation(r) for r in g.runs]
        trainings = [training_return(r) for r in g.runs]
        values = np.array([e.value for e in evaluations])
        low, high = bootstrap_ci(values)
        hns = [human_normalized(g.game, v) for v in values]
        rows.append(
            {
                "game": g.game,
                "config": g.name,
                "seeds": len(values),
                # the evaluation score (a protocol's epsilon, full games)
                "mean": float(values.mean()),
                "ci95": [low, high],
                "human_normalized": None if hns[0] is None else float(np.mean([h for h in hns if h is not None])),
                "per_seed": {int(r.seed): e.value for r, e in zip(g.runs, evaluations, strict=True)},
                "frames_per_seed": {int(r.seed): e.frames for r, e in zip(g.runs, evaluations, strict=True)},
                "final_frames_per_seed": {int(r.seed): final_frames(r) for r in g.runs},
                "source": {int(r.seed): e.source for r, e in zip(g.runs, evaluations, strict=True)},
                # CleanRL's metric: training games at the final epsilon
                "training_return_mean": float(np.mean([t.value for t in trainings])),
                "training_return_per_seed": {int(r.seed): t.value for r, t in zip(g.runs, trainings, strict=True)},
                "training_return_source": {int(r.seed): t.source for r, t in zip(g.runs, trainings, strict=True)},
            }
        )
    aggregates = {}
    for name in sorted({g.name for g in groups}):
        mine = [
            (g, r) for g, r in zip(groups, rows, strict=True) if g.name == name and r["human_normalized"] is not None
        ]
        seeds = min((len(g.runs) for g, _ in mine), default=0)
        if not mine or seeds == 0:
            continue
        # (runs, games) matrix of human-normalised scores; games with more seeds use their first
        matrix = np.array(
            [[human_normalized(g.game, final_evaluation(r).value) for r in g.runs[:seeds]] for g, _ in mine]
        ).T
        point, interval = rly.get_interval_estimates(
            {name: matrix}, lambda x: np.array([rlm.aggregate_median(x), rlm.aggregate_iqm(x)]), reps=reps
        )
        aggregates[name] = {
            "games": [g.game for g, _ in mine],
            "runs_per_game": seeds,
            "median": float(point[name][0]),
            "median_ci95": [float(interval[name][0, 0]), float(interval[name][1, 0])],
            "iqm": float(point[name][1]),
            "iqm_ci95": [float(interval[name][0, 1]), float(interval[name][1, 1])],
        }
    return {"rows": rows, "aggregates": aggregates, "human_table": REFERENCE_SOURCE}


def summary_markdown(summary: dict) -> str:
    lines = [
        "| game | config | seeds | evaluation: mean | per seed | 95% CI over seeds | human-normalised "
        f"| training return, last {TRAINING_RETURN_GAMES} games: mean | per seed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    sources = []
    for r in summary["rows"]:
        hn = "n/a" if r["human_normalized"] is None else f"{r['human_normalized']:.3f}"
        ci = (
            f"[{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}]"
            if r["seeds"] >= FEWEST_SEEDS_FOR_AN_INTERVAL
            else f"n/a (< {FEWEST_SEEDS_FOR_AN_INTERVAL} seeds)"
        )
        per_seed = ", ".join(f"{v:.1f}" for v in r["per_seed"].values())
        train_per_seed = ", ".join(f"{v:.1f}" for v in r["training_return_per_seed"].values())
        mean = f"{r['mean']:.2f}"
        frames_per_seed = r.get("frames_per_seed", {})
        frames = set(frames_per_seed.values())
        at = ", ".join(f"{f / 1e6:.2f}M" for f in frames_per_seed.values())
        # Seeds at different frames are averaged only as what the recipe ends with: each seed's
        # final model, at its budget or where it reached eval.stop_at_return. Otherwise a mean
        # over different frame counts is no one's score at any frame count.
        each_final = all(r.get("final_frames_per_seed", {}).get(s) == f for s, f in frames_per_seed.items())
        averaged = len(frames) <= 1 or each_final
        if not averaged:
            mean, ci, hn = f"n/a (seeds evaluated at {at} frames)", "n/a", "n/a"
        train_mean = f"{r['training_return_mean']:.2f}" if averaged else "n/a"
        lines.append(
            f"| {r['game']} | {r['config']} | {r['seeds']} | {mean} | {per_seed} | {ci} | {hn} "
            f"| {train_mean} | {train_per_seed} |"
        )
        if len(frames) > 1 and averaged:
            sources.append(
                f"- {r['game']} {r['config']}: each seed's final model, which ends at its budget or at the "
                f"evaluation during training that reached eval.stop_at_return: here at {at} frames"
            )
        for seed in r["source"]:
            sources.append(
                f"- {r['game']} {r['config']} seed {seed}: evaluation from {r['source'][seed]}; "
                f"training return from {r['training_return_source'][seed]}"
            )
    lines += ["", "Sources:", *sources]
    for name, a in summary["aggregates"].items():
        lines.append("")
        lines.append(
            f"{name}: {len(a['games'])} games x {a['runs_per_game']} runs; human-normalised median "
            f"{a['median']:.3f} [{a['median_ci95'][0]:.3f}, {a['median_ci95'][1]:.3f}], IQM {a['iqm']:.3f} "
            f"[{a['iqm_ci95'][0]:.3f}, {a['iqm_ci95'][1]:.3f}] (stratified bootstrap, rliable)"
        )
    lines.append("")
    lines.append(f"Human-normalised with the table of {summary['human_table']}.")
    return "\n".join(lines)


def write_summary_csv(summary: dict, path: str | Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "game",
                "config",
                "seeds",
                "evaluation_mean",
                "ci95_low",
                "ci95_high",
                "human_normalized",
                "training_return_mean",
            ]
        )
        for r in summary["rows"]:
            w.writerow(
                [
                    r["game"],
                    r["config"],
                    r["seeds"],
                    r["mean"],
                    r["ci95"][0],
                    r["ci95"][1],
                    r["human_normalized"],
                    r["training_return_mean"],
                ]
            )
