"""The progress display: redrawn once a second, its rate and time left from the learning phase."""


def test_progress_bar_redraws_every_second_between_logging_intervals():
    import io

    from dqn_atari.metrics import Progress

    now = [0.0]
    out = io.StringIO()
    progress = Progress(10_000, 0, "bar", redraw_seconds=1.0, clock=lambda: now[0], file=out)
    figures = {"return10": "-20.5", "eps": "0.900"}
    progress.tick(400, lambda: figures)
    assert progress.bar.n == 0  # less than a second since the last drawing
    now[0] = 1.2
    progress.tick(800, lambda: figures)
    assert progress.bar.n == 800 and "eps=0.900" in out.getvalue()
    now[0] = 1.5
    figures = {"return10": "-19.0", "eps": "0.880"}
    progress.tick(1200, lambda: figures)
    assert progress.bar.n == 800
    now[0] = 2.3
    progress.tick(1600, lambda: figures)
    assert progress.bar.n == 1600 and "eps=0.880" in out.getvalue()
    progress.close()


def test_progress_rate_and_time_left_come_from_the_learning_phase_only():
    """Random play runs far faster than learning: 10,000 frames in 1 s of warm-up, then 1,000
    frames/s while learning. Until learning starts the bar says when it will; then its rate is
    the learning phase's and its time left follows from it."""
    import io

    from dqn_atari.metrics import Progress

    now = [0.0]
    out = io.StringIO()
    progress = Progress(100_000, 0, "bar", learning_starts_frames=10_000, clock=lambda: now[0], file=out)
    now[0] = 1.0
    progress.tick(9_000, dict)
    assert "learning starts at=10,000 frames" in out.getvalue()
    for second in range(2, 12):
        now[0] = float(second)
        progress.tick(10_000 + 1_000 * (second - 2), dict)
    pace = progress.pace(19_000)
    assert pace["frames/s"] == "1,000" and pace["left"] == "1m21s"  # 81,000 frames at 1,000 frames/s
    progress.close()
