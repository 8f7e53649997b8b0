"""Training throughput: images per second of whole training steps against forward+backward on cached tensors.

Run from the repository root (after `pip install -e .`, or with PYTHONPATH=.):
    python benchmarks/training_throughput.py [--config lite_csw_hrnet_256x192_fashion] [--set KEY=VALUE ...]
        [--steps 3] [--rounds 2] [--variants float32 channels_last bfloat16 channels_last+bfloat16]
The network, input size, batch, loader workers, CPU threads and augmentation are the config's (by default
lite_csw_hrnet at 256x192, batch 32, on the fashion-pose train split), run through the trainer's own loader and
train_step. For each variant (memory layout x autocast dtype) it prints images per second of
- whole steps: next batch from the DataLoader (JPEG decoding, augmentation and targets in worker processes),
  forward, loss, backward, Adam update;
- forward+backward alone on one batch cached in memory (no loading, no update);
and their ratio (1.0: loading and the update cost nothing). Whole and cached steps alternate in `--rounds` blocks of
`--steps`, so that drift on a shared machine hits both alike.
"""
from __future__ import annotations

import argparse
import time

import torch

from model import build_model
from workbench.data.dataset import CocoKeypoints
from workbench.training import load_config
from workbench.training.config import Config
from workbench.training.data import build_datasets, build_train_loader
from workbench.training.loop import build_optimizer, forward_backward, train_step
from workbench.training.loss import JointsMSELoss

VARIANTS = {"float32": (False, None), "channels_last": (True, None), "bfloat16": (False, torch.bfloat16),
            "channels_last+bfloat16": (True, torch.bfloat16)}


def loader_rate(dataset: CocoKeypoints, batch_size: int, workers: int, batches: int) -> float:
    """Crops per second the DataLoader alone delivers, after its first batch (worker start-up excluded)."""
    iterator = iter(build_train_loader(dataset, batch_size, workers))
    next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


def measure(variant: str, config: Config, dataset: CocoKeypoints, steps: int, rounds: int) -> tuple[float, float]:
    """Images per second of whole training steps and of forward+backward on a cached batch, for one variant."""
    channels_last, dtype = VARIANTS[variant]
    layout = torch.channels_last if channels_last else torch.contiguous_format
    batch_size, device = config["train"]["batch_size"], torch.device("cpu")
    torch.manual_seed(0)
    model = build_model(config["model"]["name"], tuple(config["model"]["input_size"]), **config["model"]["options"])
    model = model.train().to(memory_format=layout)
    optimizer = build_optimizer(model, config["train"])
    criterion = JointsMSELoss()
    batches = iter(build_train_loader(dataset, batch_size, config["data"]["workers"]))
    cached = next(batches)
    images = cached["image"].contiguous(memory_format=layout)
    train_step(model, next(batches), criterion, optimizer, device, dtype, None, channels_last)  # warm-up
    whole = fixed = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(steps):
            train_step(model, next(batches), criterion, optimizer, device, dtype, None, channels_last)
        whole += time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            forward_backward(model, images, cached["target"], cached["target_weight"], criterion, dtype)
        fixed += time.perf_counter() - start
    count = rounds * steps * batch_size
    return count / whole, count / fixed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="lite_csw_hrnet_256x192_fashion")
    parser.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per block")
    parser.add_argument("--rounds", type=int, default=2, help="alternating blocks of whole and cached steps")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    args = parser.parse_args()
    config = load_config(args.config, [*args.overrides, "validation.every=0"])
    if config["train"]["threads"]:
        torch.set_num_threads(config["train"]["threads"])
    dataset, _ = build_datasets(config)
    batch_size, workers = config["train"]["batch_size"], config["data"]["workers"]
    height, width = config["model"]["input_size"]
    print(f"{config['model']['name']} {height}x{width}, batch {batch_size}, {torch.get_num_threads()} torch "
          f"threads, {workers} loader workers; {dataset.summary()}")
    print(f"DataLoader alone: {loader_rate(dataset, batch_size, workers, 8):.0f} images/s")
    print(f"{'variant':<24}{'whole step img/s':>18}{'fwd+bwd img/s':>15}{'ratio':>7}")
    for variant in args.variants:
        whole, cached = measure(variant, config, dataset, args.steps, args.rounds)
        print(f"{variant:<24}{whole:>18.2f}{cached:>15.2f}{whole / cached:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
