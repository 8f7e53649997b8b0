"""Processes launched by torchrun: the process group, the device of each process, and step-wise agreement."""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from workbench.common.devices import resolve_device
from workbench.common.errors import WorkbenchError

TIMEOUT = timedelta(hours=2)
"""How long a process waits for the others, e.g. while rank 0 validates (a full COCO val run takes minutes)."""


@dataclass(frozen=True)
class Processes:
    """Where this process stands: rank and world_size over all nodes, local_rank on this node, its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        """Rank 0 logs, validates and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def hardware(self) -> str:
        """What trains: e.g. "1 x NVIDIA A100-SXM4-80GB" or "CPU AMD EPYC (2 cores)"."""
        if self.device.type == "cuda":
            return f"{self.world_size} x {torch.cuda.get_device_name(self.device)}"
        return f"CPU {cpu_model()} ({os.cpu_count()} cores)" + (f" x {self.world_size} processes"
                                                              if self.distributed else "")


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux, else the platform's description)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def setup(device: str = "auto") -> Processes:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1; NCCL on CUDA, gloo on the CPU) and pick
    this process's device: `device` "auto" is cuda:<local rank> when CUDA is present, else the CPU. An explicit
    device with an index (cuda:N) is refused when there are several processes: every rank would take GPU N."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if world_size > 1 and device not in ("auto", "cpu", "cuda"):
        raise WorkbenchError(f"train.device={device} under {world_size} processes would put every rank on the same "
                             "device. Set train.device=cuda (or auto): each rank takes cuda:<LOCAL_RANK>; choose "
                             "the GPUs with CUDA_VISIBLE_DEVICES.")
    chosen = resolve_device(device, "train.device")
    if chosen.type == "cuda":
        chosen = torch.device("cuda", local_rank if chosen.index is None else chosen.index)
        torch.cuda.set_device(chosen)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo", timeout=TIMEOUT)
    return Processes(rank, world_size, local_rank, chosen)


def teardown(processes: Processes) -> None:
    """Leave the process group."""
    if processes.distributed and dist.is_initialized():
        dist.destroy_process_group()


def agree(values: torch.Tensor, processes: Processes) -> torch.Tensor:
    """The sum over processes of a small float64 tensor (itself with one process)."""
    if processes.distributed:
        values = values.to(processes.device)
        dist.all_reduce(values)
    return values.cpu()


def barrier(processes: Processes) -> None:
    """Wait for every process (a no-op with one)."""
    if processes.distributed:
        dist.barrier()
