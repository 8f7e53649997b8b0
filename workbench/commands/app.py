"""`python -m workbench app`: the Gradio workbench (Inspect, Compare, Complexity) on a local address."""
from __future__ import annotations

import argparse

from workbench.commands import positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("app", help="launch the Gradio workbench app (upload, inspect, compare)")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default: 127.0.0.1, this machine)")
    parser.add_argument("--port", type=int, default=7860, help="port to serve on (default: 7860)")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link (off by default)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where the models run (default: auto, CUDA when present)")
    parser.add_argument("--threads", type=positive_int, default=None, help="PyTorch CPU threads (default: PyTorch's choice)")
    parser.add_argument("--concurrency", type=positive_int, default=2,
                        help="requests processed at once per event; more wait in the queue (default: 2)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import tempfile

    import torch

    from workbench.app.callbacks import Workbench
    from workbench.app.layout import build_app
    from workbench.zoo.cache import ModelCache
    from workbench.common.devices import resolve_device
    from workbench.common.errors import WorkbenchError

    if args.threads:
        torch.set_num_threads(args.threads)
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
