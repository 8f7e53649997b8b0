"""Training data: the COCO datasets of a config and a loader whose order and augmentation depend only on
(seed, epoch), shared out among processes like DistributedSampler, and able to start part-way through an epoch.

The sampler yields (epoch, index) pairs and `EpochIndexed` sets the dataset's epoch per sample, so the
augmentation draws are right in persistent worker processes too (they hold their own copy of the dataset).

At COCO scale (150k instances, 8 processes x 4 workers) memory and start-up matter: the training set drops the
parsed annotation JSON once its instances are built (each worker would otherwise hold a copy of it), only rank 0
checks that every image file exists and builds the validation set, and loader workers run OpenCV on one thread.
"""
from __future__ import annotations

import itertools
import os
import signal
import threading
from typing import Any, Iterator

import cv2
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from workbench.data.dataset import CocoKeypoints
from workbench.data.transforms import Augmentation
from workbench.training.config import Config, data_path, setting


class TrainingKeypoints(CocoKeypoints):
    """The training set: a CocoKeypoints that checks its image files only when `check_images` (rank 0 alone;
    the others trust it) and keeps no parsed annotation JSON once its instances are built."""

    def __init__(self, *args: Any, check_images: bool = True, **options: Any) -> None:
        self.check_images = check_images
        super().__init__(*args, **options)
        self.coco = {}

    def _check_images_exist(self) -> None:
        if self.check_images:
            super()._check_images_exist()


def build_datasets(config: Config, main: bool = True) -> tuple[CocoKeypoints, CocoKeypoints | None]:
    """The augmented training set and the validation set (None if validation.every is 0, and on every process but
    the main one, `main`, which alone validates and checks the image files) of `config`, cut to `data.subset` and
    `validation.subset` instances when set. Validation uses the ground-truth boxes, or the person boxes of
    `validation.detections` when set."""
    data, size = config["data"], tuple(config["model"]["input_size"])
    options = dict(sigma=data["sigma"], encoding=data["encoding"], enclose_keypoints=data["enclose_keypoints"])
    train = TrainingKeypoints(data_path(config, "train_annotations"), data_path(config, "train_images"), size,
                              train=True, augmentation=Augmentation(**data["augmentation"]),
                              seed=config["train"]["seed"], check_images=main, **options)
    if data["subset"] is not None:
        keep_first(train, data["subset"])
    if not config["validation"]["every"] or not main:
        return train, None
    detections = setting(config, "validation.detections")
    val = CocoKeypoints(data_path(config, "val_annotations"), data_path(config, "val_images"), size,
                        detections=None if detections is None else data_path(config, "detections", "validation"),
                        **options)
    if config["validation"]["subset"] is not None:
        keep_first(val, config["validation"]["subset"])
    return train, val


def keep_first(dataset: CocoKeypoints, count: int) -> None:
    """Cut `dataset` to its first `count` instances (and their images), for quick runs."""
    dataset.instances = dataset.instances[:count]
    used = {instance.image_id for instance in dataset.instances}
    dataset.images = {image_id: info for image_id, info in dataset.images.items() if image_id in used}
    dataset.boxes_missing_keypoints = sum(dataset.joints_outside_crop(i) for i in range(len(dataset.instances)))


class EpochIndexed(Dataset):
    """`dataset[(epoch, index)]` = sample `index` with the augmentation draws of `epoch`."""

    def __init__(self, dataset: CocoKeypoints) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        epoch, index = key
        self.dataset.set_epoch(epoch)
        return self.dataset[index]


class ResumableSampler(Sampler[tuple[int, int]]):
    """This process's share of a shuffled epoch as (epoch, index) pairs, from sample `start` of the share.

    The order is DistributedSampler's (seeded by seed + epoch, padded to split evenly among `num_replicas`), so
    it is the same whatever the number of loader workers, and the same again after a resume.
    """

    def __init__(self, size: int, num_replicas: int = 1, rank: int = 0, seed: int = 0) -> None:
        self.shares = DistributedSampler(range(size), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Iterate over `epoch`, skipping the first `start` samples of this process's share."""
        self.epoch, self.start = epoch, start
        self.shares.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((self.epoch, index) for index in itertools.islice(iter(self.shares), self.start, None))

    def __len__(self) -> int:
        return len(self.shares) - self.start


def collate_training(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack what a training step needs: image (N, 3, H, W), target (N, 17, h, w), target_weight (N, 17), and
    the messages of unreadable images (their target weights are already zero)."""
    return {"image": torch.stack([s["image"] for s in samples]),
            "target": torch.stack([s["target"] for s in samples]),
            "target_weight": torch.stack([s["target_weight"] for s in samples]),
            "errors": [s["error"] for s in samples if s["error"]]}


def init_worker(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: a loader worker ignores SIGINT and ends on SIGTERM only when its own parent
    sends it.

    Ctrl-C reaches the whole foreground process group, and torchrun (and SLURM) send SIGTERM to each rank's whole
    process group: a worker that died of it would make the DataLoader raise in the main process before that process
    saved `last.pt`. So a worker ignores SIGTERM from anyone but its parent (the sender's pid, read with
    sigwaitinfo by a watcher thread), while the parent can still end it (`Process.terminate`, as the DataLoader and
    multiprocessing do at shutdown; a worker deaf to it would hang its parent's exit). The main process notes the
    signal, finishes its step, saves and stops. Where sigwaitinfo is missing (macOS), SIGTERM keeps its default.
    OpenCV's own thread pool in every worker of every rank would oversubscribe the cores the workers share out.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "sigwaitinfo"):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        threading.Thread(target=_end_on_sigterm_from, args=(os.getppid(),), daemon=True,
                         name="sigterm-from-parent").start()


def _end_on_sigterm_from(parent: int) -> None:
    """Wait for SIGTERM (blocked in every thread) and end the process when `parent` sent it; ignore it otherwise."""
    while True:
        if signal.sigwaitinfo({signal.SIGTERM}).si_pid == parent:
            os._exit(128 + signal.SIGTERM)


def build_train_loader(dataset: CocoKeypoints, batch_size: int, workers: int, *, num_replicas: int = 1,
                       rank: int = 0, seed: int = 0, pin_memory: bool = False) -> DataLoader:
    """A DataLoader over `dataset` with a ResumableSampler (as `loader.sampler`); drops the last partial batch.

    With workers > 0 the workers persist across epochs, prefetch 4 batches each and ignore Ctrl-C and any SIGTERM
    not sent by their parent (the main process handles them, `init_worker`); `pin_memory` for CUDA. With workers,
    OpenCV runs on one thread, set here in the main process before the workers fork: OpenCV's pool in every worker
    of every rank would oversubscribe the cores, and resizing that pool inside a forked worker deadlocks once the
    parent has used it.
    """
    sampler = ResumableSampler(len(dataset), num_replicas, rank, seed)
    if workers > 0:
        cv2.setNumThreads(1)
    return DataLoader(EpochIndexed(dataset), batch_size=batch_size, sampler=sampler, num_workers=workers,
                      collate_fn=collate_training, pin_memory=pin_memory, drop_last=True,
                      persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None,
                      worker_init_fn=init_worker, generator=torch.Generator().manual_seed(seed))
