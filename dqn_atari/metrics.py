"""Run logging: the same scalars to TensorBoard and to a CSV file, and a human-readable progress
display (a bar on a terminal, plain lines in a SLURM log)."""

from __future__ import annotations

import csv
import sys
import time
from collections import deque
from pathlib import Path

CSV_FIELDS = ("frames", "steps", "wall_time", "tag", "value")
# TensorBoard's step axis is the papers' budget unit; `progress/agent_steps` maps it to steps.
AXIS_NOTE = (
    "Step axis: emulator frames (agent steps x frame_skip, summed over parallel envs), the unit of "
    "the papers' budgets. The scalar progress/agent_steps gives the agent steps at each frame count."
)


class Logger:
    """Scalars keyed by emulator frames (TensorBoard's global step) and agent steps.

    `start_frames` > 0 continues a resumed run: TensorBoard events after it are purged and CSV
    rows after it dropped, so curves have neither gaps nor duplicates. A new run's `config`
    (flat `section.key: value`) goes to TensorBoard's Text tab as a table.
    """

    def __init__(
        self,
        run_dir: str | Path,
        *,
        tensorboard: bool = True,
        csv_log: bool = True,
        start_frames: int = 0,
        config: dict | None = None,
    ):
        self.run_dir = Path(run_dir)
        self.csv_path = self.run_dir / "metrics.csv"
        self.writer = None
        if tensorboard:
            # TensorBoard purges events at steps >= purge_step, while the CSV keeps rows at
            # start_frames (logged before that checkpoint was written): purge from the next frame.
            purge = start_frames + 1 if start_frames else None
            # imported here: reading metrics (`plot`, `summarize`) needs neither TensorBoard nor torch
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=purge)
            if not start_frames:
                self.writer.add_text("about", AXIS_NOTE, 0)
                if config:  # the resolved config in TensorBoard's Text tab, one row per key
                    rows = "\n".join(f"| `{key}` | `{value!r}` |" for key, value in config.items())
                    self.writer.add_text("config", "| key | value |\n|---|---|\n" + rows, 0)
        self._csv_file = None
        if csv_log:
            if start_frames and self.csv_path.exists():
                _truncate_csv_after(self.csv_path, start_frames)
            new = not self.csv_path.exists() or self.csv_path.stat().st_size == 0
            # open for the run's lifetime, closed by close(): no context manager can span it
            self._csv_file = open(self.csv_path, "a", newline="")  # noqa: SIM115
            self._csv = csv.writer(self._csv_file)
            if new:
                self._csv.writerow(CSV_FIELDS)

    def log(self, frames: int, steps: int, scalars: dict[str, float]) -> None:
        now = time.time()
        for tag, value in scalars.items():
            value = float(value)
            if self.writer is not None:
                self.writer.add_scalar(tag, value, frames, walltime=now)
            if self._csv_file is not None:
                self._csv.writerow((frames, steps, f"{now:.3f}", tag, repr(value)))

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()
        if self._csv_file is not None:
            self._csv_file.flush()

    def close(self) -> None:
        self.flush()
        if self.writer is not None:
            self.writer.close()
        if self._csv_file is not None:
            self._csv_file.close()


def _truncate_csv_after(path: Path, frames: int) -> None:
    """Keep the rows up to `frames` (a resume continues from there). Rows that are not
    well-formed (a line cut by a crash, stray bytes) are dropped with one warning; an empty file
    gets its header back."""
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        rows = list(csv.reader(f))
    body = rows[1:] if rows and tuple(rows[0]) == CSV_FIELDS else rows
    keep, damaged = [], 0
    for row in body:
        if not _well_formed(row):
            damaged += 1
        elif int(row[0]) <= frames:
            keep.append(row)
    if damaged:
        _warn(f"dqn-atari: warning: {path}: dropped {damaged} malformed line(s)")
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        csv.writer(f).writerows([list(CSV_FIELDS)] + keep)
    tmp.replace(path)


def _well_formed(row: list[str]) -> bool:
    if len(row) != len(CSV_FIELDS):
        return False
    try:
        int(row[0]), int(row[1]), float(row[2]), float(row[4])
    except ValueError:
        return False
    return bool(row[3])


