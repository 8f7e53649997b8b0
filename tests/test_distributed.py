"""GPU and torchrun paths reached on this CPU machine: a stop signal to the torchrun launcher's process group (2 gloo
processes with loader workers) and to a single process's group ends in a saved last.pt; an explicit cuda:N is
refused under several processes; a resume restores the CUDA generators that fit fewer GPUs; loader workers ignore
stop signals and run OpenCV on one thread; the app reads its CUDA forward time after synchronising (CUDA queries
monkeypatched)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from workbench.common.errors import WorkbenchError
from workbench.common.paths import REPO_ROOT
from workbench.training import distributed
from workbench.training.checkpointing import load_checkpoint, restore_cuda_rng, restore_rng, capture_rng

FASHION = "lite_csw_hrnet_256x192_fashion"
TINY = ["model.input_size=[64,64]", "data.subset=48", "validation.subset=8", "train.batch_size=4", "train.epochs=3",
        "train.warmup_iters=4", "validation.every=0", "train.threads=1", "data.workers=1", "output.progress=false"]
"""3 epochs of 6 (two processes) or 12 steps of 4 crops at 64x64, one loader worker per process."""


def _launch(command: list[str]) -> subprocess.Popen:
    """Start `command` in a new session (its own process group), as a shell or a batch system would."""
    return subprocess.Popen(command, cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _stop_after_first_steps(process: subprocess.Popen, output: Path, log: Path | None = None) -> tuple[str, str]:
    """Wait until the run is training (its loader workers are up: the first checkpoint-free steps are done), then
    SIGTERM the whole process group of the launcher."""
    deadline = time.monotonic() + 150
    while process.poll() is None and time.monotonic() < deadline:
        if (output / "config.yaml").exists():
            break
        time.sleep(0.05)
    time.sleep(4.0)  # a few steps into the epoch, loader workers running
    os.killpg(process.pid, signal.SIGTERM)
    return process.communicate(timeout=120)


@pytest.mark.parametrize("launcher", ["torchrun", "single"])
def test_sigterm_to_the_process_group_ends_in_a_saved_last_pt(launcher, data_root, tmp_path):
    """torchrun sends SIGTERM to each rank's whole process group (SLURM and `kill -- -PGID` do the same): the loader
    workers ignore it, every rank finishes its step, rank 0 saves last.pt mid-run, and the run resumes from it."""
    output = tmp_path / "run"
    train = ["-m", "workbench", "train", "--config", FASHION, "--output", str(output), "--set",
             f"data.root={data_root}", *TINY]
    if launcher == "torchrun":
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *train]
    else:
        command = [sys.executable, *train]
    process = _launch(command)
    stdout, stderr = _stop_after_first_steps(process, output)
    assert process.returncode != 0, stdout + stderr  # stopped, not finished
    assert "killed by signal" not in stderr and "DataLoader worker" not in stderr, stderr[-3000:]
    assert (output / "last.pt").exists(), stderr[-3000:]
    state = load_checkpoint(output / "last.pt")
    processes = 2 if launcher == "torchrun" else 1
    assert state["world_size"] == processes and 0 < state["step"] < 3 * 48 // (4 * processes)
    assert "stopped by SIGTERM" in stdout + stderr


def test_an_explicit_cuda_index_is_refused_under_several_processes(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(WorkbenchError, match=r"train.device=cuda:1 under 2 processes .* CUDA_VISIBLE_DEVICES"):
        distributed.setup("cuda:1")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(WorkbenchError):  # one process: cuda:1 is allowed, and here fails only for want of CUDA
        distributed.setup("cuda:1")


def test_cuda_rng_restore_fits_fewer_visible_gpus(monkeypatch):
    """A run saved on 4 GPUs resumed where 2 are visible restores those 2 (set_rng_state_all would raise
    IndexError); one saved on 1 restores that one."""
    restored = {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: restored.__setitem__(device, state))
    monkeypatch.setattr(torch.cuda, "set_rng_state_all",
                        lambda states: (_ for _ in ()).throw(IndexError("list index out of range")))
    saved = [torch.full((16,), index, dtype=torch.uint8) for index in range(4)]
    assert restore_cuda_rng(saved) == 2 and sorted(restored) == [0, 1]
    assert all(torch.equal(restored[index], saved[index]) for index in (0, 1))
    restored.clear()
    assert restore_cuda_rng(saved[:1]) == 1 and list(restored) == [0]
    restored.clear()
    with monkeypatch.context() as patch:  # the whole restore of a checkpoint's random states
        patch.setattr(torch.cuda, "get_rng_state_all", lambda: saved)
        rng = capture_rng()
    restore_rng(rng)
    assert sorted(restored) == [0, 1]


WORKER = """
import multiprocessing, os, signal, sys, time
from workbench.training.data import init_worker

def work(ready):
    import cv2
    cv2.warpAffine(cv2.UMat(64, 64, cv2.CV_8UC3).get(), cv2.getRotationMatrix2D((32, 32), 10, 1), (64, 64))
    init_worker(0)
    os.kill(os.getpid(), signal.SIGTERM)  # from another process than the parent (here itself): ignored
    os.kill(os.getpid(), signal.SIGINT)
    ready.put(cv2.getNumThreads())
    time.sleep(60)

if __name__ == "__main__":
    import cv2
    cv2.setNumThreads(1)  # as build_train_loader does before its workers fork
    multiprocessing.set_start_method("fork")
    ready = multiprocessing.Queue()
    worker = multiprocessing.Process(target=work, args=(ready,), daemon=True)
    worker.start()
    threads = ready.get(timeout=60)
    time.sleep(0.5)
    alive = worker.is_alive()
    worker.terminate()  # SIGTERM from the parent, as the DataLoader's and multiprocessing's shutdown send
    worker.join(10)
    print(threads, alive, worker.is_alive())
"""


def test_loader_workers_ignore_stop_signals_but_their_parents_and_run_opencv_on_one_thread():
    """A worker survives SIGTERM and SIGINT from anyone but its parent, and ends when its parent terminates it
    (else a finished run would hang at exit, waiting for it)."""
    done = subprocess.run([sys.executable, "-c", WORKER], cwd=REPO_ROOT, capture_output=True, text=True, timeout=90,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert done.returncode == 0 and done.stdout.split() == ["1", "True", "False"], done.stderr


def test_the_app_reads_cuda_forward_time_after_synchronising(monkeypatch):
    """The Inspect timing waits for CUDA before each clock reading (CUDA faked: the network runs on the CPU)."""
    from workbench.app import analysis
    from workbench.app.inputs import LoadedImage
    from workbench.zoo.cache import UNTRAINED, ModelCache

    events = []
    monkeypatch.setattr(analysis, "_device_of", lambda network: torch.device("cuda", 0))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: events.append(("synchronize", device)))
    clock = time.perf_counter
    monkeypatch.setattr(analysis.time, "perf_counter", lambda: events.append(("clock", None)) or clock())
    loaded = ModelCache(torch.device("cpu")).get("lite_csw_hrnet", UNTRAINED)
    image = LoadedImage(np.zeros((96, 64, 3), dtype=np.uint8), "test", 1.0, (64, 96), None)
    analysis.run_inspect(loaded, image, np.array([[0, 0, 64, 96]]), flip=False)
    kinds = [kind for kind, _ in events]
    assert kinds[:2] == ["synchronize", "clock"] and kinds[-2:] == ["synchronize", "clock"]
