"""Speed targets of issue 3, measured as ratios in one run (interleaved rounds, so machine load hits all alike).

1. lite_csw_hrnet under ONNX Runtime vs lite_hrnet_18 under ONNX Runtime, 256x192, batch 1, 2 threads: ratio <= 1.0.
   Both graphs go through the project's export (`workbench.speed.onnx_export.export_onnx`, graph rewrites on) and session
   settings; the exporter's plain graph of lite_csw_hrnet is timed beside them for reference.
2. The project's fast PyTorch path for lite_csw_hrnet vs plain eager lite_hrnet_18: ratio <= 0.5, with the fast
   path's outputs equal to eager lite_csw_hrnet within 1e-4. The default path is `torch.compile` (Inductor, frozen
   weights), which takes a few minutes to build; the TorchScript paths ("jit", "jit_channels_last") build in
   seconds but keep one interpreted call per operator.

Ratios are medians of per-round ratios (`workbench.speed.latency.interleaved_seconds`: each round times every
contender once, after one untimed call that absorbs the switch between runtimes); min-based ratios are printed too.
Run (after `pip install -e .`): python benchmarks/speed_targets.py [--rounds 200] [--threads 2] [--fast-variant compile]
"""
from __future__ import annotations

import argparse
import statistics
import sys

import torch

from model import build_model
from workbench.speed.compiled import FAST_VARIANTS, fast_model
from workbench.speed.latency import interleaved_seconds, paired_ratio, set_threads
from workbench.speed.onnx_export import conditioned_random_weights, export_onnx, ort_session, run_session


def _report(times: dict[str, list[float]], numerator: str, denominator: str, target: float, label: str) -> bool:
    for name, values in times.items():
        print(f"  {name:36s} median {statistics.median(values) * 1000:8.2f} ms   min {min(values) * 1000:8.2f} ms")
    ratio = paired_ratio(times[numerator], times[denominator])
    min_ratio = min(times[numerator]) / min(times[denominator])
    met = ratio <= target
    print(f"  {label}: median paired ratio {ratio:.3f} (min-based {min_ratio:.3f}); target <= {target}: "
          f"{'MET' if met else 'NOT MET'}")
    return met


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fast-variant", default="compile", choices=FAST_VARIANTS)
    parser.add_argument("--spinning", action="store_true", help="let ONNX Runtime workers spin between operators")
    args = parser.parse_args()

    size = (256, 192)
    set_threads(args.threads)
    csw = conditioned_random_weights(build_model("lite_csw_hrnet", input_size=size), size)
    lite18 = conditioned_random_weights(build_model("lite_hrnet_18", input_size=size), size)
    images = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
    array = images.numpy()

    print(f"1. ONNX Runtime, {size[0]}x{size[1]}, batch 1, {args.threads} threads, spinning {args.spinning}")
    sessions = {
        "lite_csw_hrnet (project export)": export_onnx(csw, size),
        "lite_hrnet_18 (project export)": export_onnx(lite18, size),
        "lite_csw_hrnet (plain exporter graph)": export_onnx(csw, size, optimize=False),
    }
    sessions = {name: ort_session(graph, args.threads, args.spinning) for name, graph in sessions.items()}
    onnx_calls = {name: (lambda s=s: run_session(s, array)) for name, s in sessions.items()}
    # one untimed call, then the median of two timed ones, per contender and round
    times = interleaved_seconds(onnx_calls, args.rounds, warmup=5, settle=1, block=2)
    first = _report(times, "lite_csw_hrnet (project export)", "lite_hrnet_18 (project export)", 1.0,
                    "lite_csw_hrnet / lite_hrnet_18")
    plain = paired_ratio(times["lite_csw_hrnet (plain exporter graph)"], times["lite_hrnet_18 (project export)"])
    print(f"  without the project's graph rewrites: ratio {plain:.3f}")

    print(f"2. PyTorch, fast path '{args.fast_variant}' of lite_csw_hrnet vs eager lite_hrnet_18, batch 1, "
          f"{args.threads} threads")
    fast = fast_model(csw, size, args.fast_variant)
    with torch.inference_mode():
        difference = (fast(images) - csw(images)).abs().max().item()
        torch_calls = {"lite_csw_hrnet fast": lambda: fast(images), "lite_hrnet_18 eager": lambda: lite18(images),
                       "lite_csw_hrnet eager": lambda: csw(images)}
        times = interleaved_seconds(torch_calls, max(10, args.rounds // 4), warmup=3, settle=1, block=1)
    second = _report(times, "lite_csw_hrnet fast", "lite_hrnet_18 eager", 0.5, "fast lite_csw_hrnet / eager lite_hrnet_18")
    print(f"  fast vs eager lite_csw_hrnet max abs difference {difference:.1e} (target < 1e-4: "
          f"{'MET' if difference < 1e-4 else 'NOT MET'})")
    return 0 if first and second and difference < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
