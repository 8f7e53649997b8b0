"""`python -m workbench complexity`: parameters, FLOPs under every convention, measured latency, memory and
throughput for every model, written to complexity.md, complexity.csv and two plots in --output (atomically).

FLOPs: fvcore (1e9) and the convention of each published row (A: HRNet repository, B: Lite-HRNet's torchstat;
G = 2^30), against the figures printed in the paper's Tables 2 and 3 and the official repositories
(`workbench/speed/published_figures.yaml` names each source). Latency per image on the CPU at batch 1 (eager
PyTorch, the compiled PyTorch path, ONNX Runtime, OpenVINO and ncnn through pnnx; interleaved; median, min and
max at 1 and 2 threads), peak memory, throughput at batch --throughput-batch, CUDA timings when a GPU is present,
and for lite_csw_hrnet against lite_hrnet_18 the time per operator group on ONNX Runtime, OpenVINO and PyTorch.
An engine whose package is missing gets a note in the report (`pip install -e '.[engines]'` adds them).
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from workbench.commands import add_command, add_threads, positive_int, size_type

SIZES = ((256, 192), (384, 288))
"""The input sizes (height, width) of the report when --sizes is not given."""
FAST_VARIANTS = ("jit", "jit_channels_last", "compile")
"""The fast PyTorch paths --fast-variants chooses from (`workbench.speed.compiled`)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(subparsers, "complexity", "report parameters, FLOPs and latency of every model",
                         __doc__.split("\n\n")[0].split(": ", 1)[1])
    parser.add_argument("--models", nargs="+", metavar="NAME",
                        help="model names (default: every model; see `python -m workbench models`)")
    parser.add_argument("--sizes", nargs="+", type=size_type, metavar="HxW",
                        help="input sizes, height x width in pixels, multiples of 32 (default: "
                             f"{' '.join(f'{height}x{width}' for height, width in SIZES)})")
    add_threads(parser, default=2)
    parser.add_argument("--repeats", type=positive_int, default=30, metavar="N",
                        help="timed rounds per model (each backend once a round)")
    parser.add_argument("--warmup", type=int, default=3, metavar="N", help="untimed calls per backend before timing")
    parser.add_argument("--budget", type=float, default=30.0, metavar="SECONDS",
                        help="seconds of latency rounds per model and size before stopping early (at least 5 rounds)")
    parser.add_argument("--throughput-batch", type=positive_int, default=32, metavar="N",
                        help="batch size of the throughput measurement")
    parser.add_argument("--throughput-repeats", type=positive_int, default=5, metavar="N",
                        help="timed rounds of the throughput measurement")
    parser.add_argument("--fast-variants", nargs="+", default=["jit"], choices=FAST_VARIANTS,
                        metavar="NAME", help=f"the compiled PyTorch path, one of {', '.join(FAST_VARIANTS)}, built the "
                                             "same way for every model ('compile' takes minutes per model); only the "
                                             "first is used")
    parser.add_argument("--engines", nargs="*", default=["openvino", "ncnn"], choices=["openvino", "ncnn"],
                        metavar="NAME", help="optional engines to time besides eager, compiled and ONNX Runtime (a missing "
                                             "package becomes a note)")
    parser.add_argument("--thread-counts", nargs="+", type=positive_int, default=[1, 2], metavar="N",
                        help="CPU thread counts of the batch-1 latency per engine")
    parser.add_argument("--no-breakdown", dest="breakdown", action="store_false",
                        help="skip the time per operator group of lite_csw_hrnet and lite_hrnet_18")
    parser.add_argument("--no-onnx", dest="onnx", action="store_false", help="skip the ONNX Runtime timings")
    parser.add_argument("--counts-only", action="store_true", help="count parameters and FLOPs only; no timing")
    parser.add_argument("--quick", action="store_true",
                        help="CI mode: 3 rounds, 1 warm-up, --threads only, throughput at batch 1, 'jit' compiled path")
    parser.add_argument("--metrics", nargs="+", type=Path, default=[], metavar="JSON",
                        help="metrics.json files of `python -m workbench evaluate`: the project's measured APs, "
                             "plotted beside the paper's")
    parser.add_argument("--output", type=Path, metavar="DIR",
                        help="report folder (default: reports/, or $WORKBENCH_REPORTS)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from model import model_names
    from workbench.speed.complexity import QUICK_SPEED, SpeedSettings, measure_rows
    from workbench.reports.complexity import load_measured_ap, write_report
    from workbench.common.errors import WorkbenchError
    from workbench.common.paths import reports_dir

    models = args.models or model_names()
    unknown = [m for m in models if m not in model_names()]
    if unknown:
        raise WorkbenchError(f"unknown model(s) {', '.join(unknown)}. Choose from: {', '.join(model_names())}.")
    sizes = list(args.sizes or SIZES)
    bad = [f"{h}x{w}" for h, w in sizes if h <= 0 or w <= 0 or h % 32 or w % 32]
    if bad:
        raise WorkbenchError(f"input size(s) {', '.join(bad)} are not positive multiples of 32. Use e.g. 256x192.")
    measured = load_measured_ap([str(p) for p in args.metrics])
    if args.counts_only:
        settings = None
    elif args.quick:
        settings = dataclasses.replace(QUICK_SPEED, threads=args.threads, onnx=args.onnx,
                                       engines=tuple(args.engines))
    else:
        settings = SpeedSettings(threads=args.threads, repeats=args.repeats, warmup=args.warmup, budget_s=args.budget,
                                 throughput_batch=args.throughput_batch,
                                 throughput_repeats=args.throughput_repeats, fast_variants=tuple(args.fast_variants),
                                 onnx=args.onnx, engines=tuple(args.engines),
                                 thread_counts=tuple(dict.fromkeys(args.thread_counts)))
    rows, notes = measure_rows(models, sizes, settings)
    breakdown = None
    if settings is not None and args.breakdown and {"lite_csw_hrnet", "lite_hrnet_18"} <= set(models):
        from model import build_model
        from workbench.speed.onnx_export import conditioned_random_weights
        from workbench.speed.operators import operator_breakdown

        pair = {name: conditioned_random_weights(build_model(name, input_size=(256, 192)).eval(), (256, 192))
                for name in ("lite_csw_hrnet", "lite_hrnet_18")}
        breakdown = operator_breakdown(pair, (256, 192), args.threads, runs=3 if args.quick else 10)
    paths = write_report(rows, args.output or reports_dir(), settings, measured, notes, args.command_line, breakdown)
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
