"""Game names: users write 'Pong', 'SpaceInvaders' or 'space_invaders'; ale-py wants its ROM id."""

from __future__ import annotations

import difflib
import functools
import re

from dqn_atari.errors import ConfigError


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


@functools.lru_cache(maxsize=1)
def _table() -> dict[str, tuple[str, str]]:
    """normalised key -> (display name, ROM id), for every ROM bundled in the ale-py wheel."""
    from ale_py import roms

    table = {}
    for rom_id in roms.get_all_rom_ids():
        display = "".join(part[:1].upper() + part[1:] for part in rom_id.split("_"))
        table[_key(rom_id)] = (display, rom_id)
    return table


def available_games() -> list[str]:
    return sorted(display for display, _ in _table().values())


def resolve_game(name: str) -> str:
    """The display name ('SpaceInvaders') for any spelling, or a ConfigError with the closest names."""
    entry = _table().get(_key(name))
    gym_id = re.fullmatch(r"(?:ALE/)?([A-Za-z]+?)(?:NoFrameskip|Deterministic)?-v\d+", name)
    if entry is None and gym_id and _key(gym_id.group(1)) in _table():
        game = _table()[_key(gym_id.group(1))][0]
        raise ConfigError(
            f"'{name}' is a gym id; the game is env.game={game} (frame skip, sticky actions and no-ops are "
            f"env.frame_skip, env.protocol and env.noop_max)"
        )
    if entry is None:
        close = difflib.get_close_matches(_key(name), list(_table()), n=3, cutoff=0.6)
        hint = ", ".join(_table()[c][0] for c in close)
        suggestion = f"; closest: {hint}" if hint else ""
        raise ConfigError(f"unknown game '{name}'{suggestion} (`dqn-atari games` lists all {len(_table())})")
    return entry[0]


def rom_id(name: str) -> str:
    return _table()[_key(resolve_game(name))][1]
