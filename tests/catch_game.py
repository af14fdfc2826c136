"""Catch, a tiny pixel game for learning tests: a ball falls one row per step from a random
column; the paddle on the bottom row moves left, stays or moves right. Catching it scores +1,
missing it -1, and the game ends. The optimal return is +1 every game.

Rendered as an Atari-sized RGB frame (210x160) so that the same grayscale, resize and frame
stack wrappers as for Atari games process it.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import FrameStackObservation, GrayscaleObservation, ResizeObservation

ROWS, COLS = 10, 5
CELL_H, CELL_W = 21, 32  # 10 x 21 = 210, 5 x 32 = 160


class Catch(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self):
        self.observation_space = gym.spaces.Box(0, 255, (ROWS * CELL_H, COLS * CELL_W, 3), np.uint8)
        self.action_space = gym.spaces.Discrete(3)  # left, stay, right

    def get_action_meanings(self):
        return ["LEFT", "NOOP", "RIGHT"]

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.ball_row, self.ball_col = 0, int(self.np_random.integers(COLS))
        self.paddle = int(self.np_random.integers(COLS))
        return self._frame(), {"lives": 1}

    def step(self, action):
        self.paddle = int(np.clip(self.paddle + int(action) - 1, 0, COLS - 1))
        self.ball_row += 1
        done = self.ball_row == ROWS - 1
        reward = (1.0 if self.ball_col == self.paddle else -1.0) if done else 0.0
        return self._frame(), reward, done, False, {"lives": 1}

    def _frame(self):
        frame = np.zeros(self.observation_space.shape, np.uint8)
        r, c = self.ball_row, self.ball_col
        frame[r * CELL_H : (r + 1) * CELL_H, c * CELL_W : (c + 1) * CELL_W] = (255, 200, 0)
        p = self.paddle
        frame[(ROWS - 1) * CELL_H :, p * CELL_W : (p + 1) * CELL_W] = (0, 200, 255)
        return frame


def make_catch(frame_size: int = 84, frame_stack: int = 4) -> gym.Env:
    env = GrayscaleObservation(Catch())
    env = ResizeObservation(env, (frame_size, frame_size))
    return FrameStackObservation(env, frame_stack, padding_type="zero")
