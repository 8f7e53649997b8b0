"""`python -m workbench app`: the Gradio workbench (Inspect, Compare, Complexity) on a local address."""
from __future__ import annotations

import argparse
import tempfile

from workbench.commands import add_command, add_threads, positive_int, use_threads
from workbench.common.errors import WorkbenchError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(subparsers, "app", "launch the Gradio app (upload, inspect, compare)",
                         "The Gradio workbench: Inspect, Compare and Complexity tabs, served on a local address.")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to serve on (127.0.0.1: this machine only; 0.0.0.0: every network interface)")
    parser.add_argument("--port", type=int, default=7860, help="port to serve on")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where the models run (auto: CUDA when present)")
    add_threads(parser, onnx=False)
    parser.add_argument("--concurrency", type=positive_int, default=2, metavar="N",
                        help="requests processed at once per event; more wait in the queue")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from workbench.app.callbacks import Workbench
    from workbench.app.layout import build_app
    from workbench.zoo.cache import ModelCache
    from workbench.common.devices import resolve_device

    use_threads(args.threads)
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory(prefix="workbench-app-") as downloads:
        app = build_app(Workbench(ModelCache(device), downloads))
        app.queue(default_concurrency_limit=args.concurrency)
        try:
            app.launch(server_name=args.host, server_port=args.port, share=args.share, show_error=True)
        except OSError as error:
            raise WorkbenchError(f"cannot serve on {args.host}:{args.port} ({error}). "
                                 "Pass a free port with --port.") from None
    return 0
