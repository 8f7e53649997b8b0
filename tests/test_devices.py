"""The device a user names: auto, cpu, cuda, cuda:N, and one clear refusal for each mistake."""
from __future__ import annotations

import pytest
import torch

from workbench.common.devices import resolve_device
from workbench.common.errors import WorkbenchError


def test_auto_and_cpu_resolve_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu") and resolve_device("cpu") == torch.device("cpu")


def test_cuda_without_a_gpu_and_unknown_names_are_refused_naming_the_setting(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(WorkbenchError, match="train.device is cuda:0, but PyTorch sees no CUDA GPU"):
        resolve_device("cuda:0", "train.device")
    with pytest.raises(WorkbenchError, match="unknown device 'gpu' for --device"):
        resolve_device("gpu")


def test_a_gpu_index_beyond_the_machine_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1) and resolve_device("cuda") == torch.device("cuda")
    with pytest.raises(WorkbenchError, match="has 2 GPU"):
        resolve_device("cuda:2")


def test_training_names_its_setting_when_the_device_is_wrong():
    from workbench.training import distributed

    with pytest.raises(WorkbenchError, match="unknown device 'tpu' for train.device"):
        distributed.setup("tpu")
