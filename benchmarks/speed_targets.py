"""Speed target of issue 16, measured in one run: the fastest Lite CSW-HRNet path on this CPU takes at most the time
of the fastest Lite-HRNet-18 path (any engine for each, batch 1, 256x192, --threads threads), with outputs equal to
eager within 1e-4; the function the model computes is unchanged (every engine runs the same weights).

Contenders, for both models alike (`workbench.speed.engines`): PyTorch eager; the compiled paths of
`workbench.speed.compiled` ("jit", "jit_channels_last", and "compile" with --compile: Inductor with frozen weights,
which fuses the CSW reductions and multiplies but takes minutes to build); ONNX Runtime on the project's export
(graph rewrites on) and on the exporter's plain graph; OpenVINO on the project's export; ncnn through pnnx. Missing
engines are noted and skipped.

All contenders are timed interleaved (`workbench.speed.latency.interleaved_seconds`: each round times every one,
after one untimed call that absorbs the switch between runtimes); the ratio of the two fastest paths is the median
of per-round ratios (`paired_ratio`), the min-based ratio is printed too.
Run (after `pip install -e .`): python benchmarks/speed_targets.py [--rounds 40] [--threads 2] [--compile]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile

import numpy as np

from model import build_model
from workbench.speed.engines import PARITY_TOLERANCE, build_engine, engine_missing, engine_parity
from workbench.speed.latency import interleaved_seconds, paired_ratio, set_threads
from workbench.speed.onnx_export import conditioned_random_weights, export_onnx

MODELS = ("lite_csw_hrnet", "lite_hrnet_18")


def contenders(name: str, size: tuple[int, int], threads: int, use_compile: bool, folder: str) -> tuple[dict, dict]:
    """Runners of every path for model `name` and their max abs difference to eager; notes for the missing ones."""
    model = conditioned_random_weights(build_model(name, input_size=size).eval(), size)
    graph = export_onnx(model, size)
    plan = [("eager", "eager", {}), ("compiled jit", "compiled", {"compiled_variant": "jit"}),
            ("compiled jit_channels_last", "compiled", {"compiled_variant": "jit_channels_last"}),
            ("onnxruntime", "onnxruntime", {"graph": graph}),
            ("onnxruntime plain graph", "onnxruntime", {"graph": export_onnx(model, size, optimize=False)}),
            ("openvino", "openvino", {"graph": graph}), ("ncnn", "ncnn", {"folder": folder})]
    if use_compile:
        plan.insert(3, ("compiled compile", "compiled", {"compiled_variant": "compile"}))
    runners, notes = {}, {}
    for label, engine, options in plan:
        missing = engine_missing(engine)
        if missing:
            notes[f"{name} {label}"] = missing
            continue
        print(f"  building {name} {label}", flush=True)
        runner = build_engine(engine, model, size, 1, threads, **options)
        difference = engine_parity(runner, model, size)
        runners[f"{name} | {label}"] = (runner, difference)
    return runners, notes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="add the torch.compile path (minutes to build)")
    args = parser.parse_args()

    size = (256, 192)
    set_threads(args.threads)
    images = np.random.default_rng(0).standard_normal((1, 3, *size), dtype=np.float32)
    runners, notes = {}, {}
    with tempfile.TemporaryDirectory() as folder:
        for name in MODELS:
            found, missing = contenders(name, size, args.threads, args.compile, folder)
            runners.update(found)
            notes.update(missing)
        calls = {label: (lambda r=runner: r(images)) for label, (runner, _) in runners.items()}
        print(f"timing {len(calls)} paths, {args.rounds} interleaved rounds, batch 1, {size[0]}x{size[1]}, "
              f"{args.threads} threads", flush=True)
        times = interleaved_seconds(calls, args.rounds, warmup=3, settle=1, block=1)
    print("| model | path | median ms | min ms | max ms | max abs diff to eager |")
    print("|---|---|---:|---:|---:|---:|")
    for label, values in times.items():
        model, path = label.split(" | ")
        print(f"| {model} | {path} | {statistics.median(values) * 1000:.2f} | {min(values) * 1000:.2f} "
              f"| {max(values) * 1000:.2f} | {runners[label][1]:.1e} |")
    for label, note in notes.items():
        print(f"| {label.split(' ', 1)[0]} | {label.split(' ', 1)[1]} | not run: {note} | | | |")
    fastest = {}
    for name in MODELS:
        mine = {label: values for label, values in times.items() if label.startswith(name + " |")
                and runners[label][1] < PARITY_TOLERANCE}
        fastest[name] = min(mine, key=lambda label: statistics.median(mine[label]))
    first, second = fastest[MODELS[0]], fastest[MODELS[1]]
    ratio = paired_ratio(times[first], times[second])
    min_ratio = min(times[first]) / min(times[second])
    met = ratio <= 1.0
    print(f"fastest {MODELS[0]}: {first.split(' | ')[1]}; fastest {MODELS[1]}: {second.split(' | ')[1]}")
    print(f"ratio of fastest paths {MODELS[0]} / {MODELS[1]}: median paired {ratio:.3f} (min-based {min_ratio:.3f}); "
          f"target <= 1.0: {'MET' if met else 'NOT MET'}; parity of both < {PARITY_TOLERANCE:.0e}: MET")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
