"""The documents a user reads point at things that exist: every relative link, every path of the
repository named in backticks, and every test named as `tests/test_x.py::test_name`."""

import re

import pytest
from helpers import ROOT

DOCUMENTS = [
    "README.md",
    "configs/README.md",
    "slurm/README.md",
    "results/README.md",
    "tests/README.md",
    "dqn_atari/README.md",
]
TOP_LEVEL = ("configs/", "dqn_atari/", "scripts/", "slurm/", "tests/", "results/", ".ci/")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
CODE = re.compile(r"`([^`\s]+)`")
# What a document writes for "any such name": runs/<run>, slurm/profiles/NAME.yaml
PLACEHOLDER = re.compile(r"[<>*{}$]|\.\.\.|(?<![A-Za-z])(NAME|RUN_DIR|SWEEP_DIR|GROUP|DIR|OUT|PATH|CONFIG)(?![A-Za-z])")


def referenced_paths(document: str) -> list[tuple[str, str]]:
    """(how it was named, path relative to the repository) for each link and backticked path."""
    text = (ROOT / document).read_text(encoding="utf-8")
    folder = (ROOT / document).parent.relative_to(ROOT)
    out = []
    for target in LINK.findall(text):
        if "://" not in target:
            out.append((target, str(folder / target).removeprefix("./")))
    for token in CODE.findall(text):
        token = token.rstrip(".,;:")
        looks_like_a_path = token.endswith("/") or re.search(r"\.[a-z]+(::\w+)?$", token)
        if token.startswith(TOP_LEVEL) and looks_like_a_path and not PLACEHOLDER.search(token):
            out.append((token, token))
    return out


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_link_and_path_in_the_documents_exists(document):
    missing = []
    for named, path in referenced_paths(document):
        file, _, test_name = path.partition("::")
        target = ROOT / file
        if (
            not target.exists()
            or test_name
            and not re.search(rf"^def {re.escape(test_name)}\(", target.read_text(), re.M)
        ):
            missing.append(named)
    assert not missing, f"{document} names what does not exist: {missing}"


def test_the_readme_starts_with_the_two_commands_and_ci_runs_the_second():
    lines = (ROOT / "README.md").read_text().splitlines()
    block = lines[lines.index("```bash") + 1 : lines.index("```")]
    assert len(block) == 2
    test_command = block[1].split("#")[0].strip()
    assert test_command in (ROOT / ".ci" / "run").read_text()
