"""What the weighting functions cost on each deployment engine, for Lite CSW-HRNet and Lite-HRNet-18: the time of
the full network against the same network with its single-resolution weighting removed (CSW's per-branch M_c (x) M_s,
Lite-HRNet's per-branch squeeze-and-excitation) and with every weighting removed (also the cross-resolution one).

The removed variants are diagnostics, not models: they compute other functions. They separate the cost of the
convolutions (where Lite CSW-HRNet's fewer FLOPs are) from the cost of the weighting (where its extra memory-bound
reductions and multiplies are), engine by engine. Every variant of both models is timed in the same interleaved
rounds (`workbench.speed.latency.interleaved_seconds`), batch 1, 256x192; ratios are medians of per-round ratios to
Lite-HRNet-18's full network on the same engine (`paired_ratio`).
Run (after `pip install -e '.[engines]'`): python benchmarks/weighting_cost.py [--rounds 30] [--threads 2]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile

import numpy as np
from torch import nn

from model import build_model
from model.lite_hrnet import WeightingBlock
from workbench.speed.engines import ENGINE_LABELS, build_engine, engine_missing
from workbench.speed.latency import interleaved_seconds, paired_ratio, set_threads
from workbench.speed.onnx_export import conditioned_random_weights

MODELS = ("lite_csw_hrnet", "lite_hrnet_18")
ENGINES = ("onnxruntime", "openvino", "ncnn")
VARIANTS = ("full", "no single-resolution weighting", "no weighting")
BASELINE = (MODELS[1], VARIANTS[0])


def without_weighting(model: nn.Module, variant: str) -> nn.Module:
    """A copy of `model` with the weighting functions of `variant` replaced by identities in every WeightingBlock."""
    model = copy.deepcopy(model)
    if variant == VARIANTS[0]:
        return model
    for block in model.modules():
        if isinstance(block, WeightingBlock):
            block.single_resolution_weighting = nn.ModuleList(
                nn.Identity() for _ in block.single_resolution_weighting)
            if variant == VARIANTS[2]:
                block.cross_resolution_weighting = nn.Identity()
    return model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    size = (256, 192)
    set_threads(args.threads)
    images = np.random.default_rng(0).standard_normal((1, 3, *size), dtype=np.float32)
    engines = [engine for engine in ENGINES if not engine_missing(engine)]
    for engine in sorted(set(ENGINES) - set(engines)):
        print(f"{ENGINE_LABELS[engine]} not run: {engine_missing(engine)}")
    calls = {}
    with tempfile.TemporaryDirectory() as folder:
        for name in MODELS:
            model = conditioned_random_weights(build_model(name, input_size=size).eval(), size)
            for variant in VARIANTS:
                network = without_weighting(model, variant)
                for engine in engines:
                    print(f"  building {name} {variant} on {ENGINE_LABELS[engine]}", flush=True)
                    runner = build_engine(engine, network, size, 1, args.threads, folder=folder)
                    calls[(name, variant, engine)] = lambda r=runner: r(images)
        print(f"timing {len(calls)} networks, {args.rounds} interleaved rounds, batch 1, {size[0]}x{size[1]}, "
              f"{args.threads} threads", flush=True)
        times = interleaved_seconds(calls, args.rounds, warmup=3, settle=1, block=1)
    print("| engine | model | network | median ms | min ms | / Lite-HRNet-18 full |")
    print("|---|---|---|---:|---:|---:|")
    for engine in engines:
        baseline = times[(*BASELINE, engine)]
        for name in MODELS:
            for variant in VARIANTS:
                values = times[(name, variant, engine)]
                print(f"| {ENGINE_LABELS[engine]} | {name} | {variant} | {statistics.median(values) * 1000:.2f} "
                      f"| {min(values) * 1000:.2f} | {paired_ratio(values, baseline):.3f} |")
    for engine in engines:
        shares = []
        for name in MODELS:
            full, bare = times[(name, VARIANTS[0], engine)], times[(name, VARIANTS[2], engine)]
            shares.append(f"{name} {1 - paired_ratio(bare, full):.0%}")
        print(f"{ENGINE_LABELS[engine]}: share of the full network's time spent in weighting: {', '.join(shares)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
