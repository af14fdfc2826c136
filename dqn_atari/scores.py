"""Reference scores and score statistics, without torch: the random and human scores of the 57
Atari games (DQN Zoo's table), human-normalised scores and bootstrap intervals, shared by
`evaluation.py` and `results.py`."""

from __future__ import annotations

import csv
from importlib import resources

import numpy as np

REFERENCE_SOURCE = "google-deepmind/dqn_zoo dqn_zoo/atari_data.py (random; professional human tester)"


def reference_scores() -> dict[str, tuple[float, float]]:
    """Game -> (random, human) for the 57 games of the Atari benchmark."""
    text = resources.files("dqn_atari.data").joinpath("atari_reference_scores.csv").read_text()
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    return {r["game"]: (float(r["random"]), float(r["human"])) for r in rows}


def human_normalized(game: str, score: float) -> float | None:
    ref = reference_scores().get(game)
    if ref is None:
        return None
    random, human = ref
    return (score - random) / (human - random)


def bootstrap_ci(scores, confidence: float = 0.95, resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean."""
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) < 2:
        return (float(scores.mean()), float(scores.mean())) if len(scores) else (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = scores[rng.integers(0, len(scores), size=(resamples, len(scores)))].mean(axis=1)
    tail = (1 - confidence) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))
