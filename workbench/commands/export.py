"""`python -m workbench export`: a model as an ONNX file (or, with --format ncnn, an ncnn .param/.bin pair through
pnnx, fp32) for one batch and input size, checked against PyTorch on random inputs (max abs difference below
--tolerance), with its ONNX Runtime (or ncnn) latency printed.

Without --checkpoint the network is untrained, with weights re-drawn at trained-network scale so that the parity
check means something (a fresh N(0, 0.001) network outputs ~1e-18).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from workbench.commands import add_command, add_threads, positive_int, size_type, use_threads
from workbench.common.errors import WorkbenchError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(subparsers, "export", "export a model to ONNX or ncnn, checked and timed",
                         __doc__.split(": ", 1)[1])
    parser.add_argument("model", help="model name (see `python -m workbench models`)")
    parser.add_argument("--format", choices=["onnx", "ncnn"], default="onnx",
                        help="onnx, or ncnn (through pnnx)")
    parser.add_argument("--size", type=size_type, default="256x192", metavar="HxW", help="input height x width")
    parser.add_argument("--batch", type=positive_int, default=1, metavar="N", help="batch size of the graph (static)")
    parser.add_argument("--checkpoint", type=Path, metavar="FILE",
                        help="PyTorch state dict of the model (default: untrained, with weights re-drawn as above)")
    parser.add_argument("--output", type=Path, metavar="FILE",
                        help="ONNX file (default: reports/onnx/<model>_<H>x<W>_b<N>.onnx); with --format ncnn the "
                             "folder of the .param/.bin files, reports/ncnn/ if not given")
    parser.add_argument("--no-optimize", dest="optimize", action="store_false",
                        help="write the exporter's graph without the project's graph rewrites")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest accepted max abs difference")
    add_threads(parser, default=2)
    parser.add_argument("--repeats", type=positive_int, default=20, metavar="N",
                        help="timed ONNX Runtime runs (after 3 warm-up runs)")
    parser.add_argument("--profile", action="store_true",
                        help="also profile the kernels: time and count per operator type, printed and written as "
                             "<output>.operators.csv")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from model import build_model, model_names
    from workbench.zoo.loader import is_onnx_file, load
    from workbench.speed.onnx_export import (conditioned_random_weights, export_onnx, onnx_parity, operators_csv,
                                  operators_table, ort_session, profile_operators, run_session, save_onnx)
    from workbench.common.files import write_text_atomic
    from workbench.speed.latency import time_interleaved
    from workbench.common.paths import reports_dir

    if args.model not in model_names():
        raise WorkbenchError(f"unknown model {args.model!r}. Choose one of: {', '.join(model_names())}.")
    height, width = args.size
    if height <= 0 or width <= 0 or height % 32 or width % 32:
        raise WorkbenchError(f"size {height}x{width} is not a positive multiple of 32: use e.g. 256x192.")
    if args.checkpoint is not None and is_onnx_file(args.checkpoint):
        raise WorkbenchError(f"{args.checkpoint.name} is an ONNX graph, not a PyTorch checkpoint: it needs no export. "
                             f"Pass a state dict of {args.model} saved with torch.save(model.state_dict(), path).")
    use_threads(args.threads)
    if args.checkpoint:
        network = load(args.model, args.checkpoint, input_size=args.size)
    else:
        network = conditioned_random_weights(build_model(args.model, input_size=args.size), args.size)
    if args.format == "ncnn":
        return _export_ncnn(args, network)
    graph = export_onnx(network, args.size, batch_size=args.batch, optimize=args.optimize)
    session = ort_session(graph, threads=args.threads)
    difference = onnx_parity(network, session, args.size, batch_size=args.batch)
    if difference >= args.tolerance:
        raise WorkbenchError(f"ONNX Runtime differs from PyTorch by {difference:.2e} (tolerance {args.tolerance:.0e}); "
                             "nothing written. Retry with --no-optimize and report the model.")
    path = save_onnx(graph, args.output or reports_dir() / "onnx" / f"{args.model}_{height}x{width}_b{args.batch}.onnx")
    images = np.random.default_rng(0).standard_normal((args.batch, 3, height, width), dtype=np.float32)
    timing = time_interleaved({"ort": lambda: run_session(session, images)}, args.repeats, 3)["ort"]
    print(f"wrote {path}")
    print(f"parity: max abs difference to PyTorch {difference:.2e} (tolerance {args.tolerance:.0e})")
    print(f"onnxruntime ({args.threads} threads, batch {args.batch}): median {timing.median_ms:.2f} ms, "
          f"min {timing.min_ms:.2f}, max {timing.max_ms:.2f} over {timing.runs} runs")
    if args.profile:
        rows = profile_operators({args.model: graph}, images, threads=args.threads, runs=args.repeats)[args.model]
        table = path.with_suffix(".operators.csv")
        write_text_atomic(table, operators_csv(rows))
        print(f"kernels per run by operator type (ONNX Runtime profiler, {args.repeats} runs), written to {table}:")
        print(operators_table(rows))
    return 0


def _export_ncnn(args: argparse.Namespace, network) -> int:
    """The ncnn branch of `run`: pnnx export into a temporary folder, parity, then the files moved into place."""
    import shutil
    import tempfile

    import numpy as np

    from workbench.common.paths import reports_dir
    from workbench.speed.latency import time_interleaved
    from workbench.speed.ncnn_export import NcnnRunner, export_ncnn, ncnn_missing, ncnn_parity

    missing = ncnn_missing()
    if missing:
        raise WorkbenchError(f"cannot export to ncnn: {missing}.")
    height, width = args.size
    name = f"{args.model}_{height}x{width}"
    folder = Path(args.output or reports_dir() / "ncnn")
    with tempfile.TemporaryDirectory() as work:
        try:
            exported = export_ncnn(network, args.size, work, name)
        except RuntimeError as error:
            raise WorkbenchError(f"{error}\nnothing written.") from None
        runner = NcnnRunner(exported, args.threads)
        difference = ncnn_parity(network, runner, args.size, batch_size=args.batch)
        if difference >= args.tolerance:
            raise WorkbenchError(f"ncnn differs from PyTorch by {difference:.2e} (tolerance {args.tolerance:.0e}); "
                                 "nothing written.")
        images = np.random.default_rng(0).standard_normal((args.batch, 3, height, width), dtype=np.float32)
        timing = time_interleaved({"ncnn": lambda: runner(images)}, args.repeats, 3)["ncnn"]
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for source in (exported.param, exported.bin):
            target = folder / source.name
            shutil.copyfile(source, folder / f".{source.name}.tmp")
            (folder / f".{source.name}.tmp").replace(target)
            paths.append(target)
    print(f"wrote {paths[0]} and {paths[1]} (input blob {exported.input_name}, output blob {exported.output_name})")
    print(f"parity: max abs difference to PyTorch {difference:.2e} (tolerance {args.tolerance:.0e}, fp32)")
    print(f"ncnn ({args.threads} threads, batch {args.batch}, image by image): median {timing.median_ms:.2f} ms, "
          f"min {timing.min_ms:.2f}, max {timing.max_ms:.2f} over {timing.runs} runs")
    return 0
