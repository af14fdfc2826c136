import pytest
import yaml

from conftest import CONFIGS
from dqn_atari.config import ConfigError, Config, all_keys, load_config


def test_shipped_configs_load_and_inherit():
    nature = load_config(CONFIGS / "nature.yaml")
    assert nature.replay.capacity == 1_000_000
    assert nature.agent.target_update_period == 10_000
    assert nature.optimizer.name == "rmsprop" and nature.optimizer.lr == 2.5e-4
    assert nature.train.total_frames == 50_000_000
    assert nature.eval.epsilon == 0.05
    pong = load_config(CONFIGS / "pong.yaml")
    assert pong.optimizer.name == "adam" and pong.optimizer.lr == 1e-4
    assert pong.replay.capacity == 1_000_000  # inherited from nature.yaml
    assert load_config(CONFIGS / "breakout.yaml").env.game == "Breakout"
    assert load_config(CONFIGS / "smoke.yaml").train.total_frames <= 10_000


def test_dotted_overrides_are_typed():
    cfg = load_config(CONFIGS / "pong.yaml", ["replay.capacity=100000", "agent.double_dqn=true", "optimizer.lr=3e-4", "env.game=space_invaders"])
    assert cfg.replay.capacity == 100_000
    assert cfg.agent.double_dqn is True
    assert cfg.optimizer.lr == pytest.approx(3e-4)
    assert cfg.env.game == "SpaceInvaders"


@pytest.mark.parametrize(
    "override,message",
    [
        ("replay.capacty=5", "unknown config key 'replay.capacty'; did you mean 'replay.capacity'?"),
        ("epsilon_end=0.1", "did you mean 'agent.epsilon_end'?"),
        ("replay.capacity=lots", "config key 'replay.capacity' must be an integer, got 'lots'"),
        ("replay.capacity=-5", "config key 'replay.capacity' must be a positive integer, got -5"),
        ("agent.epsilon_end=1.5", "config key 'agent.epsilon_end' must be a number in [0, 1], got 1.5"),
        ("optimizer.name=sgd", "config key 'optimizer.name' must be one of adam, rmsprop, got 'sgd'"),
        ("env.game=Pongg", "unknown game 'Pongg'; closest: Pong"),
        ("agent.double_dqn=maybe", "config key 'agent.double_dqn' must be true or false"),
    ],
)
def test_bad_values_are_rejected_with_one_clear_message(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(CONFIGS / "pong.yaml", [override])
    assert message in str(err.value)


def test_resolved_config_round_trips(tmp_path):
    from dqn_atari.config import from_dict, save_config, to_dict

    cfg = load_config(CONFIGS / "breakout.yaml", ["seed=7"])
    save_config(cfg, tmp_path / "c.yaml")
    again = from_dict(yaml.safe_load((tmp_path / "c.yaml").read_text()))
    assert to_dict(again) == to_dict(cfg)


def test_every_key_is_listed():
    keys = all_keys()
    assert "replay.capacity" in keys and "env.game" in keys and "seed" in keys
    assert len(keys) == len(set(keys))
    assert isinstance(Config().env.num_envs, int)


@pytest.mark.parametrize(
    "args,message",
    [
        (["train", "configs/pong.yaml", "replay.capacty=5"], "did you mean 'replay.capacity'?"),
        (["train", "configs/pong.yaml", "env.game=Pongg"], "unknown game 'Pongg'"),
        (["train", "configs/pong.yaml", "agent.epsilon_start=2"], "must be a number in [0, 1]"),
        (["train", "configs/nope.yaml"], "config file 'configs/nope.yaml' does not exist"),
    ],
)
def test_cli_rejects_bad_config_with_exit_2_and_one_line(cli, args, message):
    result = cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("dqn-atari: error: ")
    assert message in lines[0]
    assert "Traceback" not in result.stderr


def test_cli_help_and_games(cli):
    help_text = cli("--help").stdout
    for command in ("train", "games", "benchmark"):
        assert command in help_text
    assert "--help-config" in cli("train", "--help").stdout
    games = cli("games").stdout.split()
    assert {"Pong", "Breakout", "SpaceInvaders", "MsPacman"} <= set(games)
