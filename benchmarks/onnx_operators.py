"""Where ONNX Runtime spends its time, per operator type, for lite_csw_hrnet beside lite_hrnet_18 (issue 3's ONNX
target): kernels per run and microseconds per run from ONNX Runtime's profiler, the difference, and the totals.

Both graphs go through the project's export (graph rewrites on) and session settings (spinning off), 256x192,
batch 1, profiled in interleaved rounds. Profiling adds its own overhead per kernel; the ratio of record is
`benchmarks/speed_targets.py`'s.
Run (after `pip install -e .`): python benchmarks/onnx_operators.py [--models lite_csw_hrnet lite_hrnet_18] [--threads 2] [--runs 50]
"""
from __future__ import annotations

import argparse

import numpy as np
from tqdm import tqdm

from model import build_model
from workbench.speed.onnx_export import conditioned_random_weights, export_onnx, profile_operators


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs=2, default=["lite_csw_hrnet", "lite_hrnet_18"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()

    size = (256, 192)
    images = np.random.default_rng(0).standard_normal((1, 3, *size), dtype=np.float32)
    graphs = {name: export_onnx(conditioned_random_weights(build_model(name, input_size=size), size), size)
              for name in tqdm(args.models, desc="export", unit="model")}
    profiles = {name: {row.op_type: row for row in rows}
                for name, rows in profile_operators(graphs, images, args.threads, args.runs).items()}
    first, second = args.models
    op_types = sorted(set(profiles[first]) | set(profiles[second]),
                      key=lambda op: -max(profiles[m][op].microseconds if op in profiles[m] else 0.0 for m in args.models))
    print(f"ONNX Runtime kernels per run, {args.threads} threads, {args.runs} runs, 256x192, batch 1")
    print(f"{'operator':22s} {first + ' nodes':>22s} {'us':>9s} {second + ' nodes':>22s} {'us':>9s} {'difference us':>14s}")
    totals = {name: [0, 0.0] for name in args.models}
    for op in op_types:
        cells = []
        for name in args.models:
            row = profiles[name].get(op)
            nodes, micro = (row.nodes, row.microseconds) if row else (0, 0.0)
            totals[name][0] += nodes
            totals[name][1] += micro
            cells.append((nodes, micro))
        print(f"{op:22s} {cells[0][0]:22d} {cells[0][1]:9.1f} {cells[1][0]:22d} {cells[1][1]:9.1f} "
              f"{cells[0][1] - cells[1][1]:+14.1f}")
    (n1, t1), (n2, t2) = totals[first], totals[second]
    print(f"{'total':22s} {n1:22d} {t1:9.1f} {n2:22d} {t2:9.1f} {t1 - t2:+14.1f}")
    print(f"kernel-time ratio {first} / {second}: {t1 / t2:.3f}; kernels per run {n1} / {n2}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
