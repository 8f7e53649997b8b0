"""`python -m workbench evaluate`: COCO keypoint metrics of a trained network on a COCO annotation file.

Writes, into --output (default: reports/evaluate/<model>_<image set>/), the results in COCO's submission format
(person_keypoints_<image set>_<model>_results.json) and metrics.json, each atomically (temporary file, then rename).
Without ground-truth keypoints (test-dev2017 image info) only the results file is written, for submission.
With --manifest, evaluates the project's trained weights (all, or the named entries) on the standard sets and
writes the evaluation report into --output (default: reports/): evaluation.md, .csv, .png and training_curves.png.
With --manifest FIRST SECOND --paired, compares the two entries on the same images instead: their AP difference with a
paired bootstrap interval over images, in paired_<FIRST>_vs_<SECOND>.md and .csv.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from workbench.codec import DECODERS
from workbench.commands import positive_int

WORKERS = 2
"""DataLoader workers of a single-file evaluation when --workers is not given."""
THRESHOLDS = {"score_threshold": 0.0, "vis_threshold": 0.2, "oks_threshold": 0.9}
"""Defaults of the threshold options: the values `--manifest` evaluates with (its sets keep every detection)."""
SINGLE_FILE_OPTIONS = ("annotations", "images", "detections", "input_size", "mean", "std", "checkpoint", "workers")
"""Options (default None) of a single-file evaluation that `--manifest`, evaluating its own sets, would ignore."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="COCO keypoint AP of a model (checkpoint or ONNX) on an annotation file",
        description=__doc__.split("\n\n")[1], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="model name (one of model.model_names()); needs --checkpoint")
    source.add_argument("--onnx", type=Path, help="exported ONNX file (its input size is read from the graph)")
    source.add_argument("--manifest", nargs="*", metavar="NAME",
                        help="evaluate the weights of weights/manifest.json (all, or these entries) on --sets and "
                             "write the evaluation report")
    source.add_argument("--round-trip", action="store_true",
                        help="evaluate the ground truth rendered as target heatmaps instead of a model: checks the "
                             "annotations and the pipeline (expect AP near 1); needs ground-truth boxes")
    parser.add_argument("--paired", action="store_true",
                        help="with --manifest FIRST SECOND: the AP difference of the two on the same images, with a "
                             "paired bootstrap interval (sets default: fashion-pose-val-annotated fashion-pose-val)")
    parser.add_argument("--rounds", type=positive_int, default=1000, help="bootstrap rounds of --paired")
    parser.add_argument("--checkpoint", type=Path, help="state dict of --model")
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("HEIGHT", "WIDTH"),
                        help="network input size (default: 256 192, or the ONNX graph's)")
    parser.add_argument("--mean", type=float, nargs=3, metavar=("R", "G", "B"),
                        help="normalisation mean for pixels in [0, 1] (default: ImageNet's 0.485 0.456 0.406)")
    parser.add_argument("--std", type=float, nargs=3, metavar=("R", "G", "B"),
                        help="normalisation std for pixels in [0, 1] (default: ImageNet's 0.229 0.224 0.225)")
    parser.add_argument("--annotations", type=Path, help="COCO person-keypoints json (not with --manifest)")
    parser.add_argument("--images", type=Path, help="folder of the annotation file's images (not with --manifest)")
    parser.add_argument("--sets", nargs="+", help="with --manifest: named sets of workbench.evaluation.sets (default: "
                                                  "fashion-pose-val-annotated fashion-pose-val coco-sample-gt "
                                                  "coco-sample)")
    parser.add_argument("--detections", type=Path, help="person boxes in COCO results format (default: the "
                                                        "ground-truth boxes)")
    parser.add_argument("--score-threshold", type=float, default=THRESHOLDS["score_threshold"],
                        help="minimum detection box score")
    parser.add_argument("--enclose-keypoints", action="store_true",
                        help="grow ground-truth boxes to contain their labelled keypoints (for carelessly drawn "
                             "boxes; departs from the standard protocol)")
    parser.add_argument("--vis-threshold", type=float, default=THRESHOLDS["vis_threshold"],
                        help="joint scores above this count in rescoring (box score x mean joint score)")
    parser.add_argument("--oks-threshold", type=float, default=THRESHOLDS["oks_threshold"],
                        help="OKS NMS threshold (1 disables)")
    parser.add_argument("--no-flip", dest="flip", action="store_false", help="skip the flip test")
    parser.add_argument("--decode", choices=DECODERS, default="standard",
                        help="heatmap decoding: quarter-pixel offset, or DARK refinement (--manifest reports both)")
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--workers", type=int, help=f"DataLoader worker processes, {WORKERS} when not given (not "
                                                    "with --manifest)")
    parser.add_argument("--device", default="auto", help="torch device for --model and --manifest: cpu, cuda, cuda:N "
                                                         "or auto (cuda if available)")
    parser.add_argument("--threads", type=positive_int,
                        help="CPU threads for torch (default: torch's choice; 1 is often much faster on a busy machine)")
    parser.add_argument("--output", type=Path, help="output folder (default: reports/evaluate/<model>_<set>)")
    parser.set_defaults(func=run)


