"""`python -m workbench predict`: poses of every person in images, folders, globs and videos, written as drawn
pictures or videos and COCO-format keypoint JSON.

People are found by a YOLOX person detector (--detector PATH, else $WORKBENCH_DETECTOR, else the YOLOX-Nano file
in the user cache, downloaded once), or the whole image is one person (--no-detector).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from workbench.commands import positive_int


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie between 0 and 1, got {value}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict", help="poses of every person in images, folders and videos: drawn pictures and keypoint JSON",
        description=__doc__.split("\n\n")[0].split(": ", 1)[1], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image, folder, glob pattern or video file")
    parser.add_argument("--output", type=Path, default=Path("predictions"), help="folder for the pictures and JSON")
    parser.add_argument("--weights", default="lite_csw_hrnet_256x192_fashion",
                        help="a weights entry of weights/manifest.json, a checkpoint file (with --model) or an ONNX "
                             "file")
    parser.add_argument("--model", help="the model of a checkpoint file (one of model.model_names())")
    parser.add_argument("--detector", type=Path, help="a YOLOX ONNX file (default: see above)")
    parser.add_argument("--no-detector", dest="use_detector", action="store_false",
                        help="no detector: the whole image is one person")
    parser.add_argument("--detection-threshold", type=_fraction, default=0.25, help="lowest person-box score kept")
    parser.add_argument("--min-box-size", type=float, default=8.0, help="smallest person-box side kept, in pixels")
    parser.add_argument("--no-flip", dest="flip", action="store_false", help="without the flip test (twice as fast)")
    parser.add_argument("--max-frames", type=positive_int, help="stop a video after this many frames")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--threads", type=positive_int, help="CPU threads of PyTorch and ONNX Runtime")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from workbench.common.devices import resolve_device
    from workbench.predict.api import Predictor, PredictOptions
    from workbench.predict.outputs import expand_inputs, predict_images, predict_video
    from workbench.predict.video import is_video

    device = resolve_device(args.device)
    paths = expand_inputs(args.inputs)
    if args.threads:
        torch.set_num_threads(args.threads)
    options = PredictOptions(flip=args.flip, detection_threshold=args.detection_threshold,
                             min_box_size=args.min_box_size)
    predictor = Predictor(args.model, args.weights, detector=args.detector if args.use_detector else False,
                          options=options, device=device, threads=args.threads)
    images = [path for path in paths if not is_video(path)]
    if images:
        print(f"wrote {predict_images(predictor, images, args.output)} and {len(images)} drawn pictures")
    for video in (path for path in paths if is_video(path)):
        drawn, records = predict_video(predictor, video, args.output, args.max_frames)
        print(f"wrote {drawn} and {records}")
    return 0
