"""`python -m workbench evaluate`: COCO keypoint metrics of one model on one COCO annotation file.

The model is a PyTorch checkpoint (--model NAME --checkpoint FILE), an exported ONNX graph (--onnx FILE), or the
ground truth itself rendered as heatmaps (--round-trip: checks the annotations and the pipeline; expect AP near 1).
Person boxes are the ground truth's, a detection file's (--detections) or a person detector's (--detector).
Writes, into --output, the results in COCO's submission format (person_keypoints_<image set>_<model>_results.json)
and metrics.json (AP, AP50, AP75, APM, APL, AR..., per-joint errors), each atomically. Without ground-truth
keypoints (test-dev2017 image info) only the results file is written, for submission. Annotations without "area"
(PoseTrack18 in COCO format) get the area of their box. For the project's trained weights on the standard sets, see
`python -m workbench report`; for two of them on the same images, `python -m workbench compare`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from workbench.commands import add_command, add_decode, add_evaluation_options, check_decode, use_threads
from workbench.common.errors import WorkbenchError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(subparsers, "evaluate", "evaluate one model on one COCO keypoint annotation file",
                         __doc__.split(": ", 1)[1])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", metavar="NAME",
                        help="model name (see `python -m workbench models`), with --checkpoint")
    source.add_argument("--onnx", type=Path, metavar="FILE",
                        help="exported ONNX graph (from `python -m workbench export`); its input size is read from "
                             "the graph")
    source.add_argument("--round-trip", action="store_true",
                        help="evaluate the ground truth rendered as target heatmaps instead of a model (needs "
                             "ground-truth boxes)")
    parser.add_argument("--checkpoint", type=Path, metavar="FILE",
                        help="PyTorch state dict of --model (torch.save(model.state_dict(), path)), or a weights "
                             "entry of weights/manifest.json")
    parser.add_argument("--annotations", type=Path, metavar="JSON", required=True,
                        help="COCO person-keypoints json (or image_info json for test-dev)")
    parser.add_argument("--images", type=Path, metavar="DIR", required=True,
                        help="folder of the annotation file's images")
    parser.add_argument("--detections", type=Path, metavar="JSON",
                        help="person boxes in COCO results format (default: the ground-truth boxes)")
    parser.add_argument("--detector", nargs="?", const=True, metavar="FILE",
                        help="find the person boxes with a YOLOX ONNX person detector: FILE, or without it "
                             "$WORKBENCH_DETECTOR, else YOLOX-Nano in the user cache (downloaded once); the boxes "
                             "are written as detections.json beside the results")
    parser.add_argument("--detection-threshold", type=float, default=0.01, metavar="SCORE",
                        help="lowest person-box score --detector keeps (low: AP rewards recall)")
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("HEIGHT", "WIDTH"),
                        help="network input size (default: 256 192, or the ONNX graph's)")
    parser.add_argument("--mean", type=float, nargs=3, metavar=("R", "G", "B"),
                        help="normalisation mean for pixels in [0, 1] (default: ImageNet's, 0.485 0.456 0.406)")
    parser.add_argument("--std", type=float, nargs=3, metavar=("R", "G", "B"),
                        help="normalisation std for pixels in [0, 1] (default: ImageNet's, 0.229 0.224 0.225)")
    parser.add_argument("--score-threshold", type=float, default=0.0, metavar="SCORE",
                        help="lowest detection box score kept")
    parser.add_argument("--enclose-keypoints", action="store_true",
                        help="grow ground-truth boxes to contain their labelled keypoints (for carelessly drawn "
                             "boxes; departs from the standard protocol)")
    parser.add_argument("--vis-threshold", type=float, default=0.2, metavar="SCORE",
                        help="joint scores above this count in rescoring (box score x mean joint score)")
    parser.add_argument("--oks-threshold", type=float, default=0.9, metavar="OKS",
                        help="OKS NMS threshold (1 disables)")
    add_decode(parser)
    add_evaluation_options(parser, onnx=True)
    parser.add_argument("--workers", type=int, default=2, metavar="N",
                        help="DataLoader worker processes (0: read images in the main process)")
    parser.add_argument("--output", type=Path, metavar="DIR",
                        help="output folder (default: reports/evaluate/<model>_<image set>)")
    parser.set_defaults(func=run)


def image_set_name(annotations: Path) -> str:
    """'val2017' from person_keypoints_val2017.json, 'test-dev2017' from image_info_test-dev2017.json."""
    stem = annotations.stem
    for prefix in ("person_keypoints_", "image_info_"):
        stem = stem.removeprefix(prefix)
    return stem.replace("_", "-")


def check_options(args: argparse.Namespace) -> None:
    """Refuse, with one WorkbenchError each, option combinations that cannot work."""
    if args.workers < 0:
        raise WorkbenchError(f"--workers is {args.workers}: give a whole number of at least 0.")
    if (args.model is None) != (args.checkpoint is None):
        raise WorkbenchError("--model and --checkpoint go together: pass both (or --onnx, or --round-trip).")
    if args.round_trip and (args.detections or args.detector):
        raise WorkbenchError("--round-trip renders the ground truth, so it needs ground-truth boxes: drop "
                             "--detections and --detector.")
    if args.detections and args.detector:
        raise WorkbenchError("--detections and --detector both give person boxes: pass one of them.")


def run(args: argparse.Namespace) -> int:
    from workbench.codec import DECODERS
    from workbench.common.devices import resolve_device
    from workbench.common.files import write_json_atomic
    from workbench.common.paths import reports_dir
    from workbench.data.dataset import CocoKeypoints
    from workbench.data.transforms import IMAGENET_MEAN, IMAGENET_STD
    from workbench.detection.download import resolve_detector
    from workbench.detection.yolox import PersonDetector
    from workbench.evaluation.detections import detect_people
    from workbench.evaluation.metrics import dataset_metrics, dataset_results, format_metrics, has_keypoint_annotations
    from workbench.zoo.loader import DEFAULT_INPUT_SIZE, is_onnx_file, load

    check_options(args)
    check_decode(args.decode, DECODERS)
    if args.checkpoint is not None and is_onnx_file(args.checkpoint):
        raise WorkbenchError(f"{args.checkpoint.name} is an ONNX graph, not a PyTorch checkpoint: pass it as --onnx "
                             f"{args.checkpoint.name}, without --model and --checkpoint.")
    if args.onnx is not None and not is_onnx_file(args.onnx):
        raise WorkbenchError(f"--onnx takes an ONNX graph (.onnx, from `python -m workbench export`); "
                             f"{args.onnx.name} is not one. For a PyTorch checkpoint pass --model NAME --checkpoint "
                             f"{args.onnx.name}.")
    use_threads(args.threads)
    input_size = tuple(args.input_size) if args.input_size else DEFAULT_INPUT_SIZE
    model = None
    if args.onnx:
        model = load(None, args.onnx, input_size=tuple(args.input_size) if args.input_size else None,
                     threads=args.threads)
        input_size, label = model.input_size, args.onnx.stem
    elif args.model:
        device = resolve_device(args.device)
        model = load(args.model, args.checkpoint, input_size=input_size, device=device, threads=args.threads)
        label = args.model
    else:
        label = "round-trip"
    label = label.replace("_", "-")
    image_set = image_set_name(args.annotations)
    output = args.output or reports_dir() / "evaluate" / f"{label}_{image_set}"
    detections = args.detections
    if args.detector:
        detector = PersonDetector(resolve_detector(None if args.detector is True else args.detector),
                                  score_threshold=args.detection_threshold, threads=args.threads)
        detections = write_json_atomic(output / "detections.json",
                                       detect_people(args.annotations, args.images, detector))
    dataset = CocoKeypoints(args.annotations, args.images, input_size, detections=detections,
                            score_threshold=args.score_threshold, enclose_keypoints=args.enclose_keypoints,
                            with_targets=args.round_trip,
                            mean=args.mean or IMAGENET_MEAN, std=args.std or IMAGENET_STD)
    print(dataset.summary())
    predictions, results = dataset_results(
        model, dataset, flip=args.flip, decode=args.decode, batch_size=args.batch_size, workers=args.workers,
        progress=True, vis_threshold=args.vis_threshold, oks_threshold=args.oks_threshold)
    for image_id, message in predictions.unreadable.items():
        print(f"warning: skipped image {image_id}: {message}")
    results_path = write_json_atomic(output / f"person_keypoints_{image_set}_{label}_results.json", results)
    if has_keypoint_annotations(dataset.coco):
        metrics = dataset_metrics(dataset, predictions, results)
        print(format_metrics(metrics))
    else:
        metrics = {"message": f"{args.annotations.name} has no ground-truth keypoints: results written for "
                              "submission, no metrics"}
        print(metrics["message"])
    metrics.update(instances=len(dataset), results=len(results), skipped=dict(dataset.skipped),
                   unreadable_images={str(k): v for k, v in predictions.unreadable.items()},
                   settings={"model": args.model or (str(args.onnx) if args.onnx else "round-trip"),
                             "checkpoint": str(args.checkpoint) if args.checkpoint else None,
                             "input_size": list(input_size), "annotations": str(args.annotations),
                             "images": str(args.images),
                             "detections": str(detections) if detections else None,
                             "detector": str(detector.path) if args.detector else None,
                             "score_threshold": args.score_threshold, "enclose_keypoints": args.enclose_keypoints,
                             "vis_threshold": args.vis_threshold,
                             "oks_threshold": args.oks_threshold, "flip": args.flip, "decode": args.decode,
                             "mean": list(dataset.mean), "std": list(dataset.std)})
    metrics_path = write_json_atomic(output / "metrics.json", metrics)
    print(f"wrote {results_path} and {metrics_path}")
    return 0
