"""Shared fixtures. `data_root`: the shared data folder; tests that need it skip when it is missing, but fail
when the CI environment variable is set (CI must have the data)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from workbench.paths import DATA_ENV, data_root as shared_data_root


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The shared data folder (`$WORKBENCH_DATA`, default ../shared/data beside the repository)."""
    root = shared_data_root()
    if not root.is_dir():
        message = f"shared data not found at {root}; set {DATA_ENV} to its folder"
        if _in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return root
