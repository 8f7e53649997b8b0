"""The project's promises about itself: every import declared, one dependency list, the test tools in the `test`
extra only, and CI running exactly the README's test command."""
from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions

import yaml

from workbench.common.paths import REPO_ROOT

PROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
TEST_EXTRA = PROJECT["optional-dependencies"]["test"]


def _name(requirement: str) -> str:
    """"gradio_client>=1.0" -> "gradio-client": a distribution's normalised name (PEP 503)."""
    return re.sub(r"[-_.]+", "-", re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]).lower()


def _third_party_imports(*folders: str) -> dict[str, set[str]]:
    """Top-level module -> the files importing it (absolute imports outside the standard library and the project)."""
    found: dict[str, set[str]] = {}
    for folder in folders:
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in ("__future__", "model", "workbench"):
                        found.setdefault(top, set()).add(str(path.relative_to(REPO_ROOT)))
    return found


def _undeclared(imports: dict[str, set[str]], declared: list[str]) -> list[str]:
    names, providers = {_name(d) for d in declared}, packages_distributions()
    return [f"{module} (imported by {', '.join(sorted(files))}; provided by {providers.get(module, 'nothing')})"
            for module, files in sorted(imports.items())
            if not names & {_name(d) for d in providers.get(module, [])}]


INDIRECT = {".to_markdown(": "tabulate", "torch.utils.tensorboard": "tensorboard"}
"""Code that makes a library import another one on its behalf -> the distribution that must then be declared."""


def test_every_third_party_import_of_the_code_is_a_declared_dependency():
    imports = _third_party_imports("workbench", "model")
    assert {"pandas", "torch", "cv2", "yaml", "pytorch_grad_cam"} <= set(imports)
    assert _undeclared(imports, PROJECT["dependencies"]) == []
    code = "\n".join(path.read_text() for folder in ("workbench", "model")
                     for path in (REPO_ROOT / folder).rglob("*.py"))
    declared = {_name(d) for d in PROJECT["dependencies"]}
    assert [name for marker, name in INDIRECT.items() if marker in code and name not in declared] == []


PLUGIN_OPTIONS = {"-n": "pytest-xdist"}
"""pytest options of the configuration's addopts -> the plugin distribution that provides them (used, not imported)."""


def test_the_tests_import_only_dependencies_and_the_test_extra_which_they_all_use():
    imports = _third_party_imports("tests", "benchmarks")
    assert _undeclared(imports, PROJECT["dependencies"] + TEST_EXTRA) == []
    providers = packages_distributions()
    used = {_name(d) for module in imports for d in providers.get(module, [])}
    addopts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["addopts"]
    used |= {plugin for option, plugin in PLUGIN_OPTIONS.items() if option in addopts.split()}
    assert [d for d in TEST_EXTRA if _name(d) not in used] == []  # nothing in the extra that no test imports
    assert not {_name(d) for d in PROJECT["dependencies"]} & {_name(d) for d in TEST_EXTRA}
    assert not {"pytest", "playwright"} & {_name(d) for d in PROJECT["dependencies"]}  # the launch stays lean


def test_torch_is_pinned_to_the_release_the_code_needs():
    assert "torch>=2.3" in PROJECT["dependencies"] and "torchvision>=0.18" in PROJECT["dependencies"]
    loop = (REPO_ROOT / "workbench" / "training" / "loop.py").read_text()
    assert "torch.amp.GradScaler(" in loop  # new in torch 2.3 (torch.cuda.amp.GradScaler before)


def test_environment_yml_lists_the_pyproject_dependencies_then_the_test_extra():
    text = (REPO_ROOT / "environment.yml").read_text()
    environment = yaml.safe_load(text)
    pip = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    assert pip == PROJECT["dependencies"] + TEST_EXTRA + ["-e ."]
    assert "pip install -e '.[test]'" in text  # the comment says how a venv chooses instead


def test_ci_runs_the_readme_test_command():
    readme = (REPO_ROOT / "README.md").read_text()
    ci_commands = [
        line for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("python3 -m venv")
    ]
    assert ci_commands, ".ci/run runs the README's test command"
    for command in ci_commands:
        assert f"```\n{command}\n```" in readme
    assert "pytest" in ci_commands[-1]
