"""Errors that several modules raise, and how they quote other libraries' exceptions; here so that
imports between those modules run one way."""


class ConfigError(ValueError):
    """A user mistake in a config file or override; the CLI prints it as one line, exit 2."""


def first_line(err: BaseException) -> str:
    """An exception's message cut to its first line (at most 160 characters), or its type's name
    when it has none: what a one-line error quotes of a library's exception."""
    text = str(err).strip()
    return text.splitlines()[0][:160] if text else type(err).__name__
