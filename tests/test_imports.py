"""Every module of the package imports (a public RL codebase once shipped one that did not parse)."""

import importlib
import pkgutil

import dqn_atari


def test_every_module_imports():
    names = [m.name for m in pkgutil.walk_packages(dqn_atari.__path__, "dqn_atari.") if m.name != "dqn_atari.__main__"]
    assert len(names) >= 10
    for name in names:
        importlib.import_module(name)


def test_imports_between_modules_run_one_way():
    """No module imports, directly or through others (late imports inside functions included),
    a module that imports it back."""
    import ast
    from pathlib import Path

    root = Path(dqn_atari.__file__).parent
    graph: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        name = ".".join(("dqn_atari", *path.relative_to(root).with_suffix("").parts)).removesuffix(".__init__")
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dqn_atari"):
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(a.name for a in node.names if a.name.startswith("dqn_atari"))
        graph[name] = imported - {name}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and (seen.add(nxt) or reaches(nxt, goal, seen))):
                return True
        return False

    # A package's __init__ re-exporting its own modules is not a cycle of ideas; skip those edges.
    cycles = [m for m in graph if any(reaches(d, m, set()) for d in graph[m] if not d.startswith(m + "."))]
    assert not cycles, f"modules in an import cycle: {sorted(cycles)}"
