"""Plots and summaries on small synthetic run directories: two games, several seeds, and one run
with other settings that must not be averaged in."""

import csv
import json
from pathlib import Path

import pytest
from helpers import run_cli
from PIL import Image

from dqn_atari.config import load_config, save_config
from dqn_atari.results import find_runs, group_runs, summarize

PONG_HN = lambda hn: -20.7 + hn * (14.6 + 20.7)  # noqa: E731  score with that human-normalised value
BREAKOUT_HN = lambda hn: 1.7 + hn * (30.5 - 1.7)  # noqa: E731


def make_run(root, name, game, seed, final, overrides=()):
    run = root / name
    run.mkdir(parents=True)
    cfg = load_config(None, [f"env.game={game}", f"seed={seed}", f"run_dir={run}", *overrides])
    cfg.config_name = "pong-fast"
    save_config(cfg, run / "config.yaml")
    with open(run / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["frames", "steps", "wall_time", "tag", "value"])
        for i, frames in enumerate(range(0, 1_000_001, 250_000)):
            value = final * frames / 1_000_000 + (seed - 1) * 0.1
            w.writerow([frames, frames // 4, 1000.0 + 360 * i, "eval/return_mean", value])
            w.writerow([frames, frames // 4, 1000.0 + 360 * i, "train/episode_return", value - 1])
            w.writerow([frames, frames // 4, 1000.0 + 360 * i, "train/epsilon", 0.5 if frames < 750_000 else 0.02])
        w.writerow([1_000_000, 250_000, 3000.0, "eval/return_mean", final])
    return run


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    make_run(root, "pong-0", "Pong", 0, PONG_HN(0.0))
    make_run(root, "pong-1", "Pong", 1, PONG_HN(1.0))
    make_run(root, "breakout-0", "Breakout", 0, BREAKOUT_HN(2.0))
    make_run(root, "breakout-1", "Breakout", 1, BREAKOUT_HN(3.0))
    make_run(root, "pong-other-lr", "Pong", 0, 5.0, ["optimizer.lr=0.001"])
    return root


def test_groups_separate_games_and_settings(runs):
    groups = group_runs(find_runs([runs]))
    summary = sorted((g.game, len(g.runs)) for g in groups)
    assert summary == [("Breakout", 2), ("Pong", 1), ("Pong", 2)]
    pong_names = sorted(g.name for g in groups if g.game == "Pong")
    # the two Pong settings are told apart by what differs between them
    assert pong_names == ["pong-fast (optimizer.lr=0.00025)", "pong-fast (optimizer.lr=0.001)"]


def test_runs_with_another_frame_budget_are_another_group(tmp_path):
    """A score at the end of 2M frames is not one at the end of 1M: never averaged together."""
    for seed in (0, 1):
        make_run(tmp_path, f"1m-{seed}", "Pong", seed, 1.0, ["train.total_frames=1000000"])
    make_run(tmp_path, "2m-0", "Pong", 0, 5.0, ["train.total_frames=2000000"])
    groups = group_runs(find_runs([tmp_path]))
    assert sorted((g.name, len(g.runs)) for g in groups) == [
        ("pong-fast (1M-frame budget)", 2),
        ("pong-fast (2M-frame budget)", 1),
    ]


def test_iqm_median_and_means_match_a_hand_computation(runs):
    s = summarize([runs], reps=2000)
    rows = {(r["game"], r["seeds"]): r for r in s["rows"]}
    assert rows[("Pong", 2)]["mean"] == pytest.approx((PONG_HN(0) + PONG_HN(1)) / 2)
    assert rows[("Pong", 2)]["human_normalized"] == pytest.approx(0.5)
    assert rows[("Breakout", 2)]["human_normalized"] == pytest.approx(2.5)
    (agg,) = [a for name, a in s["aggregates"].items() if sorted(a["games"]) == ["Breakout", "Pong"]]
    # Human-normalised scores per (run, game): Pong 0 and 1, Breakout 2 and 3.
    # IQM: the middle half of {0, 1, 2, 3} is {1, 2}: 1.5. Median of the per-game means 0.5 and 2.5: 1.5.
    assert agg["iqm"] == pytest.approx(1.5)
    assert agg["median"] == pytest.approx(1.5)
    assert agg["iqm_ci95"][0] <= 1.5 <= agg["iqm_ci95"][1]
    assert "dqn_zoo" in s["human_table"]


@pytest.mark.e2e
def test_plot_and_summarize_commands(runs, tmp_path):
    png = tmp_path / "fig" / "curves.png"
    result = run_cli("plot", str(runs), "--out", str(png))
    assert result.returncode == 0, result.stderr
    with Image.open(png) as image:
        assert image.size[1] > image.size[0] > 1000  # two full-width panels, one under the other
    assert (
        run_cli("plot", str(runs), "--out", str(tmp_path / "h.png"), "--x", "hours", "--metric", "train").returncode
        == 0
    )
    out = tmp_path / "summary"
    result = run_cli("summarize", str(runs), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "| Pong |" in result.stdout and "IQM" in result.stdout
    rows = list(csv.DictReader(Path(str(out) + ".csv").read_text().splitlines()))
    assert len(rows) == 3
    assert json.loads(Path(str(out) + ".json").read_text())["rows"]


def test_nothing_to_plot_is_one_line(tmp_path):
    result = run_cli("plot", str(tmp_path))
    assert result.returncode == 2 and "no runs with metrics.csv" in result.stderr


def write_report(path, kind, games, epsilon, frames, mean):
    path.parent.mkdir(parents=True)
    report = {
        "kind": kind,
        "checkpoint": {"frames": frames},
        "summary": {"episodes": games, "mean": mean},
        "protocol": {"epsilon": epsilon},
    }
    path.write_text(json.dumps(report))


def test_summarize_prefers_the_final_full_evaluation_never_a_recording_and_names_its_source(runs):
    run = runs / "pong-0"
    s = summarize([run], reps=100)
    (row,) = s["rows"]
    # Only in-training evaluations so far: the last one, said to be that.
    assert row["mean"] == pytest.approx(PONG_HN(0.0))
    assert row["source"][0] == "metrics.csv, evaluation during training: 10 games, epsilon 0.05, 1,000,000 frames"
    write_report(run / "eval-000001000000-nature-eps0.05" / "report.json", "evaluate", 30, 0.05, 1_000_000, 12.5)
    write_report(run / "eval-000001000000-nature-eps0.01" / "report.json", "evaluate", 30, 0.01, 1_000_000, 14.0)
    write_report(run / "eval-000000500000-nature-eps0.05" / "report.json", "evaluate", 30, 0.05, 500_000, 3.0)
    write_report(run / "record-000001000000" / "report.json", "record", 1, 0.05, 1_000_000, 21.0)
    (row,) = summarize([run], reps=100)["rows"]
    assert row["mean"] == 12.5
    assert row["source"][0] == "eval-000001000000-nature-eps0.05/report.json: 30 games, epsilon 0.05, 1,000,000 frames"
    # CleanRL's metric beside it: the last 10 training games and the epsilon they were played at.
    assert row["training_return_mean"] == pytest.approx(PONG_HN(0.0) * 0.5 - 1 - 0.1)  # 5 games: frames 0..1M
    # the epsilon the run logged (0.02), not one recomputed from the config's schedule (0.775 here)
    assert row["training_return_source"][0] == "metrics.csv: last 5 training games to 1,000,000 frames, epsilon 0.02"
    text = run_cli("summarize", str(run)).stdout
    assert "eval-000001000000-nature-eps0.05/report.json: 30 games" in text and "n/a (< 5 seeds)" in text


def test_few_seeds_are_drawn_one_line_each_and_many_get_a_labelled_band(runs, tmp_path):
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    from dqn_atari.results import draw_curves

    fig, _ = draw_curves([runs / "pong-0", runs / "pong-1"])
    (ax,) = fig.axes
    assert not [c for c in ax.collections if isinstance(c, PolyCollection)]  # 2 seeds: no band
    # each seed named at its line's end, beside the human and solved reference lines
    assert {t.get_text() for t in ax.texts} == {"s0", "s1", "human 14.6 (DQN Zoo's table)", "solved, 18"}
    assert "seeds 0, 1 (one line each: solid, dashed)" in ax.get_legend().get_texts()[0].get_text()
    assert ax.lines[0].get_marker() == "o"  # evaluations are points, with their spread
    seed_lines = [line for line in ax.lines if line.get_marker() == "o"]
    assert [line.get_linestyle() for line in seed_lines] == ["-", "--"]  # one colour, told apart by style
    assert seed_lines[0].get_color() == seed_lines[1].get_color()
    plt.close(fig)
    many = tmp_path / "many"
    for seed in range(5):
        make_run(many, f"pong-{seed}", "Pong", seed, PONG_HN(0.5))
    fig, _ = draw_curves([many])
    (ax,) = fig.axes
    assert [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert "mean of 5 seeds, band: 95% bootstrap CI" in ax.get_legend().get_texts()[0].get_text()
    plt.close(fig)


def test_breakouts_goal_is_drawn_beside_the_human_line_with_neither_label_over_the_other(runs):
    """Breakout's goal (31.8, the Nature paper's human score) sits 1.3 above DQN Zoo's human score:
    the two labels would overlap, so the lower one is written below its line."""
    import matplotlib.pyplot as plt

    from dqn_atari.results import draw_curves

    fig, _ = draw_curves([runs / "breakout-0", runs / "breakout-1"])
    (ax,) = fig.axes
    labels = {t.get_text(): t for t in ax.texts if "human" in t.get_text() or "goal" in t.get_text()}
    goal, human = labels["goal 31.8 (the Nature paper's human score)"], labels["human 30.5 (DQN Zoo's table)"]
    assert goal.xy[1] == 31.8 and human.xy[1] == 30.5
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    goal_box, human_box = goal.get_window_extent(renderer), human.get_window_extent(renderer)
    assert human_box.y1 <= goal_box.y0  # the human label wholly below the goal's
    plt.close(fig)


def test_a_run_recorded_before_keys_were_renamed_or_added_groups_with_todays_runs_of_its_settings(tmp_path):
    """An older resolved config counted the target period in updates (250 x 4 agent steps per
    update = today's 1,000 agent steps) and had no `network.noisy` key yet."""
    import yaml

    make_run(tmp_path, "today", "Pong", 0, 1.0, ["agent.target_update_period_steps=1000"])
    for name, updates in (("older-same", 250), ("older-other", 500)):
        older = make_run(tmp_path, name, "Pong", 1, 1.0)
        cfg = yaml.safe_load((older / "config.yaml").read_text())
        del cfg["agent"]["target_update_period_steps"], cfg["network"]["noisy"]
        cfg["agent"]["target_update_period"] = updates
        (older / "config.yaml").write_text(yaml.safe_dump(cfg))
    groups = group_runs(find_runs([tmp_path]))
    assert sorted(sorted(r.path.name for r in g.runs) for g in groups) == [["older-other"], ["older-same", "today"]]


def test_plot_of_runs_without_evaluations_says_so_and_names_the_metric_that_has_points(tmp_path):
    run = make_run(tmp_path, "pong-0", "Pong", 0, 1.0)
    rows = (run / "metrics.csv").read_text().splitlines()
    (run / "metrics.csv").write_text("\n".join(r for r in rows if "eval/" not in r) + "\n")
    result = run_cli("plot", str(tmp_path), "--out", str(tmp_path / "curves.png"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no run here has eval points to draw" in lines[0] and "--metric train" in lines[0]
    assert not (tmp_path / "curves.png").exists()


def test_published_curves_are_drawn_as_points_over_the_frames_the_runs_cover_with_their_source(runs, tmp_path):
    """CleanRL's points (read off its figure) and Dopamine's, each up to one iteration past the
    runs' last frame (1M here), labelled with what they measure."""
    import matplotlib.pyplot as plt

    from dqn_atari.results import draw_curves

    fig, _ = draw_curves([runs / "pong-0"], "train", references=("cleanrl-dqn", "dopamine-dqn"))
    (ax,) = fig.axes
    published = {line.get_label(): line for line in ax.lines if line.get_linestyle() == "None"}
    cleanrl = published[
        "CleanRL dqn_atari.py: training return at its epsilon (1 to 0.01 over 4M frames), mean of 3 seeds "
        "(read off its published figure)"
    ]
    dopamine = published[
        "Dopamine DQN: training return per 1M frames, mean of 5 runs, sticky actions (Dopamine's baselines data)"
    ]
    assert list(cleanrl.get_xdata()) == [500_000, 1_000_000, 1_500_000, 2_000_000]
    assert list(cleanrl.get_ydata()) == [-20.3, -20.2, -19.9, -19.2]  # dqn_atari/data/cleanrl_dqn_atari.csv
    assert list(dopamine.get_xdata()) == [1_000_000, 2_000_000]
    assert list(dopamine.get_ydata()) == [-20.3494, -19.1252]
    plt.close(fig)
    out = tmp_path / "curves.png"
    result = run_cli("plot", str(runs / "pong-0"), "--metric", "train", "--reference", "cleanrl-dqn", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size > 0


def test_seeds_at_different_frames_are_averaged_only_as_each_seeds_final_model(tmp_path):
    """A recipe with a stop rule ends each seed where its evaluation reached the target or at its
    budget: those final models are averaged. A seed still training, evaluated at an earlier
    frame count, leaves the mean n/a."""
    rule = ["train.total_frames=1000000", "eval.stop_at_return=10"]
    make_run(tmp_path, "budget", "Pong", 0, 9.0, rule)  # evaluations 0 .. 9: trains to its budget
    stopped = make_run(tmp_path, "stopped", "Pong", 1, 16.0, rule)  # 12 at 750k frames: stops there
    rows = [r for r in (stopped / "metrics.csv").read_text().splitlines() if not r.startswith("1000000,")]
    (stopped / "metrics.csv").write_text("\n".join(rows) + "\n")
    write_report(stopped / "eval-000000750000-nature-eps0.05" / "report.json", "evaluate", 30, 0.05, 750_000, 19.0)
    write_report(
        tmp_path / "budget" / "eval-000001000000-nature-eps0.05" / "report.json", "evaluate", 30, 0.05, 1_000_000, 8.0
    )
    text = run_cli("summarize", str(tmp_path)).stdout
    assert "| Pong | pong-fast | 2 | 13.50 | 8.0, 19.0 |" in text, text
    assert "each seed's final model, which ends at its budget or at the evaluation during training that " in text
    assert "here at 1.00M, 0.75M frames" in text
    # the same seed evaluated before its end: no mean
    (stopped / "eval-000000750000-nature-eps0.05" / "report.json").unlink()
    write_report(stopped / "eval-000000500000-nature-eps0.05" / "report.json", "evaluate", 30, 0.05, 500_000, 3.0)
    text = run_cli("summarize", str(tmp_path)).stdout
    assert "| Pong | pong-fast | 2 | n/a (seeds evaluated at 1.00M, 0.50M frames) | 8.0, 3.0 |" in text, text
