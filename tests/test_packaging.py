"""The project's promises about itself: one dependency list, and CI running exactly the README's test command."""
from __future__ import annotations

import tomllib

import yaml

from workbench.common.paths import REPO_ROOT


def test_environment_yml_lists_the_pyproject_dependencies():
    dependencies = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    environment = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    assert [d for d in pip if d != "-e ."] == dependencies


def test_ci_runs_the_readme_test_command():
    readme = (REPO_ROOT / "README.md").read_text()
    ci_commands = [
        line for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("python3 -m venv")
    ]
    assert ci_commands, ".ci/run runs the README's test command"
    for command in ci_commands:
        assert f"```\n{command}\n```" in readme
    assert "pytest" in ci_commands[-1]
