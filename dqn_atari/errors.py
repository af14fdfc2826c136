"""Errors that several modules raise; here so that imports between those modules run one way."""


class ConfigError(ValueError):
    """A user mistake in a config file or override; the CLI prints it as one line, exit 2."""
