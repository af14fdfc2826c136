import numpy as np
import pytest
import yaml
from helpers import CONFIGS

from dqn_atari.config import Config, ConfigError, all_keys, flatten, load_config, to_dict


def test_every_shipped_config_loads():
    """A misspelt key or an out-of-range value in any shipped file fails here, not when a
    researcher first trains with it."""
    paths = sorted(CONFIGS.rglob("*.yaml"))
    assert len(paths) > 20
    for path in paths:
        load_config(path)


def test_pongs_second_recipe_differs_from_the_first_only_in_training_final_epsilon():
    """results/pong-solve-eps005/ is described as pong-solve with one change; this holds it to that."""
    first = flatten(to_dict(load_config(CONFIGS / "pong-solve.yaml")))
    second = flatten(to_dict(load_config(CONFIGS / "pong-solve-eps005.yaml")))
    changed = {
        key: (first.get(key), second.get(key))
        for key in first.keys() | second.keys()
        if first.get(key) != second.get(key)
    }
    assert changed == {"config_name": ("pong-solve", "pong-solve-eps005"), "agent.epsilon_end": (0.01, 0.05)}


def test_shipped_configs_load_and_inherit():
    nature = load_config(CONFIGS / "nature.yaml")
    assert nature.replay.capacity == 1_000_000
    assert nature.optimizer.name == "deepmind_rmsprop" and nature.optimizer.lr == 2.5e-4
    assert nature.optimizer.eps == 0.01 / 32**2
    assert nature.eval.epsilon == 0.05
    # DeepMind's code counts the Nature table's "frames" in agent steps of 4 frames:
    assert nature.agent.target_update_period_steps == 10_000
    assert nature.agent.epsilon_decay_frames == 4_000_000
    assert nature.train.total_frames == 200_000_000
    assert not (nature.env.fire_reset or nature.env.fire_on_life_loss or nature.env.frame_stack_restart_on_life_loss)
    assert nature.env.frame_stack_padding == "zeros"
    pong = load_config(CONFIGS / "pong.yaml")
    assert pong.optimizer.name == "adam" and pong.optimizer.lr == 1e-4
    assert pong.replay.capacity == 1_000_000  # inherited from nature.yaml
    assert pong.agent.target_update_period_steps == 1000
    assert pong.env.fire_on_life_loss and pong.env.frame_stack_restart_on_life_loss
    assert pong.env.frame_stack_padding == "first_frame"
    assert load_config(CONFIGS / "breakout.yaml").env.game == "Breakout"
    assert load_config(CONFIGS / "smoke.yaml").train.total_frames <= 10_000


def test_dotted_overrides_are_typed():
    cfg = load_config(
        CONFIGS / "pong.yaml",
        ["replay.capacity=100000", "agent.double_dqn=true", "optimizer.lr=3e-4", "env.game=space_invaders"],
    )
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
        ("optimizer.name=sgd", "config key 'optimizer.name' must be one of adam, rmsprop, deepmind_rmsprop, got 'sgd'"),
        (
            "agent.target_update_period=250",
            "'agent.target_update_period' was renamed: use agent.target_update_period_steps",
        ),
        ("agent.target_update_period_steps=1001", "must be a multiple of 'train.train_frequency_steps' (4)"),
        ("train.learning_starts_steps=8", "'train.learning_starts_steps' (8) must be at least 32"),
        ("env.fire_on_life_loss=true", None),  # pong.yaml already restarts stacks: accepted
        (
            "env.frame_stack_restart_on_life_loss=false",
            "'env.fire_on_life_loss' needs env.frame_stack_restart_on_life_loss=true",
        ),
        ("env.backend=ale_vector", "env.backend=ale_vector supports DeepMind's stacks only"),
        ("env.game=Pongg", "unknown game 'Pongg'; closest: Pong"),
        ("agent.double_dqn=maybe", "config key 'agent.double_dqn' must be true or false"),
    ],
)
def test_bad_values_are_rejected_with_one_clear_message(override, message):
    if message is None:
        load_config(CONFIGS / "pong.yaml", [override])
        return
    with pytest.raises(ConfigError) as err:
        load_config(CONFIGS / "pong.yaml", [override])
    assert message in str(err.value)


def test_target_period_in_agent_steps_becomes_updates_in_the_agent():
    from dqn_atari.agent import agent_from_config

    nature = load_config(CONFIGS / "nature.yaml", ["replay.capacity=1000"])
    agent = agent_from_config(nature, 6, "cpu", [np.random.SeedSequence(0)])
    assert agent.target_update_period_updates == 2_500  # 10,000 agent steps / one update per 4
    assert [type(o).__name__ for o in agent.optimizers] == ["DeepMindRMSprop"]


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
    evaluate_help = " ".join(cli("evaluate", "--help").stdout.split())
    assert "95% bootstrap interval" in evaluate_help and "%%" not in evaluate_help
    games = cli("games").stdout.split()
    assert {"Pong", "Breakout", "SpaceInvaders", "MsPacman"} <= set(games)


def test_help_config_gives_every_key_a_meaning_and_its_allowed_values(cli):
    from dqn_atari.config import key_choices, key_descriptions

    descriptions = key_descriptions()
    missing = [k for k in all_keys() if not descriptions.get(k)]
    assert not missing, f"keys without a description: {missing}"
    assert key_choices("optimizer.name") == "one of adam, rmsprop, deepmind_rmsprop"
    assert key_choices("replay.capacity") == "a positive integer"
    text = cli("train", "--help-config").stdout
    assert "eval.stop_at_return = None  (a number or null)" in text
    assert "    the online network picks the bootstrap action" in text


def test_a_resolved_config_keeps_its_name(tmp_path):
    """A sweep task's resolved config file is named after its array index; the run is still named
    after the config it came from."""
    from dqn_atari.config import save_config

    save_config(load_config(CONFIGS / "pong-fast.yaml"), tmp_path / "0.yaml")
    assert load_config(tmp_path / "0.yaml").config_name == "pong-fast"
    assert load_config(CONFIGS / "pong-fast.yaml").config_name == "pong-fast"


def test_help_config_with_a_config_shows_its_values(cli):
    text = cli("train", str(CONFIGS / "pong-solve.yaml"), "--help-config").stdout
    assert "replay.n_step = 3" in text and "env.num_envs = 8" in text and "train.total_frames = 5000000" in text


@pytest.mark.parametrize(
    "args,meant",
    [
        (["--env-id", "PongNoFrameskip-v4"], "env.game=Pong"),
        (["--total-timesteps", "10000000"], "train.total_frames=N (frames: 4 x CleanRL's agent steps)"),
        (["learning_rate=1e-4"], "here it is optimizer.lr"),
        (["buffer_size=10000"], "here it is replay.capacity"),
        (["total_timesteps=100"], "here it is train.total_frames"),
    ],
)
def test_cleanrl_names_are_mapped_to_ours(cli, args, meant):
    result = cli("train", str(CONFIGS / "smoke.yaml"), *args)
    assert result.returncode == 2 and meant in result.stderr, result.stderr
