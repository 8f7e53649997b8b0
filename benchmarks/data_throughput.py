"""Training-pipeline throughput: crops per second at 256x192 with full augmentation and targets, one worker.

Run from the repository root (after `pip install -e .`, or with PYTHONPATH=.):
    python benchmarks/data_throughput.py [--annotations FILE --images DIR] [--crops 1600] [--batch-size 32]
Defaults to the fashion-pose train split under the shared data folder. Prints the rate of one process running the
dataset, the rate through a DataLoader with one worker process, and the time of each stage of a sample.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from torch.utils.data import DataLoader

from workbench.data.dataset import CocoKeypoints
from workbench.codec import HEATMAP_STRIDE, encode_heatmaps
from workbench.data.transforms import crop_matrix, to_tensor, transform_points, warp_crop
from workbench.common.paths import data_root


def stage_times(dataset: CocoKeypoints, count: int) -> dict[str, float]:
    """Mean milliseconds per sample of each step of `CocoKeypoints.__getitem__`, timed separately."""
    totals = dict.fromkeys(("read and decode", "augmentation draw", "affine warp", "heatmap targets",
                            "normalise to tensor"), 0.0)
    for index in range(count):
        index %= len(dataset)
        start = time.perf_counter()
        image = dataset.read(dataset.instances[index].image_id)
        read = time.perf_counter()
        params = dataset.crop_params(index)
        matrix = crop_matrix(params.center, params.box_size, dataset.input_size, params.rotation)
        drawn = time.perf_counter()
        crop = warp_crop(image, matrix, dataset.input_size)
        warped = time.perf_counter()
        joints = transform_points(dataset.instances[index].joints[:, :2], matrix) / HEATMAP_STRIDE
        encode_heatmaps(joints, dataset.instances[index].joints[:, 2] > 0, dataset.heatmap_size, dataset.sigma)
        targets = time.perf_counter()
        to_tensor(crop, dataset.mean, dataset.std)
        done = time.perf_counter()
        for name, (begin, end) in zip(totals, [(start, read), (read, drawn), (drawn, warped), (warped, targets),
                                               (targets, done)]):
            totals[name] += end - begin
    return {name: 1000.0 * total / count for name, total in totals.items()}


def in_process_rate(dataset: CocoKeypoints, count: int) -> float:
    """Crops per second of `dataset[i]` called in this process."""
    start = time.perf_counter()
    for index in range(count):
        dataset[index % len(dataset)]
    return count / (time.perf_counter() - start)


def loader_rate(dataset: CocoKeypoints, count: int, batch_size: int) -> float:
    """Crops per second through a DataLoader with one worker, after its first batch (worker start-up excluded)."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=1, drop_last=True)
    seen, start = 0, None
    while seen < count:
        for batch in loader:
            if start is None:
                start = time.perf_counter()
                continue
            seen += len(batch["image"])
            if seen >= count:
                break
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    fashion = data_root() / "fashion-pose"
    parser.add_argument("--annotations", default=fashion / "person_keypoints_train.json")
    parser.add_argument("--images", default=fashion / "images")
    parser.add_argument("--crops", type=int, default=1600)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    dataset = CocoKeypoints(args.annotations, args.images, (256, 192), train=True)
    sizes = np.array([(info.width, info.height) for info in dataset.images.values()])
    print(f"{dataset.summary()}; median image {int(np.median(sizes[:, 0]))}x{int(np.median(sizes[:, 1]))}")
    print("per sample, ms: " + ", ".join(f"{name} {ms:.3f}" for name, ms in stage_times(dataset, 400).items()))
    print(f"one process, dataset[i]: {in_process_rate(dataset, args.crops):.0f} crops/s")
    print(f"DataLoader, 1 worker, batch {args.batch_size}: "
          f"{loader_rate(dataset, args.crops, args.batch_size):.0f} crops/s")


if __name__ == "__main__":
    main()