def _warn(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def read_csv(path: str | Path, skipped: list[int] | None = None) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(frames, value), ...] from a run's metrics.csv. Malformed rows (a line cut by a
    crash) are skipped, their line numbers appended to `skipped` where given; a file without
    the header is refused with ValueError."""
    out: dict[str, list[tuple[int, float]]] = {}
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        rows = csv.reader(f)
        header = next(rows, None)
        if header is None or tuple(header) != CSV_FIELDS:
            raise ValueError(f"{path} is not a metrics.csv (its first line must be {','.join(CSV_FIELDS)})")
        for line, row in enumerate(rows, start=2):
            if _well_formed(row):
                out.setdefault(row[3], []).append((int(row[0]), float(row[4])))
            elif skipped is not None:
                skipped.append(line)
    return out


class Progress:
    """tqdm bar when attached to a terminal, one plain line per report otherwise.

    The bar is redrawn every `redraw_seconds` by `tick`, called at each step of the loop with a
    function that reads cheap host counters (no device sync), so its clock and figures never
    freeze between logging intervals; plain lines are written at logging intervals only. Both
    show frames and frames per second. The rate and the time left come from the last
    `window_seconds` of the learning phase only: random play before `learning_starts_frames`
    runs several times faster than learning, and until then both say when learning starts."""

    def __init__(
        self,
        total_frames: int,
        start_frames: int = 0,
        mode: str = "auto",
        *,
        learning_starts_frames: int = 0,
        redraw_seconds: float = 1.0,
        window_seconds: float = 30.0,
        clock=time.monotonic,
        file=None,
    ):
        self.mode = mode
        if mode == "auto":
            self.mode = "bar" if sys.stderr.isatty() else "lines"
        self.total, self.learning_starts = total_frames, learning_starts_frames
        self.bar = None
        if self.mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(
                total=total_frames,
                initial=start_frames,
                unit="frame",
                unit_scale=True,
                dynamic_ncols=True,
                file=file,
                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} frames [{elapsed}{postfix}]",
            )
        self.last_frames = start_frames
        self.redraw_seconds, self.window_seconds, self.clock = redraw_seconds, window_seconds, clock
        self._drawn_at = clock()
        self._samples: deque[tuple[float, int]] = deque()  # (time, frames) while learning

    def _observe(self, frames: int) -> None:
        if frames < self.learning_starts:
            return
        now = self.clock()
        self._samples.append((now, frames))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window_seconds:
            self._samples.popleft()

    def pace(self, frames: int) -> dict[str, str]:
        """frames/s and the time left, from the learning phase; or when learning starts."""
        if frames < self.learning_starts:
            return {"learning starts at": f"{self.learning_starts:,} frames"}
        if len(self._samples) < 2 or self._samples[-1][0] <= self._samples[0][0]:
            return {"frames/s": "...", "left": "..."}
        (t0, f0), (t1, f1) = self._samples[0], self._samples[-1]
        rate = (f1 - f0) / (t1 - t0)
        left = (self.total - frames) / rate if rate > 0 else float("inf")
        return {"frames/s": f"{rate:,.0f}", "left": _duration(left)}

    def tick(self, frames: int, stats) -> None:
        """Redraw the bar if `redraw_seconds` have passed; `stats()` gives its figures."""
        if self.bar is None:
            return
        now = self.clock()
        if now - self._drawn_at < self.redraw_seconds:
            return
        self._drawn_at = now
        self._observe(frames)
        self.bar.n = frames  # our own pace (above), not tqdm's, decides when to draw
        self.bar.set_postfix({**self.pace(frames), **stats()}, refresh=True)
        self.last_frames = frames

    def update(self, frames: int, stats: dict[str, str]) -> None:
        self._observe(frames)
        figures = {**self.pace(frames), **stats}
        if self.bar is not None:
            self.bar.update(frames - self.last_frames)
            self.bar.set_postfix(figures, refresh=False)
        elif self.mode == "lines":
            text = " ".join(f"{k}={v}" for k, v in figures.items() if " " not in k)
            starts = f" (learning starts at {self.learning_starts:,} frames)" if frames < self.learning_starts else ""
            print(f"[{time.strftime('%H:%M:%S')}] frames={frames}/{self.total} {text}{starts}", flush=True)
        self.last_frames = frames

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"
