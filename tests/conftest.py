"""Shared fixtures. `data_root`: the shared data folder, and `detector_path`: the shared person detector beside it;
tests that need them skip when they are missing, but fail when the CI environment variable is set (CI must have
them). `stand_in_model` and `stand_in_onnx`: a tiny pose network, as a torch module and as an ONNX file, for tests
of the pipeline around a model. The longest test files run first (`LONGEST_FIRST`)."""
from __future__ import annotations

import os
from pathlib import Path

import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from workbench.common.paths import DATA_ENV, data_root as shared_data_root, models_root


LONGEST_FIRST = ("test_notebooks.py", "test_app.py", "test_complexity.py", "test_training.py", "test_predict.py",
                 "test_export.py")
"""The test files that take longest (`pytest --durations`), run first: the parallel workers (pytest-xdist, one file
per worker at a time) then finish together instead of one of them running a long file alone at the end."""


def pytest_configure(config: pytest.Config) -> None:
    """In a parallel worker (pytest-xdist), this worker's share of the CPUs for PyTorch and OpenMP, also in the
    processes the tests start: without it every worker runs one thread per CPU, and OpenMP threads that wait by
    spinning on an oversubscribed machine make batch-1 networks several times slower."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        share = max(1, (os.cpu_count() or 1) // workers)
        os.environ["OMP_NUM_THREADS"] = str(share)
        torch.set_num_threads(share)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: place for place, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _missing(message: str) -> None:
    """Shared material is missing: a failure in CI (which must have it), a skip elsewhere."""
    if _in_ci():
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The shared data folder (`$WORKBENCH_DATA`, default ../shared/data beside the repository)."""
    root = shared_data_root()
    if not root.is_dir():
        _missing(f"shared data not found at {root}; set {DATA_ENV} to its folder")
    return root


SHARED_DETECTOR = "yolox_nano_coco.onnx"


@pytest.fixture(scope="session")
def detector_path(data_root: Path) -> Path:
    """The shared YOLOX-Nano export in the models folder beside the data; skips when missing, fails in CI."""
    path = models_root() / SHARED_DETECTOR
    if not path.is_file():
        _missing(f"shared detector not found at {path} (the models folder beside {data_root})")
    return path


class PooledColour(nn.Module):
    """A stand-in pose network for fast tests: 17 heatmaps, a 1x1 conv over the crop's 4x4-cell mean colours."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(4)
        self.mix = nn.Conv2d(3, 17, 1)
        self.input_size = (256, 192)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.mix(self.pool(images))


@pytest.fixture
def stand_in_model() -> PooledColour:
    """A seeded PooledColour in eval mode: (N, 3, 256, 192) -> (N, 17, 64, 48)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return PooledColour().eval()


@pytest.fixture
def stand_in_onnx(stand_in_model: PooledColour, tmp_path: Path) -> Path:
    """`stand_in_model` written as an ONNX graph (average pool, then 1x1 conv) with a fixed batch of 1."""
    weight = numpy_helper.from_array(stand_in_model.mix.weight.detach().numpy(), "weight")
    bias = numpy_helper.from_array(stand_in_model.mix.bias.detach().numpy(), "bias")
    graph = helper.make_graph(
        [helper.make_node("AveragePool", ["image"], ["pooled"], kernel_shape=[4, 4], strides=[4, 4]),
         helper.make_node("Conv", ["pooled", "weight", "bias"], ["heatmaps"])],
        "pooled_colour",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 256, 192])],
        [helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, [1, 17, 64, 48])],
        [weight, bias])
    path = tmp_path / "pooled.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.fixture(scope="module")
def one_thread():
    """One PyTorch thread: batch-1 models run about as fast and do not stall when the machine is busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
