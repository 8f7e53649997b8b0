"""Where the workbench finds data, weights and reports: one setting each, overridable by environment variable."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

DATA_ENV = "WORKBENCH_DATA"


def data_root() -> Path:
    """The shared data folder: `$WORKBENCH_DATA`, or `../shared/data` beside the repository."""
    return Path(os.environ.get(DATA_ENV, REPO_ROOT.parent / "shared" / "data")).resolve()


def weights_dir() -> Path:
    """The folder of the project's own trained checkpoints and their manifest."""
    return Path(os.environ.get("WORKBENCH_WEIGHTS", REPO_ROOT / "weights")).resolve()


def reports_dir() -> Path:
    """The default folder for reports written by the CLI."""
    return Path(os.environ.get("WORKBENCH_REPORTS", REPO_ROOT / "reports")).resolve()


def models_root() -> Path:
    """The shared folder of third-party model files (such as the test person detector) beside the data folder:
    `$WORKBENCH_DATA/../models`, i.e. `../shared/models` beside the repository by default."""
    return data_root().parent / "models"
