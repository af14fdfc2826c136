"""Every module of the package imports (a public RL codebase once shipped one that did not parse)."""

import importlib
import pkgutil

import dqn_atari


def test_every_module_imports():
    names = [m.name for m in pkgutil.walk_packages(dqn_atari.__path__, "dqn_atari.") if m.name != "dqn_atari.__main__"]
    assert len(names) >= 10
    for name in names:
        importlib.import_module(name)