def image_set_name(annotations: Path) -> str:
    """'val2017' from person_keypoints_val2017.json, 'test-dev2017' from image_info_test-dev2017.json."""
    stem = annotations.stem
    for prefix in ("person_keypoints_", "image_info_"):
        stem = stem.removeprefix(prefix)
    return stem.replace("_", "-")


def check_options(args: argparse.Namespace) -> None:
    """Refuse, with one WorkbenchError each, counts that cannot work and options that the chosen mode would
    ignore."""
    from workbench.common.errors import WorkbenchError

    if args.workers is not None and args.workers < 0:
        raise WorkbenchError(f"--workers is {args.workers}: give a whole number of at least 0.")
    if args.paired and (args.manifest is None or len(args.manifest) != 2):
        raise WorkbenchError("--paired compares two weights entries: pass --manifest FIRST SECOND --paired (see "
                             "`python -m workbench weights list`).")
    if args.manifest is None and args.sets:
        raise WorkbenchError("--sets names the sets of --manifest: add --manifest, or drop --sets and pass "
                             "--annotations and --images.")
    if args.manifest is not None:
        ignored = [name for name in SINGLE_FILE_OPTIONS if getattr(args, name) is not None]
        ignored += ["enclose_keypoints"] * args.enclose_keypoints
        ignored += [name for name, default in THRESHOLDS.items() if getattr(args, name) != default]
        if ignored:
            options = ", ".join("--" + name.replace("_", "-") for name in ignored)
            raise WorkbenchError(f"--manifest evaluates each weights entry on the sets of --sets, with their own "
                                 "images and boxes, the entry's input size and the default normalisation, loading "
                                 f"and thresholds, so it does not take {options}: drop "
                                 f"{'it' if len(ignored) == 1 else 'them'}, or drop --manifest to evaluate one model "
                                 "on one annotation file.")


