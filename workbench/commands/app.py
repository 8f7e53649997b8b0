"""`python -m workbench app`: the Gradio workbench (Inspect, Compare, Video, Complexity) on a local address.

People are found by a YOLOX person detector: --detector FILE, else $WORKBENCH_DETECTOR, else YOLOX-Nano in the user
cache (downloaded once when the network is reachable). Without one the app still serves, with drawn, typed,
detection-file and whole-image boxes, and says why on the page.
"""
from __future__ import annotations

import argparse
import logging
import socket
import tempfile
from pathlib import Path

from workbench.commands import add_command, add_threads, positive_int, use_threads
from workbench.common.errors import WorkbenchError

MAX_UPLOAD = "200mb"
"""The largest file the app accepts (images, checkpoints, videos)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(subparsers, "app", "launch the Gradio app (photos, videos, inside the models)",
                         __doc__.split(": ", 1)[1])
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to serve on (127.0.0.1: this machine only; 0.0.0.0: every network interface)")
    parser.add_argument("--port", type=int, default=7860, help="port to serve on")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where the models run (auto: CUDA when present)")
    parser.add_argument("--detector", type=Path, metavar="FILE",
                        help="a YOLOX ONNX person detector (default: $WORKBENCH_DETECTOR, else YOLOX-Nano in the user "
                             "cache, downloaded once)")
    add_threads(parser, onnx=False)
    parser.add_argument("--concurrency", type=positive_int, default=2, metavar="N",
                        help="requests processed at once per event; more wait in the queue")
    parser.set_defaults(func=run)


def check_port(host: str, port: int) -> None:
    """Refuse a port that is busy (or a host that is not this machine's) before anything heavy is imported."""
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            raise WorkbenchError(f"cannot serve on {host}:{port} ({error.strerror}). Pass a free port with --port, "
                                 "or another --host.") from None


def run(args: argparse.Namespace) -> int:
    check_port(args.host, args.port)
    from workbench.common.devices import resolve_device

    device = resolve_device(args.device)
    use_threads(args.threads)
    from workbench.app.callbacks import Workbench
    from workbench.app.layout import build_app
    from workbench.detection.download import resolve_detector
    from workbench.detection.yolox import PersonDetector
    from workbench.prediction.api import DETECTION_THRESHOLD
    from workbench.zoo.cache import ModelCache

    detector, problem = None, ""
    try:
        detector = PersonDetector(resolve_detector(args.detector), score_threshold=DETECTION_THRESHOLD,
                                  threads=args.threads)
    except WorkbenchError as error:
        if args.detector is not None:
            raise
        problem = str(error)
        logging.getLogger("workbench.app").warning("no person detector: %s", problem)
    with tempfile.TemporaryDirectory(prefix="workbench-app-") as downloads:
        app = build_app(Workbench(ModelCache(device), downloads, detector=detector,
                                  detector_problem=problem or "no person detector"))
        app.queue(default_concurrency_limit=args.concurrency)
        try:
            app.launch(server_name=args.host, server_port=args.port, share=args.share, show_error=True,
                       max_file_size=MAX_UPLOAD)
        except OSError as error:
            raise WorkbenchError(f"cannot serve on {args.host}:{args.port} ({error}). "
                                 "Pass a free port with --port.") from None
    return 0
