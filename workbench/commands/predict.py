"""`python -m workbench predict`: poses of every person in images, folders, globs and videos, written into --output
as drawn pictures or videos and COCO-format keypoint JSON (for a video: one record per person per frame, with its
frame index, time and track id).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from workbench.commands import add_command, add_device, add_threads, positive_int, use_threads

DEFAULT_WEIGHTS = "lite_csw_hrnet_256x192_fashion"
"""`workbench.prediction.api.DEFAULT_WEIGHTS` (tests/test_cli.py checks that the two agree)."""
DETECTION_THRESHOLD = 0.25
"""`workbench.prediction.api.DETECTION_THRESHOLD`."""
ENGINES = ("auto", "onnx", "torch")
"""`workbench.prediction.api.ENGINES`."""


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie between 0 and 1, got {value}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(subparsers, "predict", "poses of every person in images, folders and videos",
                         __doc__.split(": ", 1)[1])
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image, folder, glob pattern or video file")
    parser.add_argument("--output", type=Path, default=Path("predictions"), metavar="DIR",
                        help="folder for the pictures, videos and JSON")
    parser.add_argument("--weights", default=DEFAULT_WEIGHTS,
                        help="a weights entry of weights/manifest.json, a checkpoint file (with --model) or an ONNX "
                             "file")
    parser.add_argument("--model", help="the model of a checkpoint file (one of `python -m workbench models`)")
    parser.add_argument("--detector", type=Path, metavar="FILE",
                        help="a YOLOX ONNX file (default: $WORKBENCH_DETECTOR, else YOLOX-Nano in the user cache, "
                             "downloaded once)")
    parser.add_argument("--no-detector", dest="use_detector", action="store_false",
                        help="no person detector: the whole image is one person")
    parser.add_argument("--detection-threshold", type=_fraction, default=DETECTION_THRESHOLD, metavar="SCORE",
                        help="lowest person-box score kept")
    parser.add_argument("--min-box-size", type=float, default=8.0, metavar="PIXELS",
                        help="smallest person-box side kept")
    parser.add_argument("--no-flip", dest="flip", action="store_false",
                        help="skip the flip test (about twice as fast)")
    parser.add_argument("--max-frames", type=positive_int, metavar="N", help="stop each video after N frames")
    parser.add_argument("--engine", choices=ENGINES, default="auto",
                        help="where the pose network runs: onnx (ONNX Runtime), torch (PyTorch), or auto (ONNX "
                             "Runtime on the CPU, PyTorch on CUDA)")
    add_device(parser)
    add_threads(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from workbench.common.devices import resolve_device
    from workbench.prediction.api import Predictor, PredictOptions
    from workbench.prediction.outputs import expand_inputs, predict_images, predict_video
    from workbench.prediction.video import is_video

    device = resolve_device(args.device)
    paths = expand_inputs(args.inputs)
    use_threads(args.threads)
    options = PredictOptions(flip=args.flip, detection_threshold=args.detection_threshold,
                             min_box_size=args.min_box_size)
    predictor = Predictor.load(args.model, args.weights, detector=args.detector if args.use_detector else False,
                          options=options, device=device, threads=args.threads, engine=args.engine)
    images = [path for path in paths if not is_video(path)]
    if images:
        print(f"wrote {predict_images(predictor, images, args.output)} and {len(images)} drawn pictures")
    for video in (path for path in paths if is_video(path)):
        drawn, records = predict_video(predictor, video, args.output, args.max_frames)
        print(f"wrote {drawn} and {records}")
    return 0
