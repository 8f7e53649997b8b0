"""Training throughput: images per second of whole training steps against forward+backward on cached tensors.

Run from the repository root (after `pip install -e .`, or with PYTHONPATH=.):
    python benchmarks/training_throughput.py [--model lite_csw_hrnet] [--input-size 256 192] [--batch-size 32]
        [--steps 3] [--rounds 2] [--workers 2] [--threads N] [--variants float32 channels_last bfloat16 ...]
Uses the trainer's own pieces (loader, train_step) on the fashion-pose train split with the recipe's augmentation.
For each variant (memory layout x autocast dtype) it prints:
- whole step: next batch from the DataLoader (JPEG decoding, augmentation and targets in worker processes), forward,
  loss, backward, Adam update;
- forward+backward: the same network on one batch cached on the device (no loading, no update);
- their ratio (1.0 means loading and the update cost nothing).
Whole steps and cached steps alternate in `--rounds` blocks of `--steps`, so drift on a shared machine hits both.
"""
from __future__ import annotations

import argparse
import time

import torch

from model import build_model
from workbench.data import Augmentation, CocoKeypoints
from workbench.paths import data_root
from workbench.training.data import build_train_loader
from workbench.training.loop import forward_backward, train_step
from workbench.training.loss import JointsMSELoss

VARIANTS = {"float32": (False, None), "channels_last": (True, None), "bfloat16": (False, torch.bfloat16),
            "channels_last+bfloat16": (True, torch.bfloat16)}


def loader_rate(dataset: CocoKeypoints, batch_size: int, workers: int, batches: int) -> float:
    """Crops per second the DataLoader alone delivers, after its first batch (worker start-up excluded)."""
    loader = build_train_loader(dataset, batch_size, workers)
    iterator = iter(loader)
    next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


def measure(name: str, dataset: CocoKeypoints, args: argparse.Namespace) -> tuple[float, float]:
    """Images per second of whole training steps and of forward+backward on a cached batch, for one variant."""
    channels_last, dtype = VARIANTS[name]
    layout = torch.channels_last if channels_last else torch.contiguous_format
    torch.manual_seed(0)
    model = build_model(args.model, input_size=tuple(args.input_size)).train().to(memory_format=layout)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    criterion = JointsMSELoss()
    loader = build_train_loader(dataset, args.batch_size, args.workers)
    loader.sampler.set_epoch(0)
    batches = iter(loader)
    cached = next(batches)
    images = cached["image"].contiguous(memory_format=layout)
    device = torch.device("cpu")
    train_step(model, next(batches), criterion, optimizer, device, dtype, None, channels_last)  # warm-up
    whole = cached_seconds = 0.0
    for _ in range(args.rounds):
        start = time.perf_counter()
        for _ in range(args.steps):
            train_step(model, next(batches), criterion, optimizer, device, dtype, None, channels_last)
        whole += time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(args.steps):
            optimizer.zero_grad(set_to_none=True)
            forward_backward(model, images, cached["target"], cached["target_weight"], criterion, dtype)
        cached_seconds += time.perf_counter() - start
    count = args.rounds * args.steps * args.batch_size
    return count / whole, count / cached_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    fashion = data_root() / "fashion-pose"
    parser.add_argument("--annotations", default=fashion / "person_keypoints_train.json")
    parser.add_argument("--images", default=fashion / "images")
    parser.add_argument("--model", default="lite_csw_hrnet")
    parser.add_argument("--input-size", type=int, nargs=2, default=(256, 192), metavar=("H", "W"))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per block")
    parser.add_argument("--rounds", type=int, default=2, help="alternating blocks of whole and cached steps")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dataset = CocoKeypoints(args.annotations, args.images, tuple(args.input_size), train=True,
                            augmentation=Augmentation(rotation_limit=30.0))
    print(f"{args.model} {args.input_size[0]}x{args.input_size[1]}, batch {args.batch_size}, "
          f"{torch.get_num_threads()} torch threads, {args.workers} loader workers; {dataset.summary()}")
    print(f"DataLoader alone: {loader_rate(dataset, args.batch_size, args.workers, 8):.0f} images/s")
    print(f"{'variant':<24}{'whole step img/s':>18}{'fwd+bwd img/s':>15}{'ratio':>7}")
    for name in args.variants:
        whole, cached = measure(name, dataset, args)
        print(f"{name:<24}{whole:>18.2f}{cached:>15.2f}{whole / cached:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
