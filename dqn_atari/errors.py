"""Errors that several modules raise, and how they quote other libraries' exceptions; here so that
imports between those modules run one way."""


class ConfigError(ValueError):
    """A user mistake in a config file or override; the CLI prints it as one line, exit 2."""


def closest_sibling(path) -> str:
    """'; did you mean <path>?' naming the entry of the path's directory closest to its name (a
    misspelled run directory), or '' when none is close."""
    import difflib
    from pathlib import Path

    path = Path(path)
    if path.exists() or not path.parent.is_dir():
        return ""
    names = [p.name for p in path.parent.iterdir()]
    close = difflib.get_close_matches(path.name, names, n=1, cutoff=0.6)
    return f"; did you mean {path.parent / close[0]}?" if close else ""


def first_line(err: BaseException) -> str:
    """An exception's message cut to one line (at most 160 characters), or its type's name when
    it has none: what a one-line error quotes of a library's exception. A first line that only
    announces what follows (torch's "Error(s) in loading state_dict for QNetwork:") is joined
    with the next one."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    text = " ".join(lines[:2]) if lines[0].endswith(":") and len(lines) > 1 else lines[0]
    return text[:160]