def run(args: argparse.Namespace) -> int:
    import torch

    from workbench.zoo.loader import load
    from workbench.data.dataset import CocoKeypoints
    from workbench.data.transforms import IMAGENET_MEAN, IMAGENET_STD
    from workbench.common.devices import resolve_device
    from workbench.common.errors import WorkbenchError
    from workbench.evaluation.metrics import dataset_metrics, dataset_results, format_metrics, has_keypoint_annotations
    from workbench.common.files import write_json_atomic
    from workbench.common.paths import reports_dir

    check_options(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.manifest is not None:
        return run_manifest(args)
    if args.annotations is None or args.images is None:
        raise WorkbenchError("pass --annotations and --images (the COCO json and its image folder), or --manifest "
                             "to evaluate the project's weights on the standard sets.")
    if (args.model is None) != (args.checkpoint is None):
        raise WorkbenchError("--model and --checkpoint go together: pass both (or --onnx, or --round-trip).")
    if args.round_trip and args.detections:
        raise WorkbenchError("--round-trip renders the ground truth, so it needs ground-truth boxes: drop "
                             "--detections.")
    input_size = tuple(args.input_size) if args.input_size else (256, 192)
    model = None
    if args.onnx:
        model = load(None, args.onnx, input_size=tuple(args.input_size) if args.input_size else None,
                     threads=args.threads)
        input_size, label = model.input_size, args.onnx.stem
    elif args.model:
        device = resolve_device(args.device)
        model, label = load(args.model, args.checkpoint, input_size=input_size, device=device), args.model
    else:
        label = "round-trip"
    label = label.replace("_", "-")
    dataset = CocoKeypoints(args.annotations, args.images, input_size, detections=args.detections,
                            score_threshold=args.score_threshold, enclose_keypoints=args.enclose_keypoints,
                            with_targets=args.round_trip,
                            mean=args.mean or IMAGENET_MEAN, std=args.std or IMAGENET_STD)
    print(dataset.summary())
    predictions, results = dataset_results(
        model, dataset, flip=args.flip, decode=args.decode, batch_size=args.batch_size,
        workers=WORKERS if args.workers is None else args.workers, progress=True, vis_threshold=args.vis_threshold,
        oks_threshold=args.oks_threshold)
    for image_id, message in predictions.unreadable.items():
        print(f"warning: skipped image {image_id}: {message}")
    image_set = image_set_name(args.annotations)
    output = args.output or reports_dir() / "evaluate" / f"{label}_{image_set}"
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
                             "detections": str(args.detections) if args.detections else None,
                             "score_threshold": args.score_threshold, "enclose_keypoints": args.enclose_keypoints,
                             "vis_threshold": args.vis_threshold,
                             "oks_threshold": args.oks_threshold, "flip": args.flip, "decode": args.decode,
                             "mean": list(dataset.mean), "std": list(dataset.std)})
    metrics_path = write_json_atomic(output / "metrics.json", metrics)
    print(f"wrote {results_path} and {metrics_path}")
    return 0


def run_manifest(args: argparse.Namespace) -> int:
    """Evaluate the manifest's weights (all, or `args.manifest`'s names) on `args.sets` and write the report."""
    from workbench.common.devices import resolve_device
    from workbench.common.errors import WorkbenchError
    from workbench.reports.evaluation import REPORT_SETS, evaluation_table, write_evaluation_report
    from workbench.evaluation.sets import evaluation_sets
    from workbench.common.paths import reports_dir
    from workbench.zoo.manifest import find_weights, read_manifest

    device = resolve_device(args.device)
    if args.paired:
        return run_paired(args, device)
    entries = [find_weights(name) for name in args.manifest] if args.manifest else read_manifest()
    if not entries:
        raise WorkbenchError("the weights manifest has no entries yet: train a model (`python -m workbench train`) "
                             "and publish it (`python -m workbench weights publish RUN`) first.")
    table = evaluation_table(entries, evaluation_sets(args.sets or REPORT_SETS), flip=args.flip,
                             batch_size=args.batch_size, device=device)
    for path in write_evaluation_report(table, entries, args.output or reports_dir(), args.command_line, args.flip):
        print(f"wrote {path}")
    print(table.to_string(index=False))
    return 0


def run_paired(args: argparse.Namespace, device) -> int:
    """Compare the two entries of `args.manifest` on `args.sets` with a paired bootstrap and write the report."""
    from workbench.evaluation.sets import evaluation_sets
    from workbench.reports.paired import PAIRED_SETS, paired_table, write_paired_report
    from workbench.common.paths import reports_dir
    from workbench.zoo.manifest import find_weights

    first, second = (find_weights(name) for name in args.manifest)
    table = paired_table(first, second, evaluation_sets(args.sets or PAIRED_SETS), (args.decode,), flip=args.flip,
                         batch_size=args.batch_size, device=device, rounds=args.rounds)
    for path in write_paired_report(table, first, second, args.output or reports_dir(), args.command_line, args.flip):
        print(f"wrote {path}")
    print(table.to_string(index=False))
    return 0
