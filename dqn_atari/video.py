"""Gameplay videos: the emulator's full-resolution colour screen, upscaled with nearest-neighbour so
pixels stay crisp, encoded as H.264 MP4 (yuv420p, even dimensions: plays in web browsers) with
PyAV's bundled encoder; optionally a side panel of what the agent sees and its Q-values, and an
animated GIF of the first seconds for READMEs.

Frames are encoded as they are played, by a second process, so a long episode never sits in
memory and recording costs little wall time.
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
from collections import deque
from pathlib import Path

import av
import cv2
import numpy as np

FPS = 15  # one video frame per agent step: 60 Hz emulator / action repeat 4 = real time
PANEL_WIDTH, PANEL_HEIGHT = 336, 630  # the panel's layout at scale 3; drawn directly at the video's height


def upscale(frame: np.ndarray, factor: int) -> np.ndarray:
    return frame if factor == 1 else np.repeat(np.repeat(frame, factor, axis=0), factor, axis=1)


def q_label(action_name: str, q: float) -> str:
    """The action's name and its Q-value to 3 significant figures (0.0123 and 12.3 alike)."""
    return f"{action_name} {q:+.3g}"


def agent_panel(
    stack: np.ndarray, q_values: np.ndarray, action: int | None, action_names: list[str], height: int
) -> np.ndarray:
    """RGB panel drawn at its final height (text is never rescaled): the 4 stacked 84x84 frames
    the network sees, labelled oldest (t-3) to newest (t) in a strip above each (never over the
    game's pixels), and one bar per action's Q-value,
    scaled between this frame's lowest and highest Q; the action taken (which may be a random
    one) is green; `action` is None on the final screen. Fits all 18 actions of the full action set."""
    unit = height / PANEL_HEIGHT
    width = int(round(PANEL_WIDTH * unit))
    panel = np.full((height, width, 3), 24, dtype=np.uint8)
    font, small = cv2.FONT_HERSHEY_SIMPLEX, 0.36 * unit
    tile, gap, label = int(150 * unit), int(164 * unit), int(14 * unit)
    for i, frame in enumerate(stack[-4:]):
        y, x = int(4 * unit) + (i // 2) * (tile + label + int(4 * unit)), int(8 * unit) + (i % 2) * gap
        name = "t (newest)" if i == 3 else f"t-{3 - i}"
        cv2.putText(panel, name, (x, y + label - int(3 * unit)), font, small, (255, 200, 0), 1, cv2.LINE_AA)
        panel[y + label : y + label + tile, x : x + tile] = cv2.resize(
            frame, (tile, tile), interpolation=cv2.INTER_NEAREST
        )[..., None]
    top = int(4 * unit) + 2 * (tile + label + int(4 * unit))
    cv2.putText(
        panel,
        "Q per action, scaled per frame; green: taken",
        (int(8 * unit), top + int(10 * unit)),
        font,
        small * 0.9,
        (170, 170, 170),
        1,
        cv2.LINE_AA,
    )
    top += int(14 * unit)
    row = max(1, (height - top - int(4 * unit)) // max(len(q_values), 1))
    low, high = float(np.min(q_values)), float(np.max(q_values))
    span = max(high - low, 1e-6)
    bar_x = int(170 * unit)
    for a, q in enumerate(q_values):
        y = top + a * row
        chosen = a == action
        colour = (60, 200, 90) if chosen else (140, 140, 140)
        length = int((8 + (float(q) - low) / span * 150) * unit)
        cv2.rectangle(panel, (bar_x, y + 1), (bar_x + length, y + row - 2), colour, thickness=-1)
        text_scale = min(small, 0.9 * row / 22)  # a row of 16 px holds text of scale 0.36 * 0.9
        cv2.putText(
            panel,
            q_label(action_names[a], float(q)),
            (int(8 * unit), y + row - max(2, row // 5)),
            font,
            text_scale,
            (255, 255, 255) if chosen else (200, 200, 200),
            1,
            cv2.LINE_AA,
        )
    return panel


def rgb_to_upscaled_yuv420(rgb: np.ndarray, factor: int) -> np.ndarray:
    """yuv420p planes of an RGB frame of even sides, converted at its own size and then upscaled
    nearest-neighbour: the luma keeps every pixel edge, and converting before upscaling costs
    factor^2 times less."""
    h, w = rgb.shape[:2]
    flat = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420).ravel()
    planes = (
        flat[: h * w].reshape(h, w),
        flat[h * w : h * w * 5 // 4].reshape(h // 2, w // 2),
        flat[h * w * 5 // 4 :].reshape(h // 2, w // 2),
    )
    if factor == 1:
        return flat.reshape(h * 3 // 2, w)
    upscaled = [cv2.resize(p, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST).ravel() for p in planes]
    return np.concatenate(upscaled).reshape(h * factor * 3 // 2, w * factor)


def _encode_frames(connection, path: str, factor: int) -> None:
    """Encoder process: RGB frames in through the pipe, H.264 out to `path`; exits 0 when done."""
    cv2.setNumThreads(1)  # a forked child must not use the parent's thread pool
    container: av.container.OutputContainer | None = None
    stream: av.VideoStream | None = None
    try:
        while (message := connection.recv_bytes()) != b"":
            header, data = message[:8], message[8:]
            h, w = int.from_bytes(header[:4], "little"), int.from_bytes(header[4:], "little")
            rgb = np.frombuffer(data, dtype=np.uint8).reshape(h, w, 3)
            frame = av.VideoFrame.from_ndarray(rgb_to_upscaled_yuv420(rgb, factor), format="yuv420p")
            if container is None:
                # faststart: the index goes before the media, so a browser can seek the file over
                # a server that does not answer range requests
                container = av.open(path, mode="w", options={"movflags": "faststart"})
                stream = container.add_stream("libx264", rate=FPS)
                stream.width, stream.height = frame.width, frame.height
                stream.pix_fmt = "yuv420p"
                # ultrafast: several times cheaper than libx264's default at these sizes, so the
                # encoder keeps up with play; flat Atari screens stay about 1 MB a minute.
                stream.options = {"preset": "ultrafast", "crf": "20", "threads": "1"}
            assert stream is not None
            for packet in stream.encode(frame):
                container.mux(packet)
        if container is not None and stream is not None:
            for packet in stream.encode():
                container.mux(packet)
    finally:
        if container is not None:
            container.close()


class EpisodeVideo:
    """One episode as an MP4, encoded by a second process while the game is played (in-process
    encoding would hold the GIL against the player), so recording costs little wall time. The
    first `gif_seconds` are also kept at the emulator's resolution for `write_gif`."""

    def __init__(
        self, path: str | Path, scale: int = 3, panel: bool = False, gif_seconds: float = 0.0, action_names=None
    ):
        self.path = Path(path)
        self.scale, self.panel, self.action_names = scale, panel, action_names or []
        # The GIF: the window of `gif_seconds` that ends one second after the first point scored
        # (by either side), or the first seconds when no point is scored.
        self.gif_frames: list[np.ndarray] = []
        self.gif_limit = int(gif_seconds * FPS)
        self._recent: deque[np.ndarray] = deque(maxlen=max(self.gif_limit, 1))
        self._first_seconds: list[np.ndarray] = []
        self._gif_ends_at: int | None = None
        self.frames = 0
        # fork: the child starts in milliseconds and touches only numpy and PyAV.
        context = multiprocessing.get_context("fork")
        receiver, sender = context.Pipe(duplex=False)
        factor = 1 if panel else scale  # a panel frame is composed at full size in this process
        self._process = context.Process(target=_encode_frames, args=(receiver, str(self.path), factor), daemon=True)
        self._process.start()
        receiver.close()
        # A frame is larger than a pipe's buffer: a writer thread keeps the player from waiting
        # for the encoder (the write releases the GIL).
        self._queue: queue.Queue = queue.Queue(maxsize=512)
        self._writer = threading.Thread(target=self._write_all, args=(sender,), daemon=True)
        self._writer.start()
        self._write_error: BaseException | None = None

    def _write_all(self, sender) -> None:
        try:
            while (message := self._queue.get()) is not None:
                sender.send_bytes(message)
            sender.send_bytes(b"")
        except BaseException as err:
            self._write_error = err
            while self._queue.get() is not None:  # drain, so the player never blocks
                pass
        finally:
            sender.close()

    def point_scored(self) -> None:
        """The game's score changed with the last action: the GIF will show this moment."""
        if self._gif_ends_at is None:
            self._gif_ends_at = self.frames + FPS

    def add(self, rgb: np.ndarray, stack: np.ndarray | None = None, q_values=None, action: int | None = None) -> None:
        if self.gif_limit:
            if self._gif_ends_at is None:
                self._recent.append(rgb.copy())
                if len(self._first_seconds) < self.gif_limit:
                    self._first_seconds.append(self._recent[-1])
            elif self.frames < self._gif_ends_at:
                self._recent.append(rgb.copy())
        image = rgb
        if self.panel:
            assert stack is not None, "a panel needs the stack the agent saw"
            panel = agent_panel(stack, np.asarray(q_values), action, self.action_names, rgb.shape[0] * self.scale)
            image = np.concatenate([upscale(rgb, self.scale), panel], axis=1)
        image = np.ascontiguousarray(image[: image.shape[0] // 2 * 2, : image.shape[1] // 2 * 2])  # yuv420p: even sides
        header = image.shape[0].to_bytes(4, "little") + image.shape[1].to_bytes(4, "little")
        if self._write_error is not None:
            raise RuntimeError(f"video encoder for {self.path} stopped (exit {self._process.exitcode})")
        self._queue.put(header + image.tobytes())
        self.frames += 1

    def close(self) -> None:
        self.gif_frames = list(self._recent) if self._gif_ends_at is not None else self._first_seconds
        self._queue.put(None)
        self._writer.join()
        self._process.join()
        if self._write_error is not None or self._process.exitcode != 0:
            raise RuntimeError(f"video encoder for {self.path} failed (exit {self._process.exitcode})")


def write_gif(frames: list[np.ndarray], path: str | Path, scale: int = 2) -> None:
    from PIL import Image

    images = [Image.fromarray(upscale(f, scale)) for f in frames]
    # GIF delays are in hundredths of a second: 70, 70, 60 ms averages exactly 15 frames a second.
    durations = [60 if i % 3 == 2 else 70 for i in range(len(images))]
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0, optimize=True)
