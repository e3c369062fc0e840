"""Documentation that must not drift from the code."""

from __future__ import annotations

import re

from bitbd import hookspecs
from tests.conftest import repo_root


def test_every_hook_is_documented() -> None:
    doc = (repo_root() / "docs" / "plugin_hooks.md").read_text()
    sections = set(re.findall(r"^## (\w+)$", doc, re.MULTILINE))
    hooks = {name for name in dir(hookspecs) if name.startswith("register_")}
    assert hooks and hooks == sections


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    readme = (repo_root() / "README.md").read_text()
    commands = re.findall(r"^(python3 -m pip install .*)$", readme, re.MULTILINE)
    assert len(commands) == 2, "the README gives exactly two set-up commands"
    assert "bitbd serve" in commands[0]
    ci = (repo_root() / ".ci" / "run").read_text().splitlines()
    assert commands[1] in ci
