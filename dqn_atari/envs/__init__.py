"""Atari environments under the Nature DQN protocol: `make_env` (one game) and `AtariVector`."""

from dqn_atari.envs.factory import STICKY_ACTION_PROBABILITY, make_env
from dqn_atari.envs.games import available_games, resolve_game, rom_id
from dqn_atari.envs.vector import AtariVector, VectorStep, make_vector_env

__all__ = [
    "STICKY_ACTION_PROBABILITY",
    "AtariVector",
    "VectorStep",
    "available_games",
    "make_env",
    "make_vector_env",
    "resolve_game",
    "rom_id",
]
