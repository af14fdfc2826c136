"""How errors name what was meant and quote other libraries' exceptions (`dqn_atari/errors.py`)."""

from dqn_atari.errors import closest_sibling, first_line


def test_closest_sibling_names_the_entry_a_misspelled_path_meant(tmp_path):
    (tmp_path / "pong-fast-s0").mkdir()
    (tmp_path / "breakout-s1").mkdir()
    assert closest_sibling(tmp_path / "pong-fats-s0") == f"; did you mean {tmp_path / 'pong-fast-s0'}?"
    assert closest_sibling(tmp_path / "pong-fast-s0") == ""  # it exists: nothing to suggest
    assert closest_sibling(tmp_path / "zzzzzz") == ""  # nothing close
    assert closest_sibling(tmp_path / "no-such-dir" / "run") == ""  # no directory to look in


def test_first_line_quotes_one_line_and_joins_an_announcing_one():
    assert first_line(ValueError("bad value\nmore detail")) == "bad value"
    announcing = RuntimeError("Error(s) in loading state_dict for QNetwork:\n\tMissing key(s): head.weight\nother")
    assert first_line(announcing) == "Error(s) in loading state_dict for QNetwork: Missing key(s): head.weight"
    assert first_line(KeyError()) == "KeyError"
    assert len(first_line(ValueError("x" * 500))) == 160
